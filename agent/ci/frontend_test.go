package ci

import (
	"errors"
	"strings"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// TestReported: the error a front end has shown is not printed again in
// full, and its kind (the exit code) survives.
func TestReported(t *testing.T) {
	t.Parallel()
	if Reported(nil) != nil {
		t.Fatal("Reported(nil) != nil")
	}
	for _, k := range []errkind.Kind{errkind.Local, errkind.Answered, errkind.Unreachable, errkind.Integrity, errkind.BadInput, errkind.Canceled, errkind.Other} {
		inner := errkind.Mark(k, errors.New("warm: CANARY-detail of the failure"))
		err := Reported(inner)
		if errkind.Of(err) != k {
			t.Errorf("kind of Reported(%v) = %v, want %v", k, errkind.Of(err), k)
		}
		if strings.Contains(err.Error(), "CANARY") {
			t.Errorf("Reported(%v).Error() = %q repeats the error", k, err)
		}
		if want := describe(k).name; !strings.Contains(err.Error(), want) {
			t.Errorf("Reported(%v).Error() = %q, want it to name %q", k, err, want)
		}
		if !errors.Is(err, inner) {
			t.Errorf("Reported(%v) does not wrap the error", k)
		}
		joined := errors.Join(err, errors.New("write GITHUB_OUTPUT: disk full"))
		if errkind.Of(joined) != k {
			t.Errorf("kind of a joined Reported(%v) = %v", k, errkind.Of(joined))
		}
	}
}
