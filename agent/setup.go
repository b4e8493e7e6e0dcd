package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/diagnose"
	"github.com/goproxy-setup/goproxy-setup/agent/proxy"
	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/agent/warm"
	"github.com/goproxy-setup/goproxy-setup/internal/atomicfile"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/policies"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

// Config configures Setup: the Contract's shared flags plus the front
// end's choices.
type Config struct {
	// Upstream is the upstream list in GOPROXY syntax; empty uses the
	// policy's default route.
	Upstream string
	// ClientCert and ClientKey are PEM files; CACert extra roots.
	ClientCert, ClientKey, CACert string
	// Policy is a policy file; empty for the built-in defaults.
	Policy string
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
	// AgentUser and AgentUID override the policy's agent user; AgentDir
	// is the user's private directory (default <StateDir>/private).
	AgentUser string
	AgentUID  int
	AgentDir  string
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
}

// Setup runs the bootstrap: policy, identity, privilege, agent, env, warm,
// report. On an upstream failure it returns a Result with Report and
// ReportPath set and an error marked errkind.Unreachable; the agent keeps
// running so the job can still be diagnosed and stopped.
func Setup(ctx context.Context, cfg Config) (*Result, error) {
	start := time.Now()
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	res := &Result{StateDir: cfg.StateDir}
	if res.StateDir == "" {
		res.StateDir = DefaultStateDir()
	}

	// 1. Policy.
	pol := policies.Default()
	if cfg.Policy != "" {
		p, err := policies.Load(cfg.Policy)
		if err != nil {
			return res, err
		}
		pol = p
	}
	list := cfg.Upstream
	if list == "" {
		list = pol.DefaultRoute.List()
	}
	entries, err := upstream.ParseList(list)
	if err != nil {
		return res, err
	}
	if upstream.GoproxySuffix(entries) != "" && !pol.Direct.Allowed && cfg.Policy != "" {
		return res, errkind.Mark(errkind.BadInput, fmt.Errorf("upstream list %q ends with direct, which policy %s does not allow: remove direct or set direct { allowed = true }", list, cfg.Policy))
	}
	res.Endpoints = pol.Endpoints()
	if cfg.Upstream != "" {
		res.Endpoints = endpoints(entries)
	}
	res.Upstreams = redactList(entries)

	// 2. Identity.
	if err := os.MkdirAll(res.StateDir, 0o700); err != nil {
		return res, errkind.Mark(errkind.BadInput, fmt.Errorf("state dir: %w", err))
	}
	handoff := Handoff{Env: NetworkEnv()}
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
					res.Report, res.ReportPath = diagnoseUpstreams(ctx, res.StateDir, []Entry{{URL: caURL}}, nil, nil, log)
					return res, fmt.Errorf("enrol with step-ca: %w\ndiagnosis: %s (full report: %s)", err, res.Report.Verdict.Summary, res.ReportPath)
				}
			}
			return res, fmt.Errorf("enrol with step-ca: %w", err)
		}
		if id, err = tlsauth.New(cert); err != nil {
			return res, err
		}
		if handoff.CertPEM, handoff.KeyPEM, err = IdentityPEM(cert); err != nil {
			return res, err
		}
	case cfg.ClientCert != "" || cfg.ClientKey != "":
		if cfg.ClientCert == "" || cfg.ClientKey == "" {
			return res, errkind.Mark(errkind.BadInput, errors.New("--client-cert and --client-key go together: give both or neither"))
		}
		if id, err = tlsauth.LoadFiles(cfg.ClientCert, cfg.ClientKey); err != nil {
			return res, err
		}
		if handoff.CertPEM, handoff.KeyPEM, err = IdentityPEM(*id.Certificate()); err != nil {
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
	sep, err := planSeparation(ctx, pol, res.StateDir, cfg.AgentDir, log)
	log.Debug("privilege planned", "mode", sep.report.Mode, "user", sep.user, "elapsed", time.Since(start))
	res.Privilege = sep.report.Lines()
	if w := sep.report.Warning(); w != "" {
		res.Warnings = append(res.Warnings, w)
	}
	if err != nil {
		return res, err
	}
	args := []string{"--upstream", list, "--timeout", cfg.Timeout.String()}
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
	args = append(args, cfg.AgentArgs...)
	st, err := Start(ctx, StartConfig{
		Executable: cfg.Executable,
		Args:       args,
		StateDir:   res.StateDir,
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
	if sfx := upstream.GoproxySuffix(entries); sfx != "" && !strings.HasSuffix(res.Env[0].Value, "direct") {
		res.Env[0].Value += sfx
	}

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
				err = werr
				if errkind.Of(werr) == errkind.Unreachable {
					res.Report, res.ReportPath = diagnoseUpstreams(ctx, res.StateDir, entries, id, roots, log)
					err = fmt.Errorf("%w\ndiagnosis: %s (full report: %s)", werr, res.Report.Verdict.Summary, res.ReportPath)
				}
				markErr := MarkSetupDone(ctx, res.StateDir)
				res.Elapsed = time.Since(start)
				return res, errors.Join(err, markErr)
			}
		}
	}
	res.Elapsed = time.Since(start)
	return res, MarkSetupDone(ctx, res.StateDir)
}

// endpoints returns the host:port of every proxy in entries.
func endpoints(entries []Entry) []string {
	var out []string
	for _, e := range upstream.Proxies(entries) {
		port := e.URL.Port()
		if port == "" {
			port = map[string]string{"https": "443", "http": "80"}[e.URL.Scheme]
		}
		hp := net.JoinHostPort(e.URL.Hostname(), port)
		if !slices.Contains(out, hp) {
			out = append(out, hp)
		}
	}
	return out
}

func defaultGoSums(dir string) []string { return warm.DefaultGoSums(dir) }

func redactList(entries []Entry) string {
	var parts []string
	for i, e := range entries {
		s := e.String()
		if i < len(entries)-1 {
			if e.AnyError {
				s += "|"
			} else {
				s += ","
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "")
}

// Entry is an upstream list element.
type Entry = upstream.Entry

// Diagnose runs the diagnostic ladder against the proxy entries and writes
// the report (text, JSON, Markdown, JUnit) into dir. It returns the report
// and the text report's path.
func Diagnose(ctx context.Context, dir string, entries []Entry, id *tlsauth.Identity, roots *x509.CertPool, log hclog.Logger) (*diagnose.Report, string) {
	return diagnoseUpstreams(ctx, dir, entries, id, roots, log)
}

func diagnoseUpstreams(ctx context.Context, dir string, entries []Entry, id *tlsauth.Identity, roots *x509.CertPool, log hclog.Logger) (*diagnose.Report, string) {
	var targets []diagnose.Target
	for _, e := range upstream.Proxies(entries) {
		t := diagnose.Target{URL: e.URL, Roots: roots}
		if id != nil {
			t.GetClientCertificate = id.GetClientCertificate
			t.ClientLeaf = id.Certificate().Leaf
		}
		targets = append(targets, t)
	}
	r := diagnose.Run(ctx, targets, diagnose.Options{Logger: log.Named("diagnose")})
	path, err := WriteReports(dir, r)
	if err != nil {
		log.Warn("could not write the diagnosis report", "error", err)
	}
	return r, path
}

// WriteReports writes r as report.txt, report.json, report.md and
// report.junit.xml into dir and returns the text report's path.
func WriteReports(dir string, r *diagnose.Report) (string, error) {
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
		errs = append(errs, atomicfile.WriteFile(filepath.Join(dir, f.name), []byte(b.String()), 0o644))
	}
	return filepath.Join(dir, "report.txt"), errors.Join(errs...)
}
