package redact

import (
	"strings"
	"testing"
	"unicode"
)

func TestAnswer(t *testing.T) {
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
		if got := Answer(test.body); got != test.want {
			t.Errorf("%s: Answer(%q) = %q, want %q", test.name, test.body, got, test.want)
		}
	}
	long := Answer(strings.Repeat("é", 500))
	if len(long) > maxTextLine || !strings.HasSuffix(long, "…") {
		t.Errorf("a long line gives %d bytes %q, want at most %d ending in …", len(long), long, maxTextLine)
	}
}

// FuzzAnswer: whatever the upstream sends, the relayed text is what
// cmd/go prints whole: valid UTF-8, graphic runes and newlines only, no
// blank line, bounded.
func FuzzAnswer(f *testing.F) {
	for _, s := range []string{"denied\n", "<html><title>x</title></html>", `{"errors":[{"message":"m"}]}`, "a\r\n\r\nb", "\xff\xfe", "\x1b[2J"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		got := Answer(body)
		if len(got) > maxTextLines*(maxTextLine+1) {
			t.Fatalf("Answer gives %d bytes", len(got))
		}
		if got == "" {
			return
		}
		for _, l := range strings.Split(got, "\n") {
			if strings.TrimSpace(l) == "" {
				t.Fatalf("Answer(%q) = %q holds a blank line", body, got)
			}
			for _, r := range l {
				if !unicode.IsGraphic(r) {
					t.Fatalf("Answer(%q) = %q holds %U", body, got, r)
				}
			}
		}
	})
}
