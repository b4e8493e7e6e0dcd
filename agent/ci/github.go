package ci

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sethvargo/go-githubactions"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// The runner's file-command variables.
const (
	GitHubEnvFile     = "GITHUB_ENV"
	GitHubOutputFile  = "GITHUB_OUTPUT"
	GitHubSummaryFile = "GITHUB_STEP_SUMMARY"
)

// ErrNoSummary is returned by AppendSummary when the runner offers no job
// summary file (GITHUB_STEP_SUMMARY unset, as on old GitHub Enterprise
// servers); callers log it and go on.
var ErrNoSummary = errors.New(GitHubSummaryFile + " is not set: the runner offers no job summary")

// GitHub writes to a GitHub Actions job: workflow commands (masks, groups,
// annotations) on a writer, file commands into the runner's files.
//
// go-githubactions v1.3.0 is used for the workflow commands, behind recover, because its methods panic when a write
// fails. Its file writers are not used: they append with a fixed heredoc
// delimiter ("_GitHubActionsFileCommandDelimeter_"), so a value holding that
// string and a newline could define extra variables, and they would write to
// a file named "" outside GitHub. GitHub writes the file commands itself,
// the way actions/toolkit does: a fresh random delimiter per write, checked
// against every name and value, plus single-line values only.
type GitHub struct {
	out    io.Writer
	gha    *githubactions.Action
	getenv func(string) string
	red    *Redactor
}

// NewGitHub returns the adapter writing workflow commands to out and reading
// the runner's variables through getenv (os.Getenv when nil). It fails,
// naming the variable, when GITHUB_ENV or GITHUB_OUTPUT is unset: outside a
// GitHub Actions step there is nowhere to export to.
func NewGitHub(out io.Writer, getenv func(string) string) (*GitHub, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var errs []error
	for _, name := range []string{GitHubEnvFile, GitHubOutputFile} {
		if getenv(name) == "" {
			errs = append(errs, fmt.Errorf("%s is not set: the github command runs only as a GitHub Actions step (use 'goproxy-setup run' in other shells)", name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, errkind.Mark(errkind.BadInput, err)
	}
	return &GitHub{
		out:    out,
		gha:    githubactions.New(githubactions.WithWriter(out), githubactions.WithGetenv(getenv)),
		getenv: getenv,
		red:    &Redactor{},
	}, nil
}

// Redactor returns the adapter's redactor: every value masked so far.
func (g *GitHub) Redactor() *Redactor { return g.red }

// command runs one go-githubactions call, turning its panic into an error.
func command(what string, f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("write %s workflow command: %v", what, r)
		}
	}()
	f()
	return nil
}

// Mask registers secrets with the runner's log masking (::add-mask::) and
// with the adapter's redactor. Call it before anything could print them.
// A multi-line secret is masked whole and line by line.
func (g *GitHub) Mask(secrets ...string) error {
	for _, s := range g.red.Add(secrets...) {
		if err := command("add-mask", func() { g.gha.AddMask(s) }); err != nil {
			return err
		}
	}
	return nil
}

// Group starts a collapsible log group; EndGroup ends it.
func (g *GitHub) Group(title string) error {
	return command("group", func() { g.gha.Group(g.red.String(oneLine(title))) })
}

// EndGroup ends the current log group.
func (g *GitHub) EndGroup() error {
	return command("endgroup", func() { g.gha.EndGroup() })
}

// Level is an annotation's severity.
type Level int

// Annotation levels.
const (
	Notice Level = iota
	Warning
	Error
)

// Annotate emits an annotation with a title; secrets are redacted.
func (g *GitHub) Annotate(level Level, title, msg string) error {
	a := g.gha.WithFieldsMap(map[string]string{"title": g.red.String(oneLine(title))})
	msg = g.red.String(msg)
	return command("annotation", func() {
		switch level {
		case Error:
			a.Errorf("%s", msg)
		case Warning:
			a.Warningf("%s", msg)
		default:
			a.Noticef("%s", msg)
		}
	})
}

// WriteLog writes text to the log through the redactor.
func (g *GitHub) WriteLog(text string) error {
	_, err := io.WriteString(g.out, g.red.String(text))
	return err
}

// ExportEnv appends vars to GITHUB_ENV for the following steps. Every
// variable is validated first; nothing is written unless all are valid.
func (g *GitHub) ExportEnv(vars []EnvVar) error {
	return g.appendVars(GitHubEnvFile, vars, false)
}

// SetOutputs appends vars to GITHUB_OUTPUT as the step's outputs.
func (g *GitHub) SetOutputs(vars []EnvVar) error {
	return g.appendVars(GitHubOutputFile, vars, true)
}

func (g *GitHub) appendVars(fileVar string, vars []EnvVar, output bool) error {
	if err := validateVars(vars, output); err != nil {
		return fmt.Errorf("write %s: %w", fileVar, err)
	}
	var b bytes.Buffer
	if err := writeFileCommands(&b, vars, output); err != nil {
		return fmt.Errorf("write %s: %w", fileVar, err)
	}
	return g.appendFile(fileVar, b.Bytes())
}

// AppendSummary appends Markdown to the job summary, redacted. It returns
// ErrNoSummary when the runner offers none.
func (g *GitHub) AppendSummary(markdown string) error {
	if g.getenv(GitHubSummaryFile) == "" {
		return ErrNoSummary
	}
	return g.appendFile(GitHubSummaryFile, []byte(g.red.String(markdown)))
}

// appendFile appends data in a single write to the runner-owned file named
// by fileVar. These files belong to the runner, which reads them by path
// after the step, so they are appended to, not replaced.
func (g *GitHub) appendFile(fileVar string, data []byte) (err error) {
	path := g.getenv(fileVar)
	if path == "" {
		return errkind.Mark(errkind.BadInput, fmt.Errorf("%s is not set: the runner did not offer the file command", fileVar))
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", fileVar, err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", fileVar, cerr)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("append to %s: %w", fileVar, err)
	}
	return nil
}

// WriteFileCommands writes vars in the runner's file-command syntax,
// NAME<<DELIMITER, the value, DELIMITER, with one random delimiter that no
// name or value contains (actions/toolkit's prepareKeyValueMessage). Values
// are validated as single lines, so even a reader that ignored the heredoc
// could not be tricked into a second variable.
func WriteFileCommands(w io.Writer, vars []EnvVar) error {
	return writeFileCommands(w, vars, false)
}

func writeFileCommands(w io.Writer, vars []EnvVar, output bool) error {
	if err := validateVars(vars, output); err != nil {
		return err
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("make file-command delimiter: %w", err)
	}
	delim := "ghadelimiter_" + hex.EncodeToString(raw[:])
	var b bytes.Buffer
	for _, v := range vars {
		if strings.Contains(v.Name, delim) || strings.Contains(v.Value, delim) {
			return fmt.Errorf("internal error: %s holds the file-command delimiter", v.Name)
		}
		fmt.Fprintf(&b, "%s<<%s\n%s\n%s\n", v.Name, delim, v.Value, delim)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// StateDirVar carries the state directory to later steps, so the report
// action (and `goproxy-setup stop`) finds the agent through its env twin.
const StateDirVar = "GOPROXY_SETUP_STATE_DIR"

// Begin starts the setup's collapsible log group.
func (g *GitHub) Begin(title string) error { return g.Group(title) }

// End ends the group Begin started.
func (g *GitHub) End() error { return g.EndGroup() }

// Publish reports a setup to the job, in this order: masks for every secret
// (before anything else can print one), the exported environment and
// GOPROXY_SETUP_STATE_DIR, the outputs (goproxy, modules, cache-hit,
// report), annotations (warnings; on failure the diagnosis of a transport
// failure and the error, titled with its kind) and the job summary. A failed
// setup exports only GOPROXY_SETUP_STATE_DIR and no success-looking figures.
// A missing summary file is logged, not fatal. The returned error is about
// publishing; the setup's own error stays in o.Err.
func (g *GitHub) Publish(o *Outcome) error {
	if err := g.Mask(o.Secrets...); err != nil {
		return err
	}
	var errs []error
	if o.Err == nil {
		env := append(append([]EnvVar(nil), o.Env...), EnvVar{Name: StateDirVar, Value: o.StateDir})
		if err := g.ExportEnv(env); err != nil {
			return err // nothing was exported: the job must not go on
		}
	} else if o.StateDir != "" {
		// The report action still finds the agent's logs and stops
		// whatever was started.
		errs = append(errs, g.ExportEnv([]EnvVar{{Name: StateDirVar, Value: o.StateDir}}))
	}
	goproxy, modules, cacheHit := "", "", "false"
	if o.Err == nil {
		goproxy, _ = o.Lookup("GOPROXY")
		modules = "0"
		if o.Warm != nil {
			modules, cacheHit = fmt.Sprint(o.Warm.Modules), fmt.Sprint(o.Warm.CacheHit())
		}
	}
	errs = append(errs, g.SetOutputs([]EnvVar{
		{Name: "goproxy", Value: goproxy},
		{Name: "modules", Value: modules},
		{Name: "cache-hit", Value: cacheHit},
		{Name: "report", Value: o.ReportPath},
	}))
	for _, w := range o.Warnings {
		errs = append(errs, g.Annotate(Warning, "goproxy-setup", w))
	}
	if o.Err != nil {
		f := o.failure()
		if f.ladder && f.layer != "" {
			var b bytes.Buffer
			if err := o.Diagnosis.WriteAnnotations(&b); err != nil {
				errs = append(errs, fmt.Errorf("render the diagnosis as annotations: %w", err))
			}
			errs = append(errs, g.WriteLog(b.String()))
		}
		errs = append(errs, g.Annotate(Error, "goproxy-setup failed: "+f.name, o.Err.Error()))
	}
	var sum bytes.Buffer
	if err := WriteSetupSummary(&sum, o, g.red); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, g.summary(sum.String()))
	return errors.Join(errs...)
}

// summary appends markdown to the job summary, or to the log when the
// runner offers none.
func (g *GitHub) summary(markdown string) error {
	err := g.AppendSummary(markdown)
	if errors.Is(err, ErrNoSummary) {
		return g.WriteLog(ErrNoSummary.Error() + "; the summary follows in the log\n" + markdown)
	}
	return err
}

// PublishStats reports the agent's final stats: a log group with the
// figures, the summary section, the outputs (requests, failed-after-setup)
// and, when fetches failed after setup, an error annotation and an error
// marked Unreachable so the job fails.
func (g *GitHub) PublishStats(s *Stats) error {
	var errs []error
	if err := g.Group("goproxy-setup: agent stats"); err != nil {
		return err
	}
	errs = append(errs, WriteStatsText(RedactingWriter(g.out, g.red), s, g.red))
	if err := g.EndGroup(); err != nil {
		return err
	}
	errs = append(errs, g.SetOutputs([]EnvVar{
		{Name: "requests", Value: fmt.Sprint(s.Requests)},
		{Name: "failed-after-setup", Value: fmt.Sprint(s.FailedAfterSetup)},
	}))
	var sum bytes.Buffer
	if err := WriteStopSummary(&sum, s, g.red); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, g.summary(sum.String()))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if s.FailedAfterSetup > 0 {
		msg := failedAfterSetupMessage(s)
		if err := g.Annotate(Error, "goproxy-setup report", msg); err != nil {
			return err
		}
		return errkind.Mark(errkind.Unreachable, errors.New(msg))
	}
	return nil
}

// NoAgent warns that the report step found no agent: the setup step did not
// start one (it failed earlier, and said why).
func (g *GitHub) NoAgent(stateDir string) error {
	return g.Annotate(Warning, "goproxy-setup report", noAgentMessage(stateDir))
}
