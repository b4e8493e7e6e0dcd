package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestDemo runs the README's first command end to end: it must pass, show
// each step, and show the go command's own output naming the client-cert
// layer for the injected fault.
func TestDemo(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := Run(context.Background(), Options{Out: &out, Dir: t.TempDir()}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"[1/7]", "[7/7]",
		"cannot present a client certificate",
		"GOPROXY=http://127.0.0.1:",
		"built program prints: v1.2.0 v0.3.1 v2.0.0+incompatible",
		"GOPROXY=off go build",
		"server response:",
		"goproxy-setup: client-cert failure",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
