package errkind

import (
	"errors"
	"fmt"
	"testing"
)

func TestOf(t *testing.T) {
	t.Parallel()
	base := errors.New("boom")
	for _, test := range []struct {
		name string
		err  error
		want Kind
		code int
	}{
		{"nil", nil, Other, 1},
		{"plain", base, Other, 1},
		{"bad input", Mark(BadInput, base), BadInput, 2},
		{"wrapped", fmt.Errorf("read go.sum: %w", Mark(BadInput, base)), BadInput, 2},
		{"unreachable", Mark(Unreachable, base), Unreachable, 3},
		{"integrity in join", errors.Join(base, Mark(Integrity, base)), Integrity, 4},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			if got := Of(test.err); got != test.want {
				t.Errorf("Of(%v) = %v, want %v", test.err, got, test.want)
			}
			if got := Of(test.err).ExitCode(); got != test.code {
				t.Errorf("ExitCode = %d, want %d", got, test.code)
			}
		})
	}
	if Mark(BadInput, nil) != nil {
		t.Errorf("Mark(nil) != nil")
	}
	if got := Mark(BadInput, base).Error(); got != "boom" {
		t.Errorf("message = %q, want %q", got, "boom")
	}
}
