package diagnose

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestAnswerLine: what a report quotes of an upstream's answer is
// redacted as the agent's relay is, and cut on a rune boundary.
func TestAnswerLine(t *testing.T) {
	t.Parallel()
	const secret = "hunter2hunter2"
	page := "<html><head><title>400 Bad Request</title></head><body><h1>400 Bad Request</h1><p>bad request: password=" + secret +
		" at https://user:" + secret + "@proxy.corp/x?sig=" + secret + "</p></body></html>"
	got := answerLine(page)
	if strings.Contains(got, secret) {
		t.Errorf("answerLine quotes a secret: %q", got)
	}
	if !strings.Contains(got, "400 Bad Request") || !strings.Contains(got, "bad request: password=REDACTED") {
		t.Errorf("answerLine(page) = %q, want the page's text with the secret redacted", got)
	}
	long := answerLine("x" + strings.Repeat("é", 300))
	if !utf8.ValidString(long) || !strings.HasSuffix(long, "…") {
		t.Errorf("answerLine of a long line = %q: want valid UTF-8 cut with …", long)
	}
}
