package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/goproxy-setup/goproxy-setup/agent/privilege"
	"github.com/goproxy-setup/goproxy-setup/agent/proxy"
	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/agent/wire"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/policies"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

// ProcessConfig configures Run: the flags of 'goproxy-setup agent'.
type ProcessConfig struct {
	// PolicyFile is the policy (HCL; built-in defaults when empty);
	// Upstream, when UpstreamSet, replaces its default route
	// (policies.Resolve). With a handoff the list travels in the handoff
	// instead, and UpstreamSet is bad input.
	PolicyFile  string
	Upstream    string
	UpstreamSet bool
	// ClientCert and ClientKey are the identity's PEM files when there is
	// no handoff; CACert extra roots (always from the file).
	ClientCert, ClientKey, CACert string
	// Timeout is the per-fetch timeout; Listen the loopback address.
	Timeout time.Duration
	Listen  string
	// Handoff, when set, is read for the handoff (privilege.Secrets: the
	// token, identity, upstream list, network settings and job uid) as the
	// supervisor writes it on the agent's stdin. Without it the agent
	// serves the user who started it, in the foreground.
	Handoff io.Reader
	// ReadyFD, when > 0, is the descriptor the readiness line goes to
	// (wire.ReadyLine, or wire.FailLine when the agent fails before
	// serving); it is then pointed at stderr. Without it the GOPROXY line
	// is printed on Stdout.
	ReadyFD int
	Stdout  io.Writer
	// RunAs is the user to drop to after binding (needs root); PrivateDir
	// that user's private directory for its key copy.
	RunAs, PrivateDir string
	// Sidecar runs the agent in a pod container of its own, serving the
	// job container's uid JobUID alone (ServeConfig.Sidecar): no handoff,
	// no privilege (it refuses to run as root), the identity from a
	// Kubernetes Secret's files (tlsauth.LoadSecretVolume), a fixed Listen
	// port the job container knows, and the token never printed (the
	// job gets its GOPROXY from wire.SidecarEnvPath).
	Sidecar bool
	JobUID  int
	// StateDir, for a sidecar, keeps its capability token (SidecarToken),
	// so that a restarted sidecar serves the job's GOPROXY unchanged.
	StateDir string
	// RenewCAURL and RenewCAFingerprint name the step-ca that renews the
	// client certificate while the agent runs ("" for none).
	RenewCAURL, RenewCAFingerprint string
	// Limits cap the connections local peers can hold.
	Limits ConnLimits
	// StatsFile, when set, is kept holding a secret-free snapshot of the
	// stats, for a report step where the agent is gone (ServeConfig).
	StatsFile string
	// Logger receives the agent's log; nil is silent.
	Logger hclog.Logger
}

// Run is the agent process: it loads the policy and identity (from the
// handoff when the supervisor started it), serves until ctx is done, and
// tells the supervisor on ReadyFD that it serves, or with which kind of
// failure it stopped before serving.
func Run(ctx context.Context, cfg ProcessConfig) (err error) {
	ready := false
	if cfg.ReadyFD > 0 {
		// A failure before serving is told to the bootstrap with its kind,
		// so that it exits with the right code instead of guessing.
		defer func() {
			if err != nil && !ready {
				f := os.NewFile(uintptr(cfg.ReadyFD), "ready")
				io.WriteString(f, wire.FailLine(errkind.Of(err)))
			}
		}()
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if cfg.Sidecar {
		if err := checkSidecar(cfg); err != nil {
			return err
		}
	}
	pol, err := policies.Resolve(cfg.PolicyFile, cfg.Upstream, cfg.UpstreamSet)
	if err != nil {
		return err
	}
	// The identity comes from the handoff when the bootstrap started us,
	// else from the files; the extra roots always from CACert.
	var roots *x509.CertPool
	if cfg.CACert != "" {
		if roots, err = tlsauth.LoadRoots(cfg.CACert); err != nil {
			return err
		}
	}
	var id *tlsauth.Identity
	// Without a handoff the agent runs in the foreground for the user who
	// started it: that user (and root) is served.
	h := privilege.Secrets{JobUID: os.Getuid()}
	if cfg.Handoff != nil {
		if cfg.UpstreamSet {
			return errkind.Mark(errkind.BadInput, errors.New("--upstream with --handoff-stdin: the upstream list travels in the handoff (it may hold a password, and ps shows the command line to every user)"))
		}
		if h, err = privilege.ReadSecrets(cfg.Handoff); err != nil {
			return err
		}
		// The one path from policy to routes: the handed-off list replaces
		// the default route, as --upstream does (Setup refused an empty one).
		if h.Upstream != "" {
			if err := pol.WithUpstreamList(h.Upstream); err != nil {
				return err
			}
		}
		if err := h.ApplyEnv(); err != nil {
			return err
		}
		if len(h.CertPEM) > 0 {
			if id, err = tlsauth.LoadPEM(h.CertPEM, h.KeyPEM); err != nil {
				return err
			}
		}
	} else if cfg.Sidecar {
		h.JobUID = cfg.JobUID
		if id, err = tlsauth.LoadSecretVolumePair(cfg.ClientCert, cfg.ClientKey); err != nil {
			return err
		}
	} else if id, err = tlsauth.LoadPair(cfg.ClientCert, cfg.ClientKey); err != nil {
		return err
	}
	defer h.Zero()
	if cfg.Sidecar && cfg.StateDir != "" {
		if h.Token, err = SidecarToken(cfg.StateDir); err != nil {
			return err
		}
	}
	if h.Token == "" {
		if h.Token, err = proxy.NewToken(); err != nil {
			return err
		}
	}
	if cfg.RenewCAURL != "" && id != nil {
		r, err := tlsauth.NewRenewer(id, tlsauth.RenewConfig{CAURL: cfg.RenewCAURL, Fingerprint: cfg.RenewCAFingerprint, Logger: log.Named("renew")})
		if err != nil {
			return err
		}
		go r.Run(ctx)
	}
	var urls []*url.URL
	for _, e := range upstream.RouteEntries(pol.DefaultRoute, false) {
		urls = append(urls, e.URL)
	}
	cache := NewDiagnosisCache(id, roots, log, urls...)
	token := h.Token
	if cfg.RunAs != "" && cfg.PrivateDir != "" {
		// The key copies do not outlive the agent: removed when it stops
		// (as the agent user, who owns them); 'stop' and the next 'run'
		// remove what a crash leaves.
		defer func() {
			if rerr := privilege.ReleaseCustody(cfg.PrivateDir); rerr != nil {
				log.Warn("could not remove the key copies", "error", rerr)
			}
		}()
	}
	return Serve(ctx, ServeConfig{
		Policy:    pol,
		Identity:  id,
		Roots:     roots,
		Timeout:   cfg.Timeout,
		Listen:    cfg.Listen,
		Token:     token,
		Nonce:     h.Nonce,
		PeerCheck: h.JobUID >= 0,
		JobUID:    h.JobUID,
		Sidecar:   cfg.Sidecar,
		Limits:    cfg.Limits,
		Classify:  ClassifierWith(id, cache),
		Diagnose:  cache.Brief,
		Diagnoses: cache.Briefs,
		StatsFile: cfg.StatsFile,
		AfterListen: func() error {
			if cfg.RunAs == "" {
				return nil
			}
			return DropTo(ctx, cfg.RunAs, cfg.PrivateDir, &h)
		},
		Ready: func(base string) {
			ready = true
			if cfg.ReadyFD > 0 {
				f := os.NewFile(uintptr(cfg.ReadyFD), "ready")
				io.WriteString(f, wire.ReadyLine(base[len("http://"):len(base)-len(token)-1]))
				// Point the descriptor at stderr (the log) so the
				// bootstrap's pipe closes and later writes go to the log.
				unix.Dup2(2, cfg.ReadyFD)
				return
			}
			switch {
			case cfg.Stdout == nil:
			case cfg.Sidecar:
				// A sidecar's output is the pod's log, which more people
				// read than may use the agent: no token in it.
				addr := strings.TrimPrefix(base[:len(base)-len(token)-1], "http://")
				fmt.Fprintf(cfg.Stdout, "goproxy-setup sidecar: serving uid %d on %s; the job container gets its GOPROXY from http://%s%s\n", h.JobUID, addr, addr, wire.SidecarEnvPath)
			default:
				fmt.Fprintf(cfg.Stdout, "GOPROXY=%s\n", base)
			}
		},
		Logger: log,
	})
}
