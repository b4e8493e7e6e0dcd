package redact

import (
	"bytes"
	"errors"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

func TestValues(t *testing.T) {
	t.Parallel()
	var r Values
	if added := r.Add("abc", "", "secret-one", "http://h/secret-one", "multi\nline-two\n"); len(added) != 5 {
		t.Errorf("added %v, want 5 (short and empty ignored; multi-line whole and per line)", added)
	}
	got := r.String("a http://h/secret-one b secret-one abc line-two")
	if want := "a *** b *** abc ***"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	var buf bytes.Buffer
	w := Writer(&buf, &r)
	if n, err := w.Write([]byte("x secret-one\n")); n != 13 || err != nil {
		t.Errorf("Write = %d, %v, want 13, nil", n, err)
	}
	if buf.String() != "x ***\n" {
		t.Errorf("got %q, want %q", buf.String(), "x ***\n")
	}
}

func TestValuesError(t *testing.T) {
	t.Parallel()
	var r Values
	r.Add("CANARY-7f3a")
	err := r.Error(errkind.Mark(errkind.Unreachable, errors.New("GET http://127.0.0.1/CANARY-7f3a/x: refused")))
	if got, want := err.Error(), "GET http://127.0.0.1/***/x: refused"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := errkind.Of(err); got != errkind.Unreachable {
		t.Errorf("kind %v, want unreachable (kept for the exit code)", got)
	}
	clean := errors.New("nothing secret")
	if got := r.Error(clean); got != clean {
		t.Errorf("an error without a secret was replaced: %v", got)
	}
	if got, want := Value("token=CANARY-7f3a", "CANARY-7f3a"), "token=***"; got != want {
		t.Errorf("Value: got %q, want %q", got, want)
	}
}
