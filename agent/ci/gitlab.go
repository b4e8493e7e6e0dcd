package ci

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/atomicfile"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/humanize"
)

// GitLab writes to a GitLab CI job: collapsible log sections and reports
// on the log writer (stderr), the export lines a job's shell evaluates on
// stdout (so the two never mix), the dotenv artifact and the JUnit report.
type GitLab struct {
	log, stdout   io.Writer
	dotenv, junit string
	now           func() time.Time
	getenv        func(string) string
	red           *Redactor
}

// GitLabConfig configures NewGitLab.
type GitLabConfig struct {
	// Log receives sections and reports (the job log: stderr).
	Log io.Writer
	// Stdout receives the export lines for the job's shell.
	Stdout io.Writer
	// Dotenv and JUnit are the artifact paths; empty writes them into the
	// state directory (goproxy-setup.env, goproxy-setup.junit.xml).
	Dotenv, JUnit string
	// Now is the clock for the section markers (time.Now when nil).
	Now func() time.Time
	// Getenv reads the job's variables (os.Getenv when nil).
	Getenv func(string) string
}

// NewGitLab returns the GitLab adapter.
func NewGitLab(cfg GitLabConfig) *GitLab {
	g := &GitLab{log: cfg.Log, stdout: cfg.Stdout, dotenv: cfg.Dotenv, junit: cfg.JUnit, now: cfg.Now, getenv: cfg.Getenv, red: &Redactor{}}
	if g.now == nil {
		g.now = time.Now
	}
	if g.getenv == nil {
		g.getenv = os.Getenv
	}
	if g.stdout == nil {
		g.stdout = io.Discard
	}
	return g
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

// GitLabStatsFiles are where, by default, the agent of a GitLab job keeps
// its stats snapshot, in order of preference:
// $CI_PROJECT_DIR.tmp/goproxy-setup-$CI_JOB_ID/stats.json, the job's
// temporary directory beside the project (gitlab-runner's
// RUNNER_TEMP_PROJECT_DIR, where it writes file variables): in the build
// volume that the docker executor shares between the containers of a job's
// stages, and outside the project, so no artifact or cache path picks it
// up; and, where a non-root job cannot create that directory,
// $CI_PROJECT_DIR/.goproxy-setup-stats-$CI_JOB_ID/stats.json (the snapshot
// is secret-free). None outside a GitLab job.
func GitLabStatsFiles(getenv func(string) string) []string {
	project, job := getenv("CI_PROJECT_DIR"), getenv("CI_JOB_ID")
	if project == "" || job == "" || !validName("x"+job, false) {
		return nil
	}
	project = filepath.Clean(project)
	return []string{
		filepath.Join(project+".tmp", "goproxy-setup-"+job, "stats.json"),
		filepath.Join(project, ".goproxy-setup-stats-"+job, "stats.json"),
	}
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

// WriteDotenvFile writes vars as a GitLab dotenv artifact (NAME=value lines,
// unquoted, single-line values) to path, atomically.
func WriteDotenvFile(path string, vars []EnvVar) error {
	var b bytes.Buffer
	if err := WriteEnv(&b, FormatDotenv, vars); err != nil {
		return errkind.Mark(errkind.BadInput, fmt.Errorf("write dotenv %s: %w", path, err))
	}
	return writeArtifact(path, b.Bytes())
}

// writeArtifact writes a report file atomically, creating its directory.
func writeArtifact(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create directory for %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, data, 0o644)
}

// ReportVars are the variables of the dotenv artifact that later jobs get.
// GOPROXY is left out on purpose: it names a loopback agent that ends with
// this job and carries its capability token, which does not belong in an
// artifact. After a successful setup: the policy's GONOSUMDB/GOPRIVATE/
// GOFLAGS, GOPROXY_SETUP_RESULT=ok, and _MODULES and _CACHE_HIT when the
// cache was warmed. After a failed one: GOPROXY_SETUP_RESULT=failed, the
// kind of failure as GOPROXY_SETUP_FAILURE (local, answered, unreachable,
// integrity, bad-input, canceled, other) and, for a transport failure whose
// diagnosis found one, GOPROXY_SETUP_FAILED_LAYER; no figures that could
// pass for success.
func ReportVars(o *Outcome) []EnvVar {
	if o.Err != nil {
		f := o.failure()
		vars := []EnvVar{{Name: "GOPROXY_SETUP_RESULT", Value: "failed"}, {Name: "GOPROXY_SETUP_FAILURE", Value: f.slug}}
		if f.ladder && f.layer != "" {
			vars = append(vars, EnvVar{Name: "GOPROXY_SETUP_FAILED_LAYER", Value: f.layer})
		}
		return vars
	}
	var vars []EnvVar
	for _, v := range o.Env {
		if v.Name != "GOPROXY" {
			vars = append(vars, v)
		}
	}
	vars = append(vars, EnvVar{Name: "GOPROXY_SETUP_RESULT", Value: "ok"})
	if o.Warm != nil {
		vars = append(vars,
			EnvVar{Name: "GOPROXY_SETUP_MODULES", Value: fmt.Sprint(o.Warm.Modules)},
			EnvVar{Name: "GOPROXY_SETUP_CACHE_HIT", Value: fmt.Sprint(o.Warm.CacheHit())})
	}
	return vars
}

// Begin opens the setup's collapsed log section.
func (g *GitLab) Begin(title string) error { return g.SectionStart("goproxy_setup", title, true) }

// End closes the section Begin opened.
func (g *GitLab) End() error { return g.SectionEnd("goproxy_setup") }

// Mask registers secrets with the adapter's redactor: GitLab masks only
// variables defined in its settings, not values a job computes.
func (g *GitLab) Mask(secrets ...string) error {
	g.red.Add(secrets...)
	return nil
}

// artifactPath is the path of a report artifact: as configured, or name in
// the state directory.
func artifactPath(configured, stateDir, name string) string {
	if configured != "" || stateDir == "" {
		return configured
	}
	return filepath.Join(stateDir, name)
}

// Publish reports a setup in a GitLab job: a log section with the text
// summary (collapsed on success; on failure open, with the kind of failure
// and, for a transport failure, the diagnosis), the dotenv artifact
// (ReportVars), the JUnit report, and on success the export lines on stdout
// for the job's shell to eval. The returned error is about publishing; the
// setup's own error stays in o.Err.
func (g *GitLab) Publish(o *Outcome) error {
	g.red.Add(o.Secrets...)
	var errs []error
	var text bytes.Buffer
	writeSetupText(&text, o)
	header := "goproxy-setup: GOPROXY through the agent at " + o.Addr
	if o.Err != nil {
		header = "goproxy-setup failed: " + o.failure().name
	}
	errs = append(errs, g.SectionStart("goproxy_setup_report", header, o.Err == nil), g.WriteLog(text.String()))
	if f := o.failure(); o.Err != nil && f.ladder {
		var d bytes.Buffer
		if err := o.Diagnosis.WriteText(&d); err != nil {
			errs = append(errs, fmt.Errorf("render the diagnosis: %w", err))
		}
		errs = append(errs, g.WriteLog(d.String()))
	}
	errs = append(errs, g.SectionEnd("goproxy_setup_report"))
	if path := artifactPath(g.dotenv, o.StateDir, "goproxy-setup.env"); path != "" {
		errs = append(errs, WriteDotenvFile(path, ReportVars(o)))
	}
	if path := artifactPath(g.junit, o.StateDir, "goproxy-setup.junit.xml"); path != "" {
		var j bytes.Buffer
		if err := WriteSetupJUnit(&j, o, g.now(), g.red); err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, writeArtifact(path, j.Bytes()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if o.Err != nil {
		return nil
	}
	return WriteEnv(g.stdout, FormatShell, append(append([]EnvVar(nil), o.Env...), EnvVar{Name: StateDirVar, Value: o.StateDir}))
}

// writeSetupText writes the plain-text summary of a setup for a log: on
// failure the kind of failure first (and for a transport failure the
// ladder's verdict), the error once, and where the full report is.
func writeSetupText(b *bytes.Buffer, o *Outcome) {
	if o.Err != nil {
		f := o.failure()
		fmt.Fprintf(b, "failed:    %s: %s\n", f.name, f.headline)
		if f.ladder {
			fmt.Fprintf(b, "%s\n", f.verdictLine())
		}
		fmt.Fprintf(b, "error:     %v\n", o.Err)
		if o.ReportPath != "" {
			fmt.Fprintf(b, "full report: %s\n", o.ReportPath)
		}
	} else {
		fmt.Fprintf(b, "agent:     %s (upstream %s)\nstate dir: %s\n", o.Addr, o.Upstream, o.StateDir)
		for _, v := range o.Env {
			fmt.Fprintf(b, "export     %s=%s\n", v.Name, v.Value)
		}
		for _, l := range o.Privilege {
			fmt.Fprintf(b, "%s\n", oneLine(l))
		}
		if o.Warm != nil {
			fmt.Fprintf(b, "warm:      %d modules, %d already cached, %d downloaded, %s in %s\n", o.Warm.Modules, o.Warm.Hits, o.Warm.Fetched, humanize.Bytes(o.Warm.Bytes), HumanDuration(o.Warm.Duration))
		}
	}
	for _, w := range o.Warnings {
		fmt.Fprintf(b, "warning:   %s\n", oneLine(w))
	}
}

// PublishStats reports the agent's final stats in a section (open when
// fetches failed after setup) and returns an error marked Unreachable when
// they did, so the job fails.
func (g *GitLab) PublishStats(s *Stats) error {
	if err := g.SectionStart("goproxy_setup_stats", "goproxy-setup: agent stats", s.FailedAfterSetup == 0); err != nil {
		return err
	}
	werr := WriteStatsText(g.Log(), s, g.red)
	if err := errors.Join(werr, g.SectionEnd("goproxy_setup_stats")); err != nil {
		return err
	}
	if s.FailedAfterSetup > 0 {
		return errkind.Mark(errkind.Unreachable, errors.New(failedAfterSetupMessage(s)))
	}
	return nil
}

// NoAgent says in the log that the report found no agent.
func (g *GitLab) NoAgent(stateDir string) error {
	return g.WriteLog("goproxy-setup: " + noAgentMessage(stateDir) + "\n")
}

// WriteStatsText writes the agent's final stats for a plain log, with the
// same headline as the summary (statsHeadline).
func WriteStatsText(w io.Writer, s *Stats, red *Redactor) error {
	var b bytes.Buffer
	_, head, tail := statsHeadline(s)
	if s.FailedAfterSetup > 0 {
		head = "FAILED: " + head
	}
	if tail != "" {
		head += ": " + tail
	}
	fmt.Fprintf(&b, "%s\n", head)
	if s.Ended != "" {
		fmt.Fprintf(&b, "note: %s\n", s.Ended)
	}
	fmt.Fprintf(&b, "requests: %d, served %s, upstream latency p50 %s p90 %s p99 %s\n", s.Requests, humanize.Bytes(s.Bytes), HumanDuration(s.Latency.P50), HumanDuration(s.Latency.P90), HumanDuration(s.Latency.P99))
	for _, l := range sortedLayers(s.ErrorsByLayer) {
		fmt.Fprintf(&b, "errors at %s (whole job): %d\n", l, s.ErrorsByLayer[l])
	}
	for _, l := range upstreamLines(s) {
		fmt.Fprintf(&b, "network: %s\n", l)
	}
	_, err := io.WriteString(w, red.String(b.String()))
	return err
}
