package ci

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// Format is a plain-shell output format for exported variables.
type Format string

// The formats of `run --format` and the GitLab front end.
const (
	// FormatShell is POSIX `export NAME='value'` lines, for eval.
	FormatShell Format = "shell"
	// FormatDotenv is NAME=value lines, unquoted (GitLab's dotenv
	// artifacts, docker --env-file).
	FormatDotenv Format = "dotenv"
	// FormatJSON is one JSON object {"env":[{"name":..,"value":..}]}.
	FormatJSON Format = "json"
)

// ParseFormat parses a --format value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatShell, FormatDotenv, FormatJSON:
		return f, nil
	}
	return "", errkind.Mark(errkind.BadInput, fmt.Errorf("--format %q: use shell, dotenv or json", s))
}

// WriteEnv writes vars in format f. Every variable is validated first and
// nothing is written unless all are valid, so a value cannot smuggle a
// second assignment into an eval'd script or a dotenv file.
func WriteEnv(w io.Writer, f Format, vars []EnvVar) error {
	if err := validateVars(vars, false); err != nil {
		return err
	}
	var b bytes.Buffer
	switch f {
	case FormatShell:
		for _, v := range vars {
			fmt.Fprintf(&b, "export %s=%s\n", v.Name, ShellQuote(v.Value))
		}
	case FormatDotenv:
		for _, v := range vars {
			fmt.Fprintf(&b, "%s=%s\n", v.Name, v.Value)
		}
	case FormatJSON:
		type jsonVar struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		}
		env := make([]jsonVar, len(vars))
		for i, v := range vars {
			env[i] = jsonVar(v)
		}
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(struct {
			Env []jsonVar `json:"env"`
		}{env}); err != nil {
			return fmt.Errorf("encode env as JSON: %w", err)
		}
	default:
		return fmt.Errorf("internal error: format %q", f)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// ShellQuote quotes s for POSIX shells: single quotes, with each ' written
// as '\”.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
