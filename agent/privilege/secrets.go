package privilege

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
)

// maxSecrets bounds what ReadSecrets accepts: a certificate chain, a key and
// a token are a few kilobytes.
const maxSecrets = 1 << 20

// Secrets is the material the agent needs and the job must never see: the
// client certificate chain, its private key and the enrolment token. It is
// handed from the bootstrap to the agent over a pipe (WriteSecrets on the
// parent's end, ReadSecrets on the agent's stdin), never through the
// environment (readable in /proc/<pid>/environ by the process's own user and
// inherited by children) or a file outside the agent's private directory.
//
// Every way of printing a Secrets value redacts it: String, GoString, all
// fmt verbs, encoding/json and log/slog show only the sizes.
type Secrets struct {
	// CertPEM is the client certificate and its chain (not secret, but kept
	// with the key).
	CertPEM []byte
	// KeyPEM is the client certificate's private key.
	KeyPEM []byte
	// Token is the one-time enrolment token, when the agent enrols or renews
	// itself.
	Token string
}

// wire is the JSON form on the pipe; Secrets itself never marshals its
// contents.
type wire struct {
	CertPEM []byte `json:"cert_pem,omitempty"`
	KeyPEM  []byte `json:"key_pem,omitempty"`
	Token   string `json:"token,omitempty"`
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
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		// The decoder's messages can quote a character of the input; say
		// only where it broke.
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return Secrets{}, fmt.Errorf("read secrets: malformed JSON at byte %d of %d", se.Offset, len(b))
		case errors.As(err, &te):
			return Secrets{}, fmt.Errorf("read secrets: field %q has the wrong type", te.Field)
		}
		return Secrets{}, errors.New("read secrets: malformed JSON")
	}
	return Secrets(w), nil
}

// Zero overwrites the key and drops the references to the secret material.
// Strings cannot be overwritten in Go; the token is only dropped.
func (s *Secrets) Zero() {
	clear(s.KeyPEM)
	*s = Secrets{}
}

func (s Secrets) redacted() string {
	tok := "none"
	if s.Token != "" {
		tok = "[redacted]"
	}
	return fmt.Sprintf("privilege.Secrets{CertPEM: %d bytes, KeyPEM: [redacted %d bytes], Token: %s}", len(s.CertPEM), len(s.KeyPEM), tok)
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
