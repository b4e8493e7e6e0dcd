package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/ci"
)

// TestLoggerNoColourInFilesOrPipes: the CI front ends log through a
// redacting writer, which is no *os.File; colour is decided on the real
// stream, so a file or a pipe never receives an escape byte, whatever
// TERM says and whether or not CI is set.
func TestLoggerNoColourInFilesOrPipes(t *testing.T) {
	t.Parallel()
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	for name, dest := range map[string]*os.File{"file": file, "pipe": pw} {
		for _, env := range []map[string]string{{"TERM": "xterm-256color"}, {"TERM": "xterm-256color", "CI": "true"}} {
			if got := colorFor(dest, func(k string) string { return env[k] }); got != hclog.ColorOff {
				t.Errorf("colorFor(%s, %v) = %v, want ColorOff", name, env, got)
			}
		}
	}
	if got := colorFor(&bytes.Buffer{}, func(string) string { return "" }); got != hclog.ColorOff {
		t.Errorf("colorFor(buffer) = %v, want ColorOff", got)
	}

	// The whole path the front ends use: logger → redacting writer → file.
	red := &ci.Redactor{}
	red.Add("CANARY-token-123")
	c := &commonFlags{logLevel: "debug", logFormat: "text"}
	log := newLoggerTo("goproxy-setup", c, file, ci.RedactingWriter(file, red))
	log.Error("upstream failed", "url", "http://127.0.0.1:1/CANARY-token-123", "layer", "tls")
	log.Warn("warning")
	log.Info("agent serving", "addr", "127.0.0.1:1")
	pw.Close()
	b, err := os.ReadFile(file.Name())
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		t.Fatal("nothing logged: the test checked nothing")
	}
	if i := bytes.IndexByte(b, 0x1b); i >= 0 {
		t.Errorf("log file holds an escape byte at %d: %q", i, b)
	}
	if bytes.Contains(b, []byte("CANARY")) {
		t.Errorf("log file holds the secret: %q", b)
	}
}
