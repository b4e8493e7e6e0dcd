package ci

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/atomicfile"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// GitLab writes collapsible log sections for a GitLab CI job log. Section
// markers go to the log writer (stderr), so they never mix with the export
// lines a job's shell evaluates from stdout.
type GitLab struct {
	log io.Writer
	now func() time.Time
	red *Redactor
}

// NewGitLab returns the adapter writing sections to log; now is the clock
// for the markers' timestamps (time.Now when nil).
func NewGitLab(log io.Writer, now func() time.Time) *GitLab {
	if now == nil {
		now = time.Now
	}
	return &GitLab{log: log, now: now, red: &Redactor{}}
}

// Redactor returns the adapter's redactor. GitLab masks only variables
// defined in its settings, not values a job computes, so everything this
// adapter writes goes through it instead.
func (g *GitLab) Redactor() *Redactor { return g.red }

// validSection reports whether name is a GitLab section name: letters,
// digits, '_', '.', '-'.
func validSection(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		switch {
		case r == '_', r == '.', r == '-', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		default:
			return false
		}
	}
	return true
}

// SectionStart opens the log section name with header as its visible line;
// collapsed folds it by default.
func (g *GitLab) SectionStart(name, header string, collapsed bool) error {
	if !validSection(name) {
		return fmt.Errorf("internal error: GitLab section name %q", name)
	}
	opt := ""
	if collapsed {
		opt = "[collapsed=true]"
	}
	_, err := fmt.Fprintf(g.log, "\x1b[0Ksection_start:%d:%s%s\r\x1b[0K%s\n", g.now().Unix(), name, opt, g.red.String(oneLine(header)))
	return err
}

// SectionEnd closes the log section name.
func (g *GitLab) SectionEnd(name string) error {
	if !validSection(name) {
		return fmt.Errorf("internal error: GitLab section name %q", name)
	}
	_, err := fmt.Fprintf(g.log, "\x1b[0Ksection_end:%d:%s\r\x1b[0K\n", g.now().Unix(), name)
	return err
}

// Log returns the log writer, redacted.
func (g *GitLab) Log() io.Writer { return RedactingWriter(g.log, g.red) }

// WriteLog writes text to the log through the redactor.
func (g *GitLab) WriteLog(text string) error {
	_, err := io.WriteString(g.log, g.red.String(text))
	return err
}

// ResolvePath resolves a report path given by flag: an absolute path stays,
// a relative one is taken relative to base (CI_PROJECT_DIR, where GitLab
// collects artifacts from), or to dir when base is empty.
func ResolvePath(path, base, dir string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	if base == "" {
		base = dir
	}
	return filepath.Join(base, path)
}

// WriteFileAtomic writes data to path atomically, creating its directory;
// perm applies to the new file.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create directory for %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, data, perm)
}

// WriteDotenvFile writes vars as a GitLab dotenv artifact (NAME=value lines,
// unquoted, single-line values) to path, atomically.
func WriteDotenvFile(path string, vars []EnvVar) error {
	var b bytes.Buffer
	if err := WriteEnv(&b, FormatDotenv, vars); err != nil {
		return errkind.Mark(errkind.BadInput, fmt.Errorf("write dotenv %s: %w", path, err))
	}
	return WriteFileAtomic(path, b.Bytes(), 0o644)
}

// ReportVars are the variables of the dotenv artifact that later jobs get.
// GOPROXY is left out on purpose: it names a loopback agent that ends with
// this job and carries its capability token, which does not belong in an
// artifact. The policy's GONOSUMDB/GOPRIVATE/GOFLAGS carry over, plus the
// outcome as GOPROXY_SETUP_RESULT (ok|failed), _FAILED_LAYER, _MODULES and
// _CACHE_HIT.
func ReportVars(o *Outcome) []EnvVar {
	var vars []EnvVar
	for _, v := range o.Env {
		if v.Name != "GOPROXY" {
			vars = append(vars, v)
		}
	}
	result, layer := "ok", ""
	if o.Err != nil {
		result = "failed"
		if o.Diagnosis != nil {
			layer, _ = o.Diagnosis.Verdict()
		}
	}
	vars = append(vars, EnvVar{"GOPROXY_SETUP_RESULT", result})
	if layer != "" {
		vars = append(vars, EnvVar{"GOPROXY_SETUP_FAILED_LAYER", layer})
	}
	if o.Warm != nil {
		vars = append(vars,
			EnvVar{"GOPROXY_SETUP_MODULES", fmt.Sprint(o.Warm.Modules)},
			EnvVar{"GOPROXY_SETUP_CACHE_HIT", fmt.Sprint(o.Warm.CacheHit())})
	}
	return vars
}

// Publish reports a setup in a GitLab job: a collapsed log section with
// the text summary (or the diagnosis), the dotenv artifact (ReportVars) and
// the JUnit report at the given paths (skipped when empty), and on success
// the export lines on stdout for the job's shell to eval. The returned
// error is about publishing; the setup's own error stays in o.Err.
func (g *GitLab) Publish(stdout io.Writer, o *Outcome, dotenvPath, junitPath string) error {
	g.red.Add(o.Secrets...)
	var errs []error
	var text bytes.Buffer
	writeSetupText(&text, o)
	header := "goproxy-setup: GOPROXY through the agent at " + o.Addr
	if o.Err != nil {
		header = "goproxy-setup failed"
	}
	errs = append(errs, g.SectionStart("goproxy_setup_report", header, o.Err == nil), g.WriteLog(text.String()))
	if o.Err != nil && o.Diagnosis != nil {
		var d bytes.Buffer
		if err := o.Diagnosis.WriteText(&d); err != nil {
			errs = append(errs, fmt.Errorf("render the diagnosis: %w", err))
		}
		errs = append(errs, g.WriteLog(d.String()))
	}
	errs = append(errs, g.SectionEnd("goproxy_setup_report"))
	if dotenvPath != "" {
		errs = append(errs, WriteDotenvFile(dotenvPath, ReportVars(o)))
	}
	if junitPath != "" {
		var j bytes.Buffer
		if err := WriteSetupJUnit(&j, o, g.now(), g.red); err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, WriteFileAtomic(junitPath, j.Bytes(), 0o644))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if o.Err != nil {
		return nil
	}
	return WriteEnv(stdout, FormatShell, append(append([]EnvVar(nil), o.Env...), EnvVar{StateDirVar, o.StateDir}))
}

// writeSetupText writes the plain-text summary of a setup for a log.
func writeSetupText(b *bytes.Buffer, o *Outcome) {
	if o.Err != nil {
		if o.Diagnosis != nil {
			layer, summary := o.Diagnosis.Verdict()
			fmt.Fprintf(b, "failing layer: %s: %s\n", layer, oneLine(summary))
		}
		fmt.Fprintf(b, "error: %v\n", o.Err)
		if o.ReportPath != "" {
			fmt.Fprintf(b, "full report: %s\n", o.ReportPath)
		}
	} else {
		fmt.Fprintf(b, "agent:     %s (upstream %s)\nstate dir: %s\n", o.Addr, o.Upstream, o.StateDir)
		for _, v := range o.Env {
			fmt.Fprintf(b, "export     %s=%s\n", v.Name, v.Value)
		}
		if o.Warm != nil {
			fmt.Fprintf(b, "warm:      %d modules, %d already cached, %d downloaded, %s in %s\n", o.Warm.Modules, o.Warm.Hits, o.Warm.Fetched, HumanBytes(o.Warm.Bytes), HumanDuration(o.Warm.Duration))
		}
	}
	for _, w := range o.Warnings {
		fmt.Fprintf(b, "warning:   %s\n", oneLine(w))
	}
}

// WriteStatsText writes the agent's final stats for a plain log.
func WriteStatsText(w io.Writer, s *Stats, red *Redactor) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "requests: %d, served %s, upstream latency p50 %s p90 %s p99 %s\n", s.Requests, HumanBytes(s.Bytes), HumanDuration(s.Latency.P50), HumanDuration(s.Latency.P90), HumanDuration(s.Latency.P99))
	layers := make([]string, 0, len(s.ErrorsByLayer))
	for l := range s.ErrorsByLayer {
		layers = append(layers, l)
	}
	sort.Strings(layers)
	for _, l := range layers {
		fmt.Fprintf(&b, "errors at %s: %d\n", l, s.ErrorsByLayer[l])
	}
	if s.FailedAfterSetup > 0 {
		fmt.Fprintf(&b, "FAILED: %d fetches failed after setup\n", s.FailedAfterSetup)
	}
	_, err := io.WriteString(w, red.String(b.String()))
	return err
}
