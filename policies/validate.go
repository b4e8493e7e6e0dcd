package policies

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// nameRE is the syntax of upstream names: no dots or colons, so that a
// name can never be mistaken for a host or URL in a GOPROXY-style list.
var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// reservedNames are cmd/go's GOPROXY keywords.
var reservedNames = map[string]bool{"direct": true, "off": true, "noproxy": true}

func checkName(name string) error {
	if reservedNames[name] {
		return fmt.Errorf("%q is a cmd/go GOPROXY keyword, not an upstream name: choose another name", name)
	}
	if !nameRE.MatchString(name) {
		return fmt.Errorf("upstream name %q is not valid: use lower-case letters, digits, '-' and '_', starting with a letter", name)
	}
	return nil
}

// normalizeURL validates an upstream (or checksum database) URL and returns
// it without a trailing slash. The error message never repeats a secret.
func normalizeURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" {
		return "", fmt.Errorf("%q is not a URL: write it as https://host[:port][/path]", redact.URLString(s))
	}
	if u.User != nil {
		return "", fmt.Errorf("%s has credentials in it, which would show in logs: remove them and set token_env instead", redact.URLString(s))
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", fmt.Errorf("%s has a query or fragment, which a GOPROXY URL cannot have: remove it", redact.URLString(s))
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("%q has no host: write it as https://host[:port][/path]", redact.URLString(s))
	}
	if p := u.Port(); p != "" {
		if n, err := parsePort(p); err != nil || n == 0 {
			return "", fmt.Errorf("%q has an invalid port: use 1-65535", redact.URLString(s))
		}
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return "", fmt.Errorf("%q uses http to a non-loopback host: use https (plain http is accepted for 127.0.0.1, ::1 and localhost only)", redact.URLString(s))
		}
	default:
		return "", fmt.Errorf("%q has scheme %q: use https://", redact.URLString(s), u.Scheme)
	}
	if strings.Contains(u.Path, "//") || strings.Contains(u.Path, "/../") || strings.HasSuffix(u.Path, "/..") {
		return "", fmt.Errorf("%q has an unclean path: remove the empty or '..' elements", redact.URLString(s))
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

func parsePort(p string) (int, error) {
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("not a number")
		}
		n = n*10 + int(c-'0')
		if n > 65535 {
			return 0, fmt.Errorf("out of range")
		}
	}
	return n, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkPattern validates a module path pattern in cmd/go's GOPRIVATE glob
// syntax (golang.org/x/mod/module.MatchPrefixPatterns): each
// slash-separated element is a path.Match pattern, and the pattern matches
// a module path with that many leading elements.
func checkPattern(pat string) error {
	switch {
	case pat == "":
		return fmt.Errorf("empty module pattern: write a module path prefix such as corp.example.com/*")
	case strings.ContainsAny(pat, ", \t\r\n"):
		return fmt.Errorf("module pattern %q contains a comma or space: write one pattern per list element", pat)
	case strings.HasPrefix(pat, "/") || strings.HasSuffix(pat, "/") || strings.Contains(pat, "//"):
		return fmt.Errorf("module pattern %q has an empty path element: remove the extra '/'", pat)
	}
	for _, elem := range strings.Split(pat, "/") {
		if _, err := path.Match(elem, ""); err != nil {
			return fmt.Errorf("module pattern %q is not a valid glob (%v): check its brackets and escapes", pat, err)
		}
	}
	return nil
}

// checkPin validates an SPKI pin: "sha256/" and the base64 SHA-256 of the
// certificate's SubjectPublicKeyInfo.
func checkPin(pin string) error {
	b64, ok := strings.CutPrefix(pin, "sha256/")
	if !ok {
		return fmt.Errorf("SPKI pin %q must start with \"sha256/\": write sha256/<base64 of the SHA-256 of the SubjectPublicKeyInfo>", pin)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 32 {
		return fmt.Errorf("SPKI pin %q is not the base64 of a 32-byte SHA-256 hash: compute it with 'openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64'", pin)
	}
	return nil
}

var userRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

func checkGOFLAGS(s string) error {
	for _, f := range strings.Fields(s) {
		if !strings.HasPrefix(f, "-") {
			return fmt.Errorf("GOFLAGS element %q is not a flag: cmd/go accepts only space-separated -flag or -flag=value", f)
		}
	}
	return nil
}

var (
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	hostRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)
)
