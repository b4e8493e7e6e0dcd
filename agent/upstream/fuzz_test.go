package upstream

import (
	"net/url"
	"strings"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// FuzzParseList checks ParseList never panics and that what it accepts
// keeps its invariants: proxies are http(s) URLs with a host and no query,
// direct only last, and the redacted form never shows user info.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{
		"https://proxy.golang.org,direct",
		"https://a.example|https://b.example,off",
		"http://127.0.0.1:8080/tok/",
		"https://user:CANARYpass@example.com/p",
		"ftp://user:CANARYpass@example.com/p,direct",
		"https://user:CANARYpass@example.com/p|direct|off",
		"direct,https://x.example",
		"https://x.example,,direct",
		"https://x.example|",
		" https://x.example ",
		"ftp://x.example",
		"https://x.example/?q=1#f",
		"https://[::1]:443/a/b",
		"https://%zz",
		"|",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		entries, err := ParseList(list)
		if err != nil {
			// No canary password of an element may show in the error. (The
			// fuzzer also moves the canary into hosts and paths, which
			// are no secret, so look only at what parses as a password.)
			for _, elem := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == '|' }) {
				if u, perr := url.Parse(strings.TrimSpace(elem)); perr == nil && u.User != nil {
					// It may show only as often as it stands outside
					// the user info (say, in a host name).
					if pw, ok := u.User.Password(); ok && strings.Contains(pw, "CANARY") {
						outside := strings.Count(list, pw) - strings.Count(u.User.String(), pw)
						if strings.Count(err.Error(), pw) > outside {
							t.Errorf("error leaks the password %q: %v", pw, err)
						}
					}
				}
			}
			return
		}
		if len(entries) == 0 {
			t.Fatalf("ParseList(%q) = no entries and no error", list)
		}
		for i, e := range entries {
			switch {
			case e.Direct:
				if i != len(entries)-1 {
					t.Errorf("ParseList(%q): %s at %d of %d, want only last", list, e, i, len(entries))
				}
			case e.URL == nil:
				t.Errorf("ParseList(%q): entry %d has no URL", list, i)
			default:
				if e.URL.Scheme != "https" && e.URL.Scheme != "http" || e.URL.Host == "" || e.URL.RawQuery != "" || e.URL.Fragment != "" {
					t.Errorf("ParseList(%q): entry %d = %s, want an http(s) URL with host and no query", list, i, e.URL)
				}
				// The redacted form (internal/redact, the one redactor) shows
				// user info as the placeholder, whatever the host looks like
				// (it may repeat the user name).
				if r, err := url.Parse(e.String()); err != nil || (r.User != nil && r.User.String() != redact.Placeholder) {
					t.Errorf("ParseList(%q): String() = %q shows user info", list, e.String())
				}
			}
		}
	})
}
