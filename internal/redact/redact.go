// Package redact owns the one rule for what in a URL path looks like a
// secret (the agent's capability token, a token some proxies put in their
// path), so that logs, errors and reports all hide the same things.
package redact

import "strings"

// Placeholder replaces what is redacted.
const Placeholder = "REDACTED"

// Token reports whether a path segment looks like a random token: only
// letters, digits, '-' and '_', and either 32 or more of them, or 16 or more
// mixing letters and digits. Module path elements with dots, '!' case
// escapes or '@' versions never match, so module paths stay readable.
func Token(s string) bool {
	if len(s) < 16 {
		return false
	}
	var letter, digit bool
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digit = true
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			letter = true
		case r == '-' || r == '_':
		default:
			return false
		}
	}
	return len(s) >= 32 || letter && digit
}

// Path returns p with every segment that looks like a token replaced by
// Placeholder.
func Path(p string) string {
	if p == "" {
		return ""
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if Token(s) {
			segs[i] = Placeholder
		}
	}
	return strings.Join(segs, "/")
}
