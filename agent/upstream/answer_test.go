package upstream

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

func TestAnswered(t *testing.T) {
	t.Parallel()
	for _, test := range []struct {
		name string
		err  *Error
		want bool
	}{
		{"403", &Error{StatusCode: 403, Body: "denied"}, true},
		{"400", &Error{StatusCode: 400, Body: "Go module host not permitted"}, true},
		{"404", &Error{StatusCode: 404}, true},
		{"429", &Error{StatusCode: 429}, true},
		{"500", &Error{StatusCode: 500}, false},
		{"transport", &Error{Err: ErrIdleBody}, false},
		{"nginx without certificate", &Error{StatusCode: 400, Body: "<center>No required SSL certificate was sent</center>"}, false},
		{"nginx certificate error", &Error{StatusCode: 400, Body: "<center>The SSL certificate error</center>"}, false},
		{"nginx 496", &Error{StatusCode: 496}, false},
	} {
		if got := test.err.Answered(); got != test.want {
			t.Errorf("%s: Answered() = %v, want %v", test.name, got, test.want)
		}
	}
}

// TestGetKinds: Get marks its error with the failure's kind: a limit of
// this machine (EMFILE on socket) is a local fault, not an unreachable
// upstream, and is not a timeout although a syscall.Errno passes for a
// net.Error.
func TestGetKinds(t *testing.T) {
	t.Parallel()
	for _, test := range []struct {
		name string
		err  error
		want errkind.Kind
	}{
		{"too many open files", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}, errkind.Local},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, errkind.Unreachable},
	} {
		entries, err := ParseList("http://127.0.0.1:9")
		if err != nil {
			t.Fatal(err)
		}
		dial := func(context.Context, string, string) (net.Conn, error) { return nil, test.err }
		c := New(Options{Entries: entries, Transport: NewTransport(TransportOptions{Retry: Retry{Attempts: 1}, DialContext: dial})})
		_, got := c.Get(context.Background(), "m/@v/list")
		c.Close()
		if k := errkind.Of(got); k != test.want {
			t.Errorf("%s: kind %v (%v), want %v", test.name, k, got, test.want)
		}
		var ue *Error
		if errors.As(got, &ue) && ue.Timeout() {
			t.Errorf("%s: Timeout() = true", test.name)
		}
	}
}
