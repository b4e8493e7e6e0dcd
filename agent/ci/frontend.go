package ci

import (
	"fmt"
	"strings"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// FrontEnd is one CI system's side of a job: GitHub Actions and GitLab CI
// implement it, and the bootstrap's CI flow (agent.RunFrontEnd and
// agent.ReportFrontEnd) is written once against it. A front end owns how
// things are said in its CI (masks, log groups or sections, file commands,
// dotenv, JUnit, job summary) and its CI's rules for key material; it never
// starts anything itself.
type FrontEnd interface {
	// Redactor is the front end's redactor: every secret masked so far.
	Redactor() *Redactor
	// Mask registers secrets before anything could print them.
	Mask(secrets ...string) error
	// KeyFiles returns the client certificate and key files to load, given
	// the step's inputs (each a path, or for GitHub PEM content): a
	// front end writes private 0600 copies where its CI hands key material
	// over in a form the custody check refuses (GitHub: PEM content in an
	// input; GitLab: a "file" variable written under the runner's umask).
	// Close the result once the identity is loaded.
	KeyFiles(cert, key string) (*KeyFiles, error)
	// Begin opens the collapsible log block of the setup; End closes it.
	Begin(title string) error
	// End closes the log block Begin opened.
	End() error
	// Publish reports a setup to the job. The returned error is about
	// publishing; the setup's own error stays in o.Err.
	Publish(o *Outcome) error
	// PublishStats reports the agent's final stats at the end of the job;
	// it returns an error marked Unreachable when fetches failed after
	// setup, so the job fails.
	PublishStats(s *Stats) error
	// NoAgent says that the report step found no agent in stateDir, which
	// happens when the setup failed before starting one.
	NoAgent(stateDir string) error
}

var (
	_ FrontEnd = (*GitHub)(nil)
	_ FrontEnd = (*GitLab)(nil)
)

// ReportedError is a setup error that a front end has already shown in
// full (log, annotation, summary, report). Its message is one line pointing
// there, so the command does not print the error a second time; Unwrap
// keeps the kind for the exit code.
type ReportedError struct{ Err error }

func (e *ReportedError) Error() string {
	k := errkind.Of(e.Err)
	return fmt.Sprintf("setup failed (%s, exit %d): the error and its report are above", describe(k).name, k.ExitCode())
}

// Unwrap returns the setup's error.
func (e *ReportedError) Unwrap() error { return e.Err }

// Reported wraps a setup error that a front end has shown; nil stays nil.
func Reported(err error) error {
	if err == nil {
		return nil
	}
	return &ReportedError{Err: err}
}

// kindText is how the renderers name a kind of failure (docs/architecture.md, the
// failure model): a short name, the headline that says where the fault is,
// and the GOPROXY_SETUP_FAILURE value of the dotenv artifact.
type kindText struct {
	name, headline, slug string
}

func describe(k errkind.Kind) kindText {
	switch k {
	case errkind.Local:
		return kindText{"local fault", "a fault on this machine (module cache, disk, permissions or environment), not the upstream", "local"}
	case errkind.Answered:
		return kindText{"upstream answered", "the upstream answered with an error status: it is reachable, and its answer is below", "answered"}
	case errkind.Unreachable:
		return kindText{"upstream unreachable", "the upstream could not be reached, timed out or refused the request", "unreachable"}
	case errkind.Integrity:
		return kindText{"integrity failure", "a module did not match its go.sum hash: nothing was written for it", "integrity"}
	case errkind.BadInput:
		return kindText{"bad input", "an input of the step must be fixed", "bad-input"}
	case errkind.Canceled:
		return kindText{"canceled", "the setup was cancelled before it finished: not an upstream failure", "canceled"}
	}
	return kindText{"setup failed", "the setup failed", "other"}
}

// failure is how every renderer shows a failed setup: its kind and, for a
// transport failure only, the diagnostic ladder's verdict. A local fault, an
// answer from the upstream or bad input is never shown as a network layer.
type failure struct {
	kindText
	kind errkind.Kind
	// ladder is set for a transport failure that has a diagnosis.
	ladder bool
	// layer and summary are the ladder's verdict; layer is empty when the
	// ladder found every layer working.
	layer, summary string
	// inWarm says the agent was serving, so the failure came while warming.
	inWarm bool
}

func (o *Outcome) failure() failure {
	k := errkind.Of(o.Err)
	f := failure{kindText: describe(k), kind: k, inWarm: o.Addr != ""}
	if k == errkind.Unreachable && o.Diagnosis != nil {
		f.ladder = true
		f.layer, f.summary = o.Diagnosis.Verdict()
		f.layer = strings.TrimSpace(f.layer)
		f.summary = oneLine(f.summary)
	}
	return f
}

// verdictLine is the one line a log shows for a ladder's verdict.
func (f failure) verdictLine() string {
	if f.layer == "" {
		return "diagnosis: no layer failed (" + f.summary + "); the upstream failed while warming, see the full report"
	}
	return "failing layer: " + f.layer + ": " + f.summary
}
