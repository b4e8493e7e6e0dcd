// Package ci owns what goproxy-setup says to a CI system: the GitHub Actions
// adapter (secret masking, log groups, annotations, GITHUB_ENV and
// GITHUB_OUTPUT file commands, the job summary), the
// GitLab adapter (collapsible log sections, shell export lines, the dotenv
// artifact, the JUnit report) and the plain-shell formats (shell, dotenv,
// JSON). FrontEnd is the one interface GitHub and GitLab implement; the
// setup and report flow over it is written once, in package agent
// (RunFrontEnd, ReportFrontEnd), which also converts its results into the
// Outcome and Stats declared here, once. This package renders; it never
// starts anything itself and sits below agent in the import graph. It also
// applies each CI's rules for key material (KeyFiles), writing private
// copies through tlsauth.PrivateDir.
//
// Everything that leaves this package goes through two gates: names and
// values are validated before they reach a CI file command (a value must not
// be able to inject a second variable), and every rendered text passes a
// Redactor holding the run's secrets (capability token and URL, enrolment
// and OIDC tokens), so a secret never reaches a log, summary or report even
// where the CI's own masking does not apply.
package ci

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/redact"
	"github.com/goproxy-setup/goproxy-setup/policies"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
)

// EnvVar is one variable exported to the job's later steps: the policy's
// own type, so the bootstrap's environment reaches the adapters unconverted.
// Name is [A-Za-z_][A-Za-z0-9_]*; Value holds no newline, carriage return
// or NUL (ValidateVar).
type EnvVar = policies.EnvVar

// ErrInvalid is the sentinel for names and values that cannot be handed to a
// CI file command safely; errors wrapping it are bad input.
var ErrInvalid = errors.New("invalid CI variable")

// validName reports whether name can be an environment variable or dotenv
// key in every CI this package supports, [A-Za-z_][A-Za-z0-9_]*, or with
// dash a GitHub step output, which also allows '-' after the first
// character (setup-go's "cache-hit").
func validName(name string, dash bool) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case (r >= '0' && r <= '9' || dash && r == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidateVar checks v for use as an environment variable: a valid name and
// a single-line value without NUL. The error names the variable but never
// quotes the value, which may be a secret.
func ValidateVar(v EnvVar) error { return validateVar(v, false) }

func validateVar(v EnvVar, output bool) error {
	if !validName(v.Name, output) {
		return errkind.Mark(errkind.BadInput, fmt.Errorf("%w: name %q: use letters, digits and '_' only, not starting with a digit", ErrInvalid, v.Name))
	}
	if i := strings.IndexAny(v.Value, "\n\r\x00"); i >= 0 {
		return errkind.Mark(errkind.BadInput, fmt.Errorf("%w: value of %s holds a line break or NUL at byte %d: a variable must be a single line", ErrInvalid, v.Name, i))
	}
	return nil
}

// validateVars checks every variable and reports all problems at once;
// output selects the output-name rules.
func validateVars(vars []EnvVar, output bool) error {
	var errs []error
	for _, v := range vars {
		if err := validateVar(v, output); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Redactor masks the secret values a front end registers (tokens, the
// capability URL): internal/redact's one implementation.
type Redactor = redact.Values

// Diagnosis renders a failed run's layer-by-layer diagnosis. Package agent
// adapts agent/diagnose's report to it, which keeps this package free
// of the diagnose renderers' signatures and lets tests use a fixed text.
type Diagnosis interface {
	// Verdict returns the failing layer (a Contract layer name such as
	// "tls") and its one-line summary.
	Verdict() (layer, summary string)
	// WriteMarkdown writes the report for a job summary, failing layer
	// first.
	WriteMarkdown(w io.Writer) error
	// WriteText writes the report for a plain log.
	WriteText(w io.Writer) error
	// WriteAnnotations writes GitHub workflow-command annotations
	// (::error ...::) for the failing checks.
	WriteAnnotations(w io.Writer) error
	// WriteJUnit writes the report as a JUnit XML document.
	WriteJUnit(w io.Writer) error
}

// Warm holds the figures of a module cache warm-up.
type Warm struct {
	// Modules is the number of module versions listed in go.sum.
	Modules int `json:"modules"`
	// Hits is how many were already in the module cache.
	Hits int `json:"hits"`
	// Fetched is how many were downloaded.
	Fetched int `json:"fetched"`
	// Bytes is the number of bytes downloaded.
	Bytes int64 `json:"bytes"`
	// Duration is the wall time of the warm-up.
	Duration time.Duration `json:"duration"`
}

// CacheHit reports whether every module was already cached.
func (w *Warm) CacheHit() bool { return w != nil && w.Modules > 0 && w.Hits >= w.Modules }

// Latency holds upstream latency percentiles.
type Latency struct {
	P50, P90, P99 time.Duration
}

// Stats are the agent's counters, for the report at the end of the job.
type Stats struct {
	// Requests is the number of requests the agent served.
	Requests int64
	// Bytes is the number of bytes it served.
	Bytes int64
	// ErrorsByLayer counts failed upstream fetches of the whole job (setup
	// included) by Contract layer name.
	ErrorsByLayer map[string]int64
	// Failures counts every failed upstream fetch of the job, setup
	// included.
	Failures int64
	// FailedAfterSetup counts fetches that failed after setup finished:
	// the job then built with an incomplete module cache.
	FailedAfterSetup int
	// Latency is the upstream latency.
	Latency Latency
	// Diagnoses are the agent's latest diagnoses of failed upstreams.
	Diagnoses []string
	// Upstreams are every upstream's circuit state and its retry and
	// resume counters over the job (see UpstreamLine).
	Upstreams []upstream.Health
	// Ended, when set, says the agent had ended before the report step and
	// the figures are its last snapshot (and why).
	Ended string
}

// Outcome is what a setup produced, as the front ends render it.
type Outcome struct {
	// Env is exported to later steps, GOPROXY first.
	Env []EnvVar
	// Secrets must be masked before anything else is printed.
	Secrets []string
	// Upstream is the configured upstream list (no credentials).
	Upstream string
	// StateDir holds the agent's pid, logs and reports.
	StateDir string
	// Addr is the agent's loopback address.
	Addr string
	// Endpoints is the egress allowlist, host:port.
	Endpoints []string
	// Warm is nil when the cache was not warmed.
	Warm *Warm
	// Latency is the upstream latency seen during setup; nil when unknown.
	Latency *Latency
	// Privilege says how the agent runs: its user, where its key is.
	Privilege []string
	// Warnings are shown as warnings (e.g. "running unseparated").
	Warnings []string
	// Err is the setup's error; nil on success.
	Err error
	// Diagnosis is the failure's report; nil when there is none. The
	// renderers show it only for a transport failure (errkind.Unreachable):
	// a local fault or an upstream's answer is never shown as a network
	// layer.
	Diagnosis Diagnosis
	// ReportPath is where the full report was written; empty when none.
	ReportPath string
}

// Lookup returns the value of the exported variable name.
func (o *Outcome) Lookup(name string) (string, bool) {
	for _, v := range o.Env {
		if v.Name == name {
			return v.Value, true
		}
	}
	return "", false
}

// RedactingWriter returns a writer that redacts every Write through red
// before passing it to w (redact.Writer).
func RedactingWriter(w io.Writer, red *Redactor) io.Writer { return redact.Writer(w, red) }
