package upstream

import (
	"encoding/json"
	"html"
	"net/http"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// Answered reports whether the upstream answered with a client-error
// status (4xx, 404 and 410 included): its network, TLS and HTTP layers
// work, and its status and text (see Text) are the answer to relay to
// cmd/go. Such an answer is not a transport failure: it starts no network
// diagnosis and does not fail the job by itself (cmd/go fails the command
// that needed it, printing the text, or recovers, as it does for its
// module-path prefix probes).
//
// A TLS-terminating front's refusal of the client certificate (nginx's 400
// pages "No required SSL certificate was sent" and "The SSL certificate
// error", its internal 495 and 496) is not an answer: the request never
// reached the module proxy, and the ladder's client-cert layer names why.
func (e *Error) Answered() bool {
	if e.Err != nil || e.StatusCode < 400 || e.StatusCode >= 500 {
		return false
	}
	return !ClientCertRefused(e.StatusCode, e.Body)
}

// ClientCertRefused reports whether status and body are a TLS-terminating
// front's refusal of the client certificate (nginx answers it with 400 and
// a page of its own, or 495/496 when the codes are not remapped).
func ClientCertRefused(status int, body string) bool {
	switch status {
	case 495, 496:
		return true
	case http.StatusBadRequest:
		return strings.Contains(body, "No required SSL certificate was sent") || strings.Contains(body, "SSL certificate error")
	}
	return false
}

// Limits of the relayed text: cmd/go prints at most 8 lines and 648 bytes
// of an error body, stopping at the first blank line, so the upstream's
// text keeps room for one line of hint after it.
const (
	maxTextLines = 5
	maxTextLine  = 160
)

// Text returns the upstream's answer, made fit to relay: at most a few
// short lines of printable text, with no blank line (cmd/go stops at the
// first) and with what looks like a secret redacted (internal/redact.Text).
// An HTML page is reduced to its text and a JSON error object to its
// message. Empty when the upstream sent no text.
func (e *Error) Text() string { return AnswerText(e.Body) }

var (
	tagRE    = regexp.MustCompile(`(?s)<[^>]*>`)
	scriptRE = regexp.MustCompile(`(?is)<(script|style|head)\b.*?</(script|style|head)>`)
	titleRE  = regexp.MustCompile(`(?is)<title>(.*?)</title>`)
)

// AnswerText is Text for a body.
func AnswerText(body string) string {
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
			lines[len(lines)-1] = clipText(lines[len(lines)-1], maxTextLine-4) + " […]"
			break
		}
		lines = append(lines, clipText(redact.Text(l), maxTextLine))
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

// clipText shortens s to at most n bytes on a rune boundary, marking the
// cut with "…".
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n -= len("…")
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
