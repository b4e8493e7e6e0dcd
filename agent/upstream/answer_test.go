package upstream

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"unicode"

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

func TestAnswerText(t *testing.T) {
	t.Parallel()
	for _, test := range []struct {
		name, body, want string
	}{
		{"plain", "This module version is not available.\n", "This module version is not available."},
		{"crlf and blank lines", "a\r\n\r\n\r\nb\r\n", "a\nb"},
		{"nginx page", "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n<center><h1>403 Forbidden</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n", "403 Forbidden\nnginx"},
		{"entities", "<html><body><p>module &quot;x&quot; &amp; y</p></body></html>", `module "x" & y`},
		{"json message", `{"message":"quota exceeded"}`, "quota exceeded"},
		{"artifactory", `{"errors":[{"status":403,"message":"forbidden for user: 'anonymous'."}]}`, "forbidden for user: 'anonymous'."},
		{"json without message", `{"a":1}`, `{"a":1}`},
		{"control characters", "bad\x00\x07\tthing\x1b[0m", "bad thing [0m"},
		{"invalid utf-8", "caf\xe9", "caf?"},
		{"too many lines", "1\n2\n3\n4\n5\n6\n7", "1\n2\n3\n4\n5 […]"},
		{"empty", "  \n ", ""},
	} {
		if got := AnswerText(test.body); got != test.want {
			t.Errorf("%s: AnswerText(%q) = %q, want %q", test.name, test.body, got, test.want)
		}
	}
	long := AnswerText(strings.Repeat("é", 500))
	if len(long) > maxTextLine || !strings.HasSuffix(long, "…") {
		t.Errorf("a long line gives %d bytes %q, want at most %d ending in …", len(long), long, maxTextLine)
	}
}

// FuzzAnswerText: whatever the upstream sends, the relayed text is what
// cmd/go prints whole: valid UTF-8, graphic runes and newlines only, no
// blank line, bounded.
func FuzzAnswerText(f *testing.F) {
	for _, s := range []string{"denied\n", "<html><title>x</title></html>", `{"errors":[{"message":"m"}]}`, "a\r\n\r\nb", "\xff\xfe", "\x1b[2J"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		got := AnswerText(body)
		if len(got) > maxTextLines*(maxTextLine+1) {
			t.Fatalf("AnswerText gives %d bytes", len(got))
		}
		if got == "" {
			return
		}
		for _, l := range strings.Split(got, "\n") {
			if strings.TrimSpace(l) == "" {
				t.Fatalf("AnswerText(%q) = %q holds a blank line", body, got)
			}
			for _, r := range l {
				if !unicode.IsGraphic(r) {
					t.Fatalf("AnswerText(%q) = %q holds %U", body, got, r)
				}
			}
		}
	})
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
