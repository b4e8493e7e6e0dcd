package redact

import (
	"net/url"
	"regexp"
	"strings"
)

var (
	// A URL in free text: scheme://then anything up to white space or a
	// delimiter that does not belong to it in prose.
	urlRE = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.-]*://[^\s"'<>()\[\]{}]+`)
	// An Authorization scheme and its credentials.
	authRE = regexp.MustCompile(`(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=-]{8,}`)
	// key=value or key: value where the key names a secret.
	kvRE = regexp.MustCompile(`(?i)\b(access[_-]?token|token|password|passwd|secret|api[_-]?key|access[_-]?key|private[_-]?key|authorization|cookie)(\s*[:=]\s*)("[^"]*"|[^\s,;&"]+)`)
	// A word of token characters; see longToken.
	wordRE = regexp.MustCompile(`[A-Za-z0-9_-]{32,}`)
)

// Text returns s with what looks like a secret replaced by Placeholder:
// the user info, query, fragment and token-looking path segments of URLs
// (see Path), Authorization credentials ("Bearer …"), the values of
// key=value pairs whose key names a secret (token, password, api_key…),
// and any word of 32 or more letters, digits, '-' and '_' that mixes
// letters and digits. It is meant for text a server wrote that is shown to
// the user (an upstream's error page), where module paths and versions
// must stay readable.
func Text(s string) string {
	s = urlRE.ReplaceAllStringFunc(s, func(m string) string {
		// Trailing punctuation belongs to the sentence, not the URL.
		trail := ""
		for len(m) > 0 && strings.ContainsRune(".,;:!?", rune(m[len(m)-1])) {
			trail = m[len(m)-1:] + trail
			m = m[:len(m)-1]
		}
		u, err := url.Parse(m)
		if err != nil || u.Host == "" {
			return Placeholder + trail
		}
		// As URL renders it; a query or fragment it dropped is marked.
		out := URL(u)
		if u.RawQuery != "" || u.Fragment != "" {
			out += "?" + Placeholder
		}
		return out + trail
	})
	s = authRE.ReplaceAllString(s, "${1}${2}"+Placeholder)
	s = kvRE.ReplaceAllString(s, "${1}${2}"+Placeholder)
	s = wordRE.ReplaceAllStringFunc(s, func(w string) string {
		if strings.ContainsAny(w, "0123456789") && strings.IndexFunc(w, isLetter) >= 0 {
			return Placeholder
		}
		return w
	})
	return s
}

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }
