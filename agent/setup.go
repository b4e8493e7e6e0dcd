// Package agent owns the bootstrap: the ordered steps that give a CI job
// its module proxy — policy, identity, custody and least privilege, the
// detached loopback agent, the exported environment, warming the module
// cache, and the diagnosis and its reports — and the CI front ends' setup
// and report steps around it (frontend.go). It only orchestrates: the
// agent process is started, asked and stopped by agent/supervisor, and the
// work is done by the packages below (warm, diagnose, privilege, tlsauth,
// policies).
package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/diagnose"
	"github.com/goproxy-setup/goproxy-setup/agent/privilege"
	"github.com/goproxy-setup/goproxy-setup/agent/proxy"
	"github.com/goproxy-setup/goproxy-setup/agent/supervisor"
	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/agent/warm"
	"github.com/goproxy-setup/goproxy-setup/agent/wire"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/redact"
	"github.com/goproxy-setup/goproxy-setup/policies"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

// EnvVar is one variable exported to the job.
type EnvVar = policies.EnvVar

// Config configures Setup: the Contract's shared flags plus the front
// end's choices.
type Config struct {
	// Upstream is the --upstream list (policies.Policy.WithUpstreamList
	// gives the syntax); it replaces the policy's default route when
	// UpstreamSet, and an empty one is then bad input.
	Upstream    string
	UpstreamSet bool
	// ClientCert and ClientKey are PEM files; CACert extra roots.
	ClientCert, ClientKey, CACert string
	// Policy is a policy file; empty for the built-in defaults.
	Policy string
	// Dir, when set, is the state dir the caller opened (and closes): a
	// front end that stops the agent after a failed setup uses the same
	// handle. Otherwise Setup opens StateDir.
	Dir *supervisor.StateDir
	// StateDir holds agent.json, the log and reports (DefaultStateDir when
	// empty).
	StateDir string
	// Timeout is the per-fetch timeout.
	Timeout time.Duration
	// Enroll, when set, obtains the client certificate from a step-ca
	// instead of ClientCert/ClientKey.
	Enroll *tlsauth.EnrollConfig
	// Warm warms GOMODCACHE from GoSums (default ./go.sum and ./go.work.sum
	// in WorkDir when empty and present).
	Warm        bool
	GoSums      []string
	Concurrency int
	WorkDir     string
	// Executable is the binary started as the agent (os.Executable).
	Executable string
	// AgentArgs are extra flags for the agent process (log level…).
	AgentArgs []string
	// JobUser is the user (name or uid) whose steps use the agent: with
	// the peer check the agent serves only it and root. Empty: the user
	// running Setup.
	JobUser string
	// AgentUser and AgentUID override the policy's agent user; AgentDir
	// is the user's private directory (default <StateDir>/private).
	AgentUser string
	AgentUID  int
	AgentDir  string
	// StatsFile, when set, is where the agent keeps a secret-free snapshot
	// of its stats, for a report step that runs where the agent is gone
	// (ReportFrontEnd); its directory is made the agent's.
	StatsFile string
	// Logger receives the bootstrap's log; nil is silent.
	Logger hclog.Logger
	// Progress receives warm progress; nil for none.
	Progress io.Writer
}

// Result is what Setup did, for the front ends to export and report.
type Result struct {
	// Env is the environment to export, GOPROXY first.
	Env []EnvVar
	// Secrets are values the front end must mask: the capability URL and
	// token, enrolment tokens.
	Secrets  []string
	StateDir string
	PID      int
	Addr     string
	// Warm is the warm summary, nil when not warmed.
	Warm *warm.Summary
	// Warnings are things the job should know (e.g. running unseparated).
	Warnings []string
	// Privilege says how the agent runs (user, custody), for the summary.
	Privilege []string
	// Report is the diagnosis of an upstream failure, nil when none.
	Report *diagnose.Report
	// ReportPath is the text report's file, when Report is set.
	ReportPath string
	// Endpoints are the host:port the job's egress allowlist needs.
	Endpoints []string
	// Upstreams are the default route's upstreams, redacted.
	Upstreams string
	// Elapsed is how long setup took.
	Elapsed time.Duration
	// Stats are the agent's statistics when setup succeeded.
	Stats *supervisor.Stats
}

// Setup runs the bootstrap: policy, identity, privilege, agent, env, warm,
// report. When the warm fails, the error is marked with the failure's
// kind (docs/architecture.md, the failure model): a transport failure
// (errkind.Unreachable) runs the diagnostic ladder and sets Report and
// ReportPath; a local fault (errkind.Local: module cache, disk,
// permissions), an error status the upstream answered (errkind.Answered)
// and a cancelled run start no diagnosis. The agent keeps running (PID is
// set) so that a front end can still report and stop it; one that exports
// no environment on failure must stop it (see Stop).
func Setup(ctx context.Context, cfg Config) (*Result, error) {
	start := time.Now()
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	res := &Result{StateDir: cfg.StateDir}
	if res.StateDir == "" {
		res.StateDir = supervisor.DefaultStateDir()
	}

	// 1. Policy: the one path from policy to routes to the exported
	// GOPROXY (policies.Resolve), the same in the agent process.
	pol, err := policies.Resolve(cfg.Policy, cfg.Upstream, cfg.UpstreamSet)
	if err != nil {
		return res, err
	}
	entries := upstream.RouteEntries(pol.DefaultRoute, false)
	if err := checkGoEnv(); err != nil {
		return res, err
	}
	res.Endpoints = pol.Endpoints()
	res.Upstreams = redact.List(pol.DefaultRoute.List())

	// 2. Identity.
	// The state dir is opened once, checked, and used through that
	// handle by every step.
	d := cfg.Dir
	if d == nil {
		if d, err = supervisor.OpenStateDir(res.StateDir); err != nil {
			return res, err
		}
		defer d.Close()
	}
	jobUID, err := resolveJobUser(cfg.JobUser)
	if err != nil {
		return res, err
	}
	// The upstream list may hold a password: it travels in the handoff,
	// never on the agent's command line.
	handoff := privilege.Secrets{Env: privilege.NetworkEnv(), Upstream: cfg.Upstream, JobUID: jobUID}
	if handoff.Token, err = proxy.NewToken(); err != nil {
		return res, err
	}
	var id *tlsauth.Identity
	switch {
	case cfg.Enroll != nil:
		log.Debug("enrolling with step-ca", "ca", cfg.Enroll.CAURL)
		cert, err := tlsauth.Enroll(ctx, *cfg.Enroll)
		if err != nil {
			if errkind.Of(err) == errkind.Unreachable {
				if caURL, perr := url.Parse(cfg.Enroll.CAURL); perr == nil {
					res.Report, res.ReportPath = Diagnose(ctx, d, Targets([]Entry{{URL: caURL}}, nil, nil), log)
					return res, fmt.Errorf("enrol with step-ca: %w\ndiagnosis: %s (full report: %s)", err, res.Report.Verdict.Summary, res.ReportPath)
				}
			}
			return res, fmt.Errorf("enrol with step-ca: %w", err)
		}
		if id, err = tlsauth.New(cert); err != nil {
			return res, err
		}
		if handoff.CertPEM, handoff.KeyPEM, err = tlsauth.IdentityPEM(cert); err != nil {
			return res, err
		}
	case cfg.ClientCert != "" || cfg.ClientKey != "":
		if id, err = tlsauth.LoadPair(cfg.ClientCert, cfg.ClientKey); err != nil {
			return res, err
		}
		if handoff.CertPEM, handoff.KeyPEM, err = tlsauth.IdentityPEM(*id.Certificate()); err != nil {
			return res, err
		}
	}
	var roots *x509.CertPool
	if cfg.CACert != "" {
		if roots, err = tlsauth.LoadRoots(cfg.CACert); err != nil {
			return res, err
		}
	}
	log.Debug("identity ready", "elapsed", time.Since(start))
	res.Secrets = append(res.Secrets, handoff.Token)
	if cfg.Enroll != nil && cfg.Enroll.Token != "" {
		res.Secrets = append(res.Secrets, cfg.Enroll.Token)
	}

	// 3 + 4. Least privilege and the agent.
	if cfg.AgentUser != "" {
		pol.Privilege.User = cfg.AgentUser
	}
	if cfg.AgentUID != 0 {
		pol.Privilege.UID = cfg.AgentUID
	}
	sep, err := planSeparation(ctx, pol, d, cfg.AgentDir, log)
	log.Debug("privilege planned", "mode", sep.report.Mode, "user", sep.user, "elapsed", time.Since(start))
	sep.report.JobRoot = jobUID == 0
	res.Privilege = sep.report.Lines()
	if w := sep.report.Warning(); w != "" {
		res.Warnings = append(res.Warnings, w)
	}
	if err != nil {
		return res, err
	}
	args := []string{"--timeout", cfg.Timeout.String()}
	if sep.privateDir != "" {
		args = append(args, "--private-dir", sep.privateDir)
	}
	if cfg.Enroll != nil {
		// The agent renews the certificate over mTLS while the job runs;
		// the CA's URL and pin are not secrets.
		args = append(args, "--renew-ca-url", cfg.Enroll.CAURL, "--renew-ca-fingerprint", cfg.Enroll.Fingerprint)
	}
	if cfg.Policy != "" {
		abs, _ := filepath.Abs(cfg.Policy)
		args = append(args, "--policy", abs)
	}
	if cfg.CACert != "" {
		abs, _ := filepath.Abs(cfg.CACert)
		args = append(args, "--ca-cert", abs)
	}
	statsFile := ""
	if cfg.StatsFile != "" {
		abs, _ := filepath.Abs(cfg.StatsFile)
		ok, err := prepareStatsDir(filepath.Dir(abs), sep)
		switch {
		case err != nil:
			// Not fatal: only a report where the agent is gone needs it.
			res.Warnings = append(res.Warnings, fmt.Sprintf("no stats snapshot for a report step where the agent is gone (%v): choose a writable --stats-file", err))
		case ok:
			statsFile = abs
			args = append(args, "--"+wire.StatsFileFlag, abs)
		}
	}
	args = append(args, cfg.AgentArgs...)
	st, err := supervisor.Start(ctx, d, supervisor.StartConfig{
		Executable: cfg.Executable,
		Args:       args,
		Handoff:    handoff,
		RunAs:      sep.user,
		Sudo:       sep.sudo,
		Logger:     log,
	})
	if err != nil {
		return res, err
	}
	res.PID, res.Addr = st.PID, st.Addr
	res.Secrets = append(res.Secrets, st.BaseURL)
	log.Info("agent serving", "addr", st.Addr, "pid", st.PID, "user", sep.user, "upstreams", res.Upstreams)

	// 5. Environment.
	res.Env = pol.GoEnv(st.BaseURL)

	// 6. Warm.
	if cfg.Warm {
		files := cfg.GoSums
		if len(files) == 0 {
			files = defaultGoSums(cfg.WorkDir)
		}
		if len(files) > 0 {
			sum, werr := warm.Run(ctx, warm.Options{
				Source:      warm.HTTPSource{BaseURL: st.BaseURL},
				GoSumFiles:  files,
				Concurrency: cfg.Concurrency,
				Extract:     pol.Warm.Extract,
				Logger:      log.Named("warm"),
				Progress:    cfg.Progress,
				Skip: func(mod string) (string, bool) {
					if reason, denied := pol.Denied(mod); denied {
						return "denied by policy: " + reason, true
					}
					return "", false
				},
			})
			res.Warm = sum
			if werr != nil {
				// The warm's one kind and its text (with the fix) are
				// the warm's. Only a transport failure runs the ladder: a
				// local fault, an upstream's answer or a cancelled run is
				// not the network's, and a diagnosis saying "all checks
				// ok" would send the user to the wrong system.
				kind := errkind.Of(werr)
				err = werr
				if kind == errkind.Unreachable {
					res.Report, res.ReportPath = Diagnose(ctx, d, Targets(entries, id, roots), log)
					err = errkind.Mark(kind, fmt.Errorf("%w\ndiagnosis: %s (full report: %s)", werr, res.Report.Verdict.Summary, res.ReportPath))
				}
				if ctx.Err() == nil {
					if _, merr := supervisor.MarkSetupDone(ctx, d); merr != nil {
						log.Debug("could not record the failure count", "error", merr)
					} else if statsFile != "" {
						if merr := markSetupDone(statsFile, d); merr != nil {
							log.Debug("could not record the failure count beside the stats snapshot", "error", merr)
						}
					}
				}
				res.Elapsed = time.Since(start)
				return res, err
			}
		}
	}
	res.Stats, err = supervisor.MarkSetupDone(ctx, d)
	res.Elapsed = time.Since(start)
	if err == nil && statsFile != "" {
		err = markSetupDone(statsFile, d)
	}
	return res, err
}

// resolveJobUser returns the uid of the job's user: name is a user name or
// a numeric uid; empty is the user running this process.
func resolveJobUser(name string) (int, error) {
	if name == "" {
		return os.Getuid(), nil
	}
	if uid, err := strconv.Atoi(name); err == nil && uid >= 0 {
		return uid, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return -1, errkind.Mark(errkind.BadInput, fmt.Errorf("--job-user %q: %w (give an existing user name or a uid)", name, err))
	}
	return strconv.Atoi(u.Uid)
}

func defaultGoSums(dir string) []string { return warm.DefaultGoSums(dir) }

// Entry is an upstream list element.
type Entry = upstream.Entry

// Targets are the diagnosis's targets for the proxies among entries: each
// with the client identity (nil for none) and extra roots.
func Targets(entries []Entry, id *tlsauth.Identity, roots *x509.CertPool) []diagnose.Target {
	var targets []diagnose.Target
	for _, e := range upstream.Proxies(entries) {
		t := diagnose.Target{URL: e.URL, Roots: roots}
		if id != nil {
			t.GetClientCertificate = id.GetClientCertificate
			t.ClientLeaf = id.Certificate().Leaf
		}
		targets = append(targets, t)
	}
	return targets
}

// Diagnose runs the diagnostic ladder against targets and writes the
// report into the state dir (WriteReports). It returns the report and the
// text report's path; a report that could not be written is logged, and
// its path is then "".
func Diagnose(ctx context.Context, d *supervisor.StateDir, targets []diagnose.Target, log hclog.Logger) (*diagnose.Report, string) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	r := diagnose.Run(ctx, targets, diagnose.Options{Logger: log.Named("diagnose")})
	path, err := WriteReports(d, r)
	if err != nil {
		log.Warn("could not write the diagnosis report", "error", err)
		path = ""
	}
	return r, path
}

// WriteReports writes r as report.txt, report.json, report.md and
// report.junit.xml into the state dir, through its handle, and returns the
// text report's path.
func WriteReports(d *supervisor.StateDir, r *diagnose.Report) (string, error) {
	var errs []error
	for _, f := range []struct {
		name  string
		write func(io.Writer, *diagnose.Report) error
	}{
		{"report.txt", func(w io.Writer, r *diagnose.Report) error { return diagnose.WriteText(w, r, false) }},
		{"report.json", diagnose.WriteJSON},
		{"report.md", diagnose.WriteMarkdown},
		{"report.junit.xml", diagnose.WriteJUnit},
	} {
		var b strings.Builder
		if err := f.write(&b, r); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, d.WriteFile(f.name, []byte(b.String()), 0o644))
	}
	return d.File("report.txt"), errors.Join(errs...)
}

// checkGoEnv refuses a Go environment that cmd/go would refuse later in the
// job, before anything starts: a relative GOMODCACHE or GOPATH entry.
func checkGoEnv() error {
	if v := os.Getenv("GOMODCACHE"); v != "" && !filepath.IsAbs(v) {
		return errkind.Mark(errkind.BadInput, fmt.Errorf("GOMODCACHE=%q is a relative path, which the go command refuses: set it to an absolute path (e.g. GOMODCACHE=\"$PWD/%s\")", v, v))
	}
	for _, p := range filepath.SplitList(os.Getenv("GOPATH")) {
		if p != "" && !filepath.IsAbs(p) {
			return errkind.Mark(errkind.BadInput, fmt.Errorf("GOPATH entry %q is a relative path, which the go command refuses: make every GOPATH entry absolute", p))
		}
	}
	return nil
}
