// Package demo owns the hermetic demonstration of the whole flow: a
// throwaway CA, an in-process mTLS module proxy serving generated modules,
// the agent in front of it, `go mod download` and `go build` through the
// agent, a warm into a fresh module cache followed by an offline build, and
// one injected fault (the upstream rejects the client certificate) showing
// the go command's own output carrying the agent's diagnosis. No network
// beyond loopback, no configuration.
package demo

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/proxy"
	"github.com/goproxy-setup/goproxy-setup/agent/server"
	"github.com/goproxy-setup/goproxy-setup/agent/warm"
	"github.com/goproxy-setup/goproxy-setup/internal/modgen"
	"github.com/goproxy-setup/goproxy-setup/internal/pki"
	"github.com/goproxy-setup/goproxy-setup/policies"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"

	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// Options configures Run.
type Options struct {
	// Out receives the step-by-step narration.
	Out io.Writer
	// Dir is the working directory (a temporary one, removed afterwards,
	// when empty).
	Dir string
	// GoBin is the go command (from PATH when empty).
	GoBin string
	// Logger receives the agent's log; nil is silent.
	Logger hclog.Logger
}

// Modules are the generated modules the demo's proxy serves.
var Modules = []modgen.Module{
	{Path: "example.com/hello", Version: "v1.2.0"},
	{Path: "example.com/Upper/case", Version: "v0.3.1"},
	{Path: "example.com/old", Version: "v2.0.0+incompatible"},
	{Path: "example.com/pseudo", Version: "v0.0.0-20260102030405-abcdefabcdef"},
	{Path: "example.com/big/v3", Version: "v3.1.4"},
}

// Run runs the demo. It returns an error when any step does not behave as
// the demo says it should, including the fault not being diagnosed.
func Run(ctx context.Context, opts Options) (err error) {
	out := opts.Out
	if out == nil {
		out = io.Discard
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	gobin := opts.GoBin
	if gobin == "" {
		if gobin, err = exec.LookPath("go"); err != nil {
			return errors.New("demo: the go command is not on PATH: install Go 1.26 or pass its path")
		}
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "goproxy-setup-demo-"); err != nil {
			return err
		}
		defer func() {
			chmodWritable(dir)
			os.RemoveAll(dir)
		}()
	}
	step := 0
	say := func(format string, args ...any) {
		step++
		fmt.Fprintf(out, "\n[%d/7] %s\n", step, fmt.Sprintf(format, args...))
	}

	say("throwaway CA: a root that issues the proxy's server certificate and this job's client certificate")
	ca, err := pki.NewCA("goproxy-setup demo CA")
	if err != nil {
		return err
	}
	serverCert, err := ca.Server()
	if err != nil {
		return err
	}
	clientCert, err := ca.Client("demo-ci-job")
	if err != nil {
		return err
	}
	otherCA, err := pki.NewCA("some other CA")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "      client certificate: CN=%s, issued by %q, valid until %s\n", clientCert.Leaf.Subject.CommonName, clientCert.Leaf.Issuer.CommonName, clientCert.Leaf.NotAfter.UTC().Format(time.RFC3339))

	say("mTLS module proxy on loopback, serving %d generated modules, requiring a client certificate", len(Modules))
	var built []*modgen.Built
	for _, m := range Modules {
		b, err := modgen.Build(m)
		if err != nil {
			return err
		}
		built = append(built, b)
	}
	var rejectOurCA atomic.Bool
	srv := httptest.NewUnstartedServer(modgen.Handler(built))
	srv.TLS = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{serverCert},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			pool := ca.Pool()
			if rejectOurCA.Load() {
				pool = otherCA.Pool()
			}
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{serverCert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    pool,
				NextProtos:   []string{"h2", "http/1.1"},
			}, nil
		},
	}
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug})
	srv.StartTLS()
	defer srv.Close()
	fmt.Fprintf(out, "      upstream: %s (ssl_verify_client on)\n", srv.URL)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root.Raw}), 0o644); err != nil {
		return err
	}
	if err := showGoCannot(ctx, out, gobin, srv.URL, dir, caFile); err != nil {
		return err
	}

	say("agent: loopback GOPROXY forwarder that presents the client certificate upstream")
	id, err := tlsauth.New(clientCert)
	if err != nil {
		return err
	}
	token, err := proxy.NewToken()
	if err != nil {
		return err
	}
	actx, stop := context.WithCancel(ctx)
	defer stop()
	ready := make(chan string, 1)
	served := make(chan error, 1)
	cache := server.NewDiagnosisCache(id, ca.Pool(), log)
	pol, err := policies.Resolve("", srv.URL, true)
	if err != nil {
		return err
	}
	go func() {
		served <- server.Serve(actx, server.ServeConfig{
			Policy:   pol,
			Identity: id,
			Roots:    ca.Pool(),
			Timeout:  10 * time.Second,
			Token:    token,
			Classify: server.ClassifierWith(id, cache),
			Diagnose: cache.Brief,
			Ready:    func(base string) { ready <- base },
			Logger:   log,
		})
	}()
	var base string
	select {
	case base = <-ready:
	case err := <-served:
		return fmt.Errorf("demo: agent did not start: %w", err)
	}
	fmt.Fprintf(out, "      GOPROXY=%s/<capability token> (the token and the peer-uid check keep other local users out; goproxy-setup never logs the token, though cmd/go prints it in its own errors)\n", strings.TrimSuffix(base, "/"+token))

	consumer := filepath.Join(dir, "consumer")
	if err := os.MkdirAll(consumer, 0o755); err != nil {
		return err
	}
	if err := modgen.WriteConsumer(consumer, built); err != nil {
		return err
	}
	say("go mod download && go build, through the agent")
	env := goEnv(dir, filepath.Join(dir, "modcache-1"), base)
	for _, args := range [][]string{{"mod", "download", "-x"}, {"build", "-o", filepath.Join(dir, "consumer-bin"), "."}} {
		o, err := goCmd(ctx, gobin, consumer, env, args...)
		fmt.Fprintf(out, "      $ go %s\n%s", strings.Join(args, " "), indent(filterGet(o)))
		if err != nil {
			return fmt.Errorf("demo: go %s through the agent failed: %w", args[0], err)
		}
	}
	o, err := exec.CommandContext(ctx, filepath.Join(dir, "consumer-bin")).Output()
	if err != nil {
		return fmt.Errorf("demo: run the built program: %w", err)
	}
	first, _, _ := bytes.Cut(o, []byte("\n"))
	fmt.Fprintf(out, "      built program prints: %s\n", first)

	say("warm a fresh module cache from go.sum (verified against every h1: hash), then build offline")
	mc2 := filepath.Join(dir, "modcache-2")
	sum, err := warm.Run(ctx, warm.Options{
		Source:     warm.HTTPSource{BaseURL: base},
		GoSumFiles: []string{filepath.Join(consumer, "go.sum")},
		ModCache:   mc2,
		Extract:    true,
	})
	if err != nil {
		return fmt.Errorf("demo: warm: %w", err)
	}
	fmt.Fprintf(out, "      warmed %d modules (%d bytes) in %s\n", sum.Modules, sum.Bytes, time.Duration(sum.Seconds*float64(time.Second)).Round(time.Millisecond))
	offline := goEnv(dir, mc2, "off")
	if o, err := goCmd(ctx, gobin, consumer, offline, "build", "-o", os.DevNull, "."); err != nil {
		return fmt.Errorf("demo: GOPROXY=off go build on the warmed cache failed: %w\n%s", err, o)
	}
	fmt.Fprintf(out, "      $ GOPROXY=off go build .   → ok, no network needed\n")

	say("fault: the upstream now rejects our client certificate (it trusts another CA)")
	rejectOurCA.Store(true)
	srv.CloseClientConnections()
	// The first failure starts the background diagnosis; wait for its
	// verdict so the go command's output below carries it too.
	goCmd(ctx, gobin, consumer, goEnv(dir, filepath.Join(dir, "modcache-x"), base), "mod", "download")
	upURL, _ := url.Parse(srv.URL)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, _, ok := cache.Verdict(redact.URL(upURL)); ok {
			break
		}
	}
	o2, err := goCmd(ctx, gobin, consumer, goEnv(dir, filepath.Join(dir, "modcache-3"), base), "mod", "download")
	// cmd/go prints the GOPROXY URL, token included, in its own errors; the
	// demo shows it as step 3 did (the job's logs are masked on GitHub, and
	// the agent serves only the job's user whoever holds the token).
	fmt.Fprintf(out, "      $ go mod download\n%s", indent(strings.ReplaceAll(o2, token, "<capability token>")))
	if err == nil {
		return errors.New("demo: go mod download succeeded although the upstream rejects the certificate")
	}
	if !strings.Contains(o2, "client-cert") {
		return errors.New("demo: the go command's output does not name the client-cert layer")
	}

	say("done: the go command's own error output named the failing layer and the fix")
	stop()
	<-served
	return nil
}

// showGoCannot shows that cmd/go alone cannot use the mTLS proxy.
func showGoCannot(ctx context.Context, out io.Writer, gobin, upstreamURL, dir, caFile string) error {
	tmp := filepath.Join(dir, "nocert")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(tmp, "go.mod"), []byte("module example.com/x\n\ngo 1.21\n"), 0o644)
	env := append(goEnv(dir, filepath.Join(dir, "modcache-0"), upstreamURL), "SSL_CERT_FILE="+caFile)
	o, err := goCmd(ctx, gobin, tmp, env, "mod", "download", "example.com/hello@v1.2.0")
	if err == nil {
		return errors.New("demo: go reached the mTLS proxy without a client certificate")
	}
	fmt.Fprintf(out, "      without the agent, cmd/go cannot present a client certificate (golang/go#30119):\n%s", indent(firstLines(o, 2)))
	return nil
}

func goEnv(dir, modcache, goproxy string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + filepath.Join(dir, "home"),
		"GOPROXY=" + goproxy,
		"GOMODCACHE=" + modcache,
		"GOSUMDB=off", // generated modules are in no public checksum database
		"GOFLAGS=-mod=mod",
		"GOTOOLCHAIN=local",
		"GOENV=off",
		"CGO_ENABLED=0",
	}
	if c := os.Getenv("GOCACHE"); c != "" {
		env = append(env, "GOCACHE="+c)
	} else if c, err := os.UserCacheDir(); err == nil {
		env = append(env, "GOCACHE="+filepath.Join(c, "go-build"))
	}
	return env
}

func goCmd(ctx context.Context, gobin, dir string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, gobin, args...)
	cmd.Dir, cmd.Env = dir, env
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}

func filterGet(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "# get ") && strings.Contains(l, ": 200 OK") {
			if i := strings.Index(l, "/@v/"); i >= 0 {
				l = "# get …" + l[strings.LastIndex(l[:i], "/"):]
			}
			keep = append(keep, l)
		} else if l != "" && !strings.HasPrefix(l, "# get ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n") + "\n"
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n") + "\n"
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "        " + strings.ReplaceAll(s, "\n", "\n        ") + "\n"
}

// chmodWritable undoes cmd/go's read-only module cache so it can be removed.
func chmodWritable(dir string) {
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
}
