package privilege

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
)

// maxSecrets bounds what ReadSecrets accepts: a certificate chain, a key, a
// token, an upstream list and a few proxy settings are a few kilobytes.
const maxSecrets = 1 << 20

// Secrets is the handoff: everything the bootstrap gives the agent process
// that must not appear on a command line (ps shows argv to every local
// user), in the environment (readable in /proc/<pid>/environ and inherited
// by children) or in a file outside the agent's private directory. It
// travels once over the agent's stdin pipe (WriteSecrets on the parent's
// end, ReadSecrets on the agent's), read before any privilege drop.
//
// Every way of printing a Secrets value redacts it: String, GoString, all
// fmt verbs, encoding/json and log/slog show only sizes and presence.
type Secrets struct {
	// CertPEM is the client certificate and its chain (not secret, but kept
	// with the key).
	CertPEM []byte
	// KeyPEM is the client certificate's private key.
	KeyPEM []byte
	// Token is the agent's capability token (the secret path segment of
	// GOPROXY).
	Token string
	// Upstream is the upstream list in GOPROXY syntax (--upstream); its
	// URLs may carry a user and password. Empty: the policy's default route.
	Upstream string
	// Env carries the job's network settings (HTTP(S)_PROXY, NO_PROXY,
	// SSL_CERT_*): sudo resets the environment, and a proxy URL may hold
	// credentials.
	Env map[string]string
	// Nonce identifies this agent: its admin endpoint echoes it, so that
	// 'stop' and 'run' signal only a process proven to be this agent.
	Nonce string
	// JobUID is the uid that ran the bootstrap: with the peer check, the
	// agent serves only it and root. -1: unknown (token only).
	JobUID int
}

// wire is the JSON form on the pipe; Secrets itself never marshals its
// contents.
type wire struct {
	CertPEM  []byte            `json:"cert_pem,omitempty"`
	KeyPEM   []byte            `json:"key_pem,omitempty"`
	Token    string            `json:"token,omitempty"`
	Upstream string            `json:"upstream,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	Nonce    string            `json:"nonce,omitempty"`
	JobUID   int               `json:"job_uid"`
}

// WriteSecrets writes s to w as one JSON object. The caller closes w (the
// write end of the agent's stdin pipe) afterwards, so that ReadSecrets sees
// the end.
func WriteSecrets(w io.Writer, s Secrets) error {
	b, err := json.Marshal(wire(s))
	if err != nil {
		return fmt.Errorf("write secrets: %w", err)
	}
	defer clear(b)
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write secrets: %w", err)
	}
	return nil
}

// ReadSecrets reads what WriteSecrets wrote, up to the end of r (at most
// 1 MiB). Its errors never quote the input.
func ReadSecrets(r io.Reader) (Secrets, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSecrets+1))
	defer clear(b)
	if err != nil {
		return Secrets{}, fmt.Errorf("read secrets: %w", err)
	}
	if len(b) > maxSecrets {
		return Secrets{}, fmt.Errorf("read secrets: more than %d bytes", maxSecrets)
	}
	w := wire{JobUID: -1}
	if err := json.Unmarshal(b, &w); err != nil {
		// The decoder's messages can quote a character of the input; say
		// only where it broke.
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return Secrets{}, fmt.Errorf("read secrets: malformed JSON at byte %d of %d (start the agent through 'goproxy-setup run')", se.Offset, len(b))
		case errors.As(err, &te):
			return Secrets{}, fmt.Errorf("read secrets: field %q has the wrong type", te.Field)
		}
		return Secrets{}, errors.New("read secrets: malformed JSON (start the agent through 'goproxy-setup run')")
	}
	return Secrets(w), nil
}

// handoffEnv are the variables Secrets.Env carries.
var handoffEnv = []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR"}

// NetworkEnv returns the job's network settings for Secrets.Env.
func NetworkEnv() map[string]string {
	m := map[string]string{}
	for _, k := range handoffEnv {
		if v, ok := os.LookupEnv(k); ok {
			m[k] = v
		}
	}
	return m
}

// ApplyEnv sets the handoff's network settings in the agent's environment;
// call it before any upstream request.
func (s Secrets) ApplyEnv() error {
	for _, k := range handoffEnv {
		if v, ok := s.Env[k]; ok {
			if err := os.Setenv(k, v); err != nil {
				return fmt.Errorf("apply %s from the handoff: %w", k, err)
			}
		}
	}
	return nil
}

// Zero overwrites the key and drops the references to the secret material.
// Strings cannot be overwritten in Go; they are only dropped.
func (s *Secrets) Zero() {
	clear(s.KeyPEM)
	*s = Secrets{JobUID: -1}
}

func (s Secrets) redacted() string {
	has := func(v string) string {
		if v == "" {
			return "none"
		}
		return "[redacted]"
	}
	return fmt.Sprintf("privilege.Secrets{CertPEM: %d bytes, KeyPEM: [redacted %d bytes], Token: %s, Upstream: %s, Env: %d vars [redacted], Nonce: %s, JobUID: %d}",
		len(s.CertPEM), len(s.KeyPEM), has(s.Token), has(s.Upstream), len(s.Env), has(s.Nonce), s.JobUID)
}

// String returns a redacted description.
func (s Secrets) String() string { return s.redacted() }

// GoString returns a redacted description (the %#v verb).
func (s Secrets) GoString() string { return s.redacted() }

// Format prints the redacted description for every verb.
func (s Secrets) Format(f fmt.State, _ rune) { io.WriteString(f, s.redacted()) }

// MarshalJSON encodes the redacted description, so that a Secrets that
// reaches a JSON log or report by mistake leaks nothing.
func (s Secrets) MarshalJSON() ([]byte, error) { return json.Marshal(s.redacted()) }

// LogValue redacts for log/slog.
func (s Secrets) LogValue() slog.Value { return slog.StringValue(s.redacted()) }

var (
	_ fmt.Stringer   = Secrets{}
	_ fmt.GoStringer = Secrets{}
	_ fmt.Formatter  = Secrets{}
	_ json.Marshaler = Secrets{}
	_ slog.LogValuer = Secrets{}
)
