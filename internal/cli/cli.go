// Package cli owns the small subcommand registry both binaries
// (goproxy-setup, goproxy-bench) use: each subcommand registers itself from
// its own file, and the main looks it up and lists the set in its usage.
package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
)

// Command is one subcommand.
type Command interface {
	// Name is the word that selects the command.
	Name() string
	// Synopsis is the one-line description shown in the usage.
	Synopsis() string
	// Run parses args and runs the command. stdout carries the command's
	// result (env lines, JSON, tables); stderr carries progress and logs.
	Run(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// Set is a registry of subcommands.
type Set struct {
	cmds map[string]Command
}

// Register adds c; a second command of the same name is a programming
// error and panics.
func (s *Set) Register(c Command) {
	if s.cmds == nil {
		s.cmds = map[string]Command{}
	}
	if _, dup := s.cmds[c.Name()]; dup {
		panic("internal error: duplicate command " + c.Name())
	}
	s.cmds[c.Name()] = c
}

// Lookup returns the command called name.
func (s *Set) Lookup(name string) (Command, bool) {
	c, ok := s.cmds[name]
	return c, ok
}

// List writes one "  name  synopsis" line per command, sorted by name.
func (s *Set) List(w io.Writer) {
	names := make([]string, 0, len(s.cmds))
	width := 0
	for n := range s.cmds {
		names = append(names, n)
		width = max(width, len(n))
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-*s  %s\n", width, n, s.cmds[n].Synopsis())
	}
}
