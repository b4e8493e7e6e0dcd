package redact

import "testing"

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
