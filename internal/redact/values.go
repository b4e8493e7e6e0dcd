package redact

import (
	"errors"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// Values replaces registered secret values by "***" in text: the tokens,
// capability URLs and keys a run knows, wherever they appear. The zero value redacts
// nothing; Add registers more secrets. It is safe for concurrent use, so
// one Values can sit under a logger and a progress writer at once.
type Values struct {
	mu      sync.RWMutex
	secrets []string
}

// minSecretLen is the shortest value treated as a secret: redacting a one-
// or two-character "secret" would shred every text it appears in.
const minSecretLen = 4

// Add registers secrets and returns those not registered before. Empty and
// very short values are ignored; a multi-line value is registered whole and
// line by line, as GitHub's log masking works per line.
func (r *Values) Add(secrets ...string) (added []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range secrets {
		for _, v := range append([]string{s}, strings.Split(s, "\n")...) {
			v = strings.TrimSpace(v)
			if len(v) < minSecretLen || r.has(v) {
				continue
			}
			r.secrets = append(r.secrets, v)
			added = append(added, v)
		}
	}
	// Longest first, so a URL holding a token is replaced before the token
	// alone would leave half of it.
	sort.SliceStable(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
	return added
}

func (r *Values) has(v string) bool {
	for _, s := range r.secrets {
		if s == v {
			return true
		}
	}
	return false
}

// Secrets returns the registered secrets, longest first.
func (r *Values) Secrets() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]string(nil), r.secrets...)
}

// String returns s with every registered secret replaced by "***".
func (r *Values) String(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, v := range r.secrets {
		s = strings.ReplaceAll(s, v, "***")
	}
	return s
}

// Error returns err with every registered secret replaced, keeping its
// kind (errkind) for the exit code; err itself when nothing was replaced.
func (r *Values) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := r.String(err.Error())
	if msg == err.Error() {
		return err
	}
	return errkind.Mark(errkind.Of(err), errors.New(msg))
}

// Value returns s with one secret value replaced by "***".
func Value(s, secret string) string {
	var v Values
	v.Add(secret)
	return v.String(s)
}

// Writer returns a writer that redacts every Write through red
// before passing it to w. Secrets are caught when a single Write holds them
// whole, which is how line-oriented loggers write; it reports len(p) written
// so callers are not confused by the changed length.
func Writer(w io.Writer, red *Values) io.Writer {
	return &redactingWriter{w: w, red: red}
}

type redactingWriter struct {
	w   io.Writer
	red *Values
}

func (r *redactingWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(r.w, r.red.String(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
