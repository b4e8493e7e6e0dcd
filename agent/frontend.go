package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/ci"
	"github.com/goproxy-setup/goproxy-setup/agent/diagnose"
	"github.com/goproxy-setup/goproxy-setup/agent/supervisor"
)

// RunFrontEnd is the setup step of a CI front end (the github and gitlab
// commands), written once for every ci.FrontEnd: the front end's rules for
// key material (private 0600 copies, removed once the identity is loaded),
// Setup inside the front end's log block, the run's secrets masked before
// the block ends, the outcome published (environment, outputs, summary,
// reports). A failed setup's error comes back wrapped in ci.ReportedError:
// the front end has shown it in full, so the command does not print it
// again, and its kind still decides the exit code.
//
// cfg.ClientCert and cfg.ClientKey are the step's inputs: paths, or (for
// GitHub) PEM content.
func RunFrontEnd(ctx context.Context, fe ci.FrontEnd, cfg Config) error {
	keys, err := fe.KeyFiles(cfg.ClientCert, cfg.ClientKey)
	if err != nil {
		return err
	}
	defer keys.Close()
	cfg.ClientCert, cfg.ClientKey = keys.Cert, keys.Key
	if keys.Copied && cfg.Logger != nil {
		cfg.Logger.Debug("client key loaded from a private copy", "copy", keys.Key)
	}
	if err := fe.Begin("goproxy-setup: start the agent and warm the module cache"); err != nil {
		return err
	}
	res, serr := Setup(ctx, cfg)
	// The identity is with the agent now: remove the copies at once, and
	// the key's file variable once the agent serves with it.
	cerr := keys.Close()
	if serr == nil {
		cerr = errors.Join(cerr, keys.Handed())
	}
	// Secrets first: the block's end and everything after may show them.
	if res != nil {
		if err := fe.Mask(res.Secrets...); err != nil {
			return err
		}
	}
	if err := fe.End(); err != nil {
		return err
	}
	o := Outcome(res, serr)
	perr := fe.Publish(o)
	return errors.Join(ci.Reported(serr), perr, cerr)
}

// ReportFrontEnd is the report step of a CI front end (`github --report`,
// `gitlab --report`): stop the agent, publish its stats, fail when fetches
// failed after setup. Where the agent is gone before the step (GitLab's
// docker executor runs after_script in a new container), the stats come
// from the snapshot the agent kept in statsFile ("" for none), and the
// report says so. A job whose setup never started an agent gets a note, not
// a second failure.
func ReportFrontEnd(ctx context.Context, fe ci.FrontEnd, stateDir, statsFile string) error {
	if stateDir == "" {
		stateDir = supervisor.DefaultStateDir()
	}
	d, err := supervisor.OpenStateDir(stateDir)
	if err != nil {
		return fmt.Errorf("stop the agent: %w", err)
	}
	s, err := supervisor.Stop(ctx, d)
	d.Close()
	if err == nil {
		return errors.Join(fe.PublishStats(CIStats(s)), removeSnapshot(statsFile))
	}
	var stopErr error
	if none := (*supervisor.NoAgentError)(nil); !errors.As(err, &none) {
		stopErr = fmt.Errorf("stop the agent: %w", err)
	}
	s, written, ok, rerr := readSnapshot(statsFile)
	if rerr != nil || !ok {
		if stopErr != nil {
			return errors.Join(stopErr, rerr)
		}
		return errors.Join(fe.NoAgent(stateDir), rerr)
	}
	cs := CIStats(s)
	cs.Ended = endedNote(written)
	return errors.Join(fe.PublishStats(cs), removeSnapshot(statsFile))
}

// Outcome returns what the CI front ends render of a setup's result and
// error. It is the one conversion between the bootstrap's Result and the
// adapters' view of it.
func Outcome(res *Result, err error) *ci.Outcome {
	o := &ci.Outcome{Err: err}
	if res == nil {
		return o
	}
	o.Env = res.Env
	o.Secrets = res.Secrets
	o.Upstream = res.Upstreams
	o.StateDir = res.StateDir
	o.Addr = res.Addr
	o.Endpoints = res.Endpoints
	for _, l := range res.Privilege {
		if !strings.HasPrefix(l, "warning: ") { // Warnings has it
			o.Privilege = append(o.Privilege, l)
		}
	}
	o.Warnings = res.Warnings
	o.ReportPath = res.ReportPath
	if w := res.Warm; w != nil {
		o.Warm = &ci.Warm{Modules: w.Modules, Hits: w.Hits, Fetched: w.Fetched, Bytes: w.Bytes, Duration: time.Duration(w.Seconds * float64(time.Second))}
	}
	if res.Report != nil {
		o.Diagnosis = diagnosis{res.Report}
	}
	if s := res.Stats; s != nil && s.Requests > 0 {
		l := CIStats(s).Latency
		o.Latency = &l
	}
	return o
}

// CIStats returns the agent's stats as the CI front ends render them.
func CIStats(s *supervisor.Stats) *ci.Stats {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	return &ci.Stats{
		Requests:         s.Requests,
		Bytes:            s.Bytes,
		ErrorsByLayer:    s.ErrorsByLayer,
		Failures:         s.Failures,
		FailedAfterSetup: int(s.FailedAfterSetup),
		Latency:          ci.Latency{P50: ms(s.LatencyP50), P90: ms(s.LatencyP90), P99: ms(s.LatencyP99)},
		Diagnoses:        s.Diagnoses,
		Upstreams:        s.Upstreams,
	}
}

// diagnosis adapts a diagnose.Report to ci.Diagnosis.
type diagnosis struct{ r *diagnose.Report }

func (d diagnosis) Verdict() (string, string)       { return d.r.Verdict.Layer, d.r.Verdict.Summary }
func (d diagnosis) WriteMarkdown(w io.Writer) error { return diagnose.WriteMarkdown(w, d.r) }
func (d diagnosis) WriteText(w io.Writer) error     { return diagnose.WriteText(w, d.r, false) }
func (d diagnosis) WriteAnnotations(w io.Writer) error {
	return diagnose.WriteGitHubAnnotations(w, d.r)
}
func (d diagnosis) WriteJUnit(w io.Writer) error { return diagnose.WriteJUnit(w, d.r) }
