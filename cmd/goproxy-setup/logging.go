package main

import (
	"io"
	"os"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/term"
)

// newLogger wires the libraries' injected logger to w: text on a terminal,
// JSON otherwise unless --log-format says; colour only on a terminal.
func newLogger(name string, c *commonFlags, w io.Writer) hclog.Logger {
	return newLoggerTo(name, c, w, w)
}

// newLoggerTo is newLogger for a logger that writes to w, a wrapper (the
// CI front ends' redacting writer) around the real stream dest. Format and
// colour are decided on dest: hclog's AutoColor would look at w, which is no
// file, and colour everything, so escape codes would land in CI logs, step
// output and files.
func newLoggerTo(name string, c *commonFlags, dest, w io.Writer) hclog.Logger {
	level := hclog.LevelFromString(c.logLevel)
	if c.logLevel == "off" {
		return hclog.NewNullLogger()
	}
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	json := c.logFormat == "json"
	if c.logFormat == "" {
		json = !isTerminal(dest)
		if os.Getenv("CI") != "" {
			json = false // CI logs are read by people
		}
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      level,
		Output:     w,
		JSONFormat: json,
		Color:      colorFor(dest, os.Getenv),
	})
}

// colorFor decides colour once, on the real stream: only an interactive
// terminal outside CI gets it (NO_COLOR and TERM=dumb turn it off). CI logs,
// pipes and files never do, whatever wraps them.
func colorFor(dest io.Writer, getenv func(string) string) hclog.ColorOption {
	if !isTerminal(dest) || getenv("CI") != "" || getenv("NO_COLOR") != "" || getenv("TERM") == "dumb" {
		return hclog.ColorOff
	}
	return hclog.ForceColor
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
