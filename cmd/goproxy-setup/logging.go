package main

import (
	"io"
	"os"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/term"
)

// newLogger wires the libraries' injected logger to w: text on a terminal,
// JSON otherwise unless --log-format says.
func newLogger(name string, c *commonFlags, w io.Writer) hclog.Logger {
	level := hclog.LevelFromString(c.logLevel)
	if c.logLevel == "off" {
		return hclog.NewNullLogger()
	}
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	json := c.logFormat == "json"
	if c.logFormat == "" {
		json = !isTerminal(w)
		if os.Getenv("CI") != "" {
			json = false // CI logs are read by people
		}
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      level,
		Output:     w,
		JSONFormat: json,
		Color:      hclog.AutoColor,
	})
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
