package redact

import (
	"encoding/json"
	"html"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of an answer's text (Answer): cmd/go prints at most 8 lines and 648 bytes
// of an error body, stopping at the first blank line, so the upstream's
// text keeps room for one line of hint after it.
const (
	maxTextLines = 5
	maxTextLine  = 160
)

var (
	tagRE    = regexp.MustCompile(`(?s)<[^>]*>`)
	scriptRE = regexp.MustCompile(`(?is)<(script|style|head)\b.*?</(script|style|head)>`)
	titleRE  = regexp.MustCompile(`(?is)<title>(.*?)</title>`)
)

// Answer returns an upstream's answer (an HTTP error body) made fit to
// relay and report: at most a few short lines of printable text, with no
// blank line (cmd/go stops at the first) and with what looks like a secret
// redacted (Text). An HTML page is reduced to its text and a JSON error
// object to its message. Empty when the body holds no text.
func Answer(body string) string {
	body = strings.ToValidUTF8(body, "?")
	trimmed := strings.TrimSpace(body)
	switch {
	case strings.HasPrefix(trimmed, "{"):
		if m := jsonMessage(trimmed); m != "" {
			body = m
		}
	case looksHTML(trimmed):
		title := ""
		if m := titleRE.FindStringSubmatch(trimmed); m != nil {
			title = m[1]
		}
		body = scriptRE.ReplaceAllString(trimmed, "\n")
		body = title + "\n" + tagRE.ReplaceAllString(body, "\n")
		body = html.UnescapeString(body)
	}
	var lines []string
	seen := map[string]bool{}
	for _, l := range strings.FieldsFunc(body, func(r rune) bool { return r == '\n' || r == '\r' }) {
		l = strings.Join(strings.FieldsFunc(l, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsGraphic(r) }), " ")
		if l == "" || seen[l] {
			continue
		}
		seen[l] = true
		if len(lines) == maxTextLines {
			lines[len(lines)-1] = Clip(lines[len(lines)-1], maxTextLine-4) + " […]"
			break
		}
		lines = append(lines, Clip(Text(l), maxTextLine))
	}
	return strings.Join(lines, "\n")
}

func looksHTML(s string) bool {
	l := strings.ToLower(s[:min(len(s), 512)])
	return strings.HasPrefix(l, "<!doctype html") || strings.HasPrefix(l, "<html") || strings.Contains(l, "<body") || strings.Contains(l, "<head")
}

// jsonMessage returns the message of a JSON error object, as module
// proxies and repository managers write them: {"message": …}, {"error":
// …}, {"errors": [{"message": …}]} (Artifactory), {"detail": …}.
func jsonMessage(s string) string {
	var v map[string]any
	if json.Unmarshal([]byte(s), &v) != nil {
		return ""
	}
	var msgs []string
	var walk func(x any)
	walk = func(x any) {
		switch x := x.(type) {
		case string:
			msgs = append(msgs, x)
		case []any:
			for _, y := range x {
				walk(y)
			}
		case map[string]any:
			for _, k := range []string{"message", "error", "detail", "msg", "errors"} {
				if y, ok := x[k]; ok {
					walk(y)
					return
				}
			}
		}
	}
	walk(v)
	return strings.Join(msgs, "\n")
}

// Clip shortens s to at most n bytes on a rune boundary, marking the cut
// with "…". It is the one clip for text shown to people: a cut mid-rune
// would print as U+FFFD or break a JSON report.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n -= len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
