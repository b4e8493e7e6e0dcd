package cli

import (
	"context"
	"io"
	"strings"
	"testing"
)

type fake string

func (f fake) Name() string                                            { return string(f) }
func (f fake) Synopsis() string                                        { return "does " + string(f) }
func (fake) Run(context.Context, []string, io.Writer, io.Writer) error { return nil }

func TestSet(t *testing.T) {
	t.Parallel()
	var s Set
	s.Register(fake("run"))
	s.Register(fake("agent"))
	if _, ok := s.Lookup("run"); !ok {
		t.Errorf("Lookup(run) not found")
	}
	if _, ok := s.Lookup("nope"); ok {
		t.Errorf("Lookup(nope) found")
	}
	var b strings.Builder
	s.List(&b)
	if got, want := b.String(), "  agent  does agent\n  run    does run\n"; got != want {
		t.Errorf("List = %q, want %q", got, want)
	}
	defer func() {
		if recover() == nil {
			t.Errorf("registering a duplicate did not panic")
		}
	}()
	s.Register(fake("run"))
}
