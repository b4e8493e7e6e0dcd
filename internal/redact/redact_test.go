package redact

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
)

func TestPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                  "",
		"/golang.org/x/mod/@v/list":         "/golang.org/x/mod/@v/list",
		"/H119FQMRWqMPMhcHLAYnPA/x/@v/list": "/REDACTED/x/@v/list",
		"/github.com/!burnt!sushi/toml":     "/github.com/!burnt!sushi/toml",
		"/m/@v/v0.0.0-20260102030405-abcdefabcdef.zip": "/m/@v/v0.0.0-20260102030405-abcdefabcdef.zip",
		"/goproxy/abcdefghijklmnop":                    "/goproxy/abcdefghijklmnop", // letters only: a word, not a token
		"/t/0123456789abcdef":                          "/t/REDACTED",
	} {
		if got := Path(in); got != want {
			t.Errorf("Path(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"https://proxy.golang.org", "https://proxy.golang.org"},
		{"https://u:p@goproxy.corp:8443/artifactory/api/go/go-remote?x=1#f", "https://REDACTED@goproxy.corp:8443/artifactory/api/go/go-remote"},
		{"https://tok3nAsUserName0123@corp.example/goproxy", "https://REDACTED@corp.example/goproxy"},
		{"http://127.0.0.1:4000/3q2-7xYv0dJ9kLmN4pQ8rS/", "http://127.0.0.1:4000/REDACTED/"},
		{"http://127.0.0.1:4000/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "http://127.0.0.1:4000/REDACTED"},
		{"https://host/github.com/!azure/azure-sdk-for-go/@v/v68.0.0+incompatible.info", "https://host/github.com/!azure/azure-sdk-for-go/@v/v68.0.0+incompatible.info"},
		{"/x/0123456789abcdef", "/x/REDACTED"},
		{"user:pw0123456789abcdef@host", "REDACTED"},
		{"", ""},
	} {
		if got := URLString(tc.in); got != tc.want {
			t.Errorf("URLString(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := URL(nil); got != "" {
		t.Errorf("URL(nil) = %q, want empty", got)
	}
	if got := URLString("https://%zz"); got != Placeholder {
		t.Errorf("URLString of a bad URL = %q, want %q", got, Placeholder)
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"https://proxy.golang.org,direct", "https://proxy.golang.org,direct"},
		{"https://u:p@a.example/x | off", "https://REDACTED@a.example/x | off"},
		{"corp.example/*,0123456789abcdef0123", "corp.example/*,REDACTED"},
		{"u:p@a.example,,https://b.example|", "REDACTED,,https://b.example|"},
		{"a.example:8443/go,u:p@b.example", "a.example:8443/go,REDACTED"},
		{"", ""},
	} {
		if got := List(tc.in); got != tc.want {
			t.Errorf("List(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestError(t *testing.T) {
	t.Parallel()
	const canary = "Zx81CANARYs3cretAbCdEf99"
	cause := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	err := fmt.Errorf("fetch: %w", &url.Error{Op: "Get", URL: "http://u:" + canary + "@127.0.0.1:1/" + canary + "/x/@v/list", Err: cause})
	got := Error(err)
	if strings.Contains(got.Error(), canary) {
		t.Errorf("Error() = %q shows the canary", got)
	}
	var ne net.Error
	if !errors.As(got, &ne) || !errors.Is(got, cause) {
		t.Errorf("Error() = %#v lost its cause", got)
	}
	if plain := errors.New("x"); Error(plain) != plain {
		t.Errorf("Error changed an error without a URL")
	}
	if Error(nil) != nil {
		t.Errorf("Error(nil) != nil")
	}
}

// TestCanaryEverywhere: a canary secret in every position a URL or list can
// hold one (user, password, token path segment, query key and value,
// fragment, a bad escape), alone and combined, never survives URL, List or
// Error.
func TestCanaryEverywhere(t *testing.T) {
	t.Parallel()
	const c = "Zx81CANARYs3cretAbCdEf99"
	forms := []string{
		"https://" + c + "@h.example/p",
		"https://u:" + c + "@h.example/p",
		"https://" + c + ":" + c + "@h.example",
		"http://127.0.0.1:1/" + c,
		"http://127.0.0.1:1/" + c + "/",
		"http://127.0.0.1:1/a/" + c + "/golang.org/x/mod/@v/list",
		"https://h.example/p?token=" + c,
		"https://h.example/p?" + c + "=1",
		"https://h.example/p#" + c,
		"https://h.example/%zz" + c,
		"u:" + c + "@h.example",
		"u:" + c,
		c + ":" + c,
		"h.example:8443/" + c,
		c + "@h.example",
		"h.example/" + c,
		"/" + c + "/x",
	}
	var all []string
	for _, f := range forms {
		all = append(all, f)
		for _, g := range forms {
			all = append(all, f+","+g, f+"|"+g, " "+f+" , direct")
		}
	}
	for _, s := range all {
		outs := []string{URLString(s), List(s), Error(&url.Error{Op: "Get", URL: s, Err: errors.New("boom")}).Error()}
		if u, err := url.Parse(s); err == nil {
			outs = append(outs, URL(u))
		}
		for i, o := range outs {
			if strings.Contains(o, c) {
				t.Errorf("redactor %d of %q = %q shows the canary", i, s, o)
			}
		}
	}
}
