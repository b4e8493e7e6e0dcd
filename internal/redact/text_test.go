package redact

import (
	"strings"
	"testing"
)

func TestText(t *testing.T) {
	t.Parallel()
	const canary = "CANARY0secret0CANARY0secret0CANARY0"
	for _, test := range []struct {
		in, want string
	}{
		{"This module version is not available.", "This module version is not available."},
		{"Go module host not permitted: github.com/!burnt!sushi/toml@v1.6.0", "Go module host not permitted: github.com/!burnt!sushi/toml@v1.6.0"},
		{"no version v0.0.0-20260102030405-abcdefabcdef of golang.org/x/mod", "no version v0.0.0-20260102030405-abcdefabcdef of golang.org/x/mod"},
		{"see https://user:pw@proxy.corp/H119FQMRWqMPMhcHLAYnPA/x/@v/list?sig=abc.", "see https://REDACTED@proxy.corp/REDACTED/x/@v/list?REDACTED."},
		{"Authorization: Bearer abcdefgh1234", "Authorization: REDACTED REDACTED"},
		{"bad token=abc123; password: hunter2xyz", "bad token=REDACTED; password: REDACTED"},
		{"key " + canary + " refused", "key REDACTED refused"},
		{"a-very-long-organization-name-without-digits/repo", "a-very-long-organization-name-without-digits/repo"},
		// A URL in text reads as URL renders it: module paths unescaped.
		{"not found: https://proxy.corp/github.com/!azure/sdk/@v/list", "not found: https://proxy.corp/github.com/!azure/sdk/@v/list"},
	} {
		got := Text(test.in)
		if got != test.want {
			t.Errorf("Text(%q) = %q, want %q", test.in, got, test.want)
		}
		if strings.Contains(got, "CANARY") || strings.Contains(got, "hunter2") {
			t.Errorf("Text(%q) = %q: a secret survived", test.in, got)
		}
	}
}
