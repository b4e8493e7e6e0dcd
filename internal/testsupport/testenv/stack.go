package testenv

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Stack is a real mTLS Go module proxy on loopback: nginx, configured from
// examples/nginx-mtls/nginx.conf.template (ssl_verify_client on), in front
// of the real goproxy server, which serves the test's modules from a
// GOPROXY directory. Everything stops when the test ends.
type Stack struct {
	// URL is nginx's address, "https://127.0.0.1:PORT": the mTLS upstream.
	URL string
	// Origin is the goproxy server behind nginx, plain HTTP and no client
	// certificate: "http://127.0.0.1:PORT".
	Origin string
	// OriginDir is the GOPROXY directory goproxy fetches from (file://).
	OriginDir string
	// CA issued the server certificate (unless WithServerLeaf brought
	// one from elsewhere); CAFile holds its root, the file a client passes
	// as --ca-cert.
	CA *CA
	// ClientCA issued Client and is the CA nginx accepts client
	// certificates from; it is CA unless WithClientCA was given.
	ClientCA *CA
	// Server is nginx's certificate.
	Server *Leaf
	// Client is a client certificate nginx accepts, written to CertFile and
	// KeyFile (0600).
	Client                    *Leaf
	CertFile, KeyFile, CAFile string
	// GoSum holds the go.sum lines of the modules served.
	GoSum []byte
	// Dir is nginx's prefix directory: nginx.conf, error.log, access.log.
	Dir string

	stopOnce sync.Once
	procs    []*proc
}

// StackOption changes how StartMTLSStack builds the stack.
type StackOption func(*stackOptions)

type stackOptions struct {
	ca, clientCA *CA
	serverSpec   *CertSpec
	serverLeaf   *Leaf
	clientSpec   *CertSpec
	editConf     func(string) string
}

// WithCA makes ca issue the server certificate (and, without WithClientCA,
// the client certificates nginx accepts).
func WithCA(ca *CA) StackOption { return func(o *stackOptions) { o.ca = ca } }

// WithClientCA makes nginx accept client certificates from ca instead of
// the server's CA; Stack.Client is then issued by ca.
func WithClientCA(ca *CA) StackOption { return func(o *stackOptions) { o.clientCA = ca } }

// WithServerSpec issues nginx's certificate from spec (Server is forced on),
// e.g. an expired one, one for another name, or SkipIntermediate.
func WithServerSpec(spec CertSpec) StackOption {
	return func(o *stackOptions) { spec.Server = true; o.serverSpec = &spec }
}

// WithServerLeaf makes nginx serve leaf as it is (from any CA).
func WithServerLeaf(leaf *Leaf) StackOption { return func(o *stackOptions) { o.serverLeaf = leaf } }

// WithClientSpec issues Stack.Client from spec (Client is forced on).
func WithClientSpec(spec CertSpec) StackOption {
	return func(o *stackOptions) { spec.Client = true; o.clientSpec = &spec }
}

// WithConfigEdit edits the nginx configuration after the placeholders are
// substituted, e.g. to restrict ssl_protocols.
func WithConfigEdit(edit func(conf string) string) StackOption {
	return func(o *stackOptions) { o.editConf = edit }
}

// NginxPath returns the nginx binary: /usr/sbin/nginx, else nginx on PATH.
// A missing nginx fails the test: it is part of the test environment.
func NginxPath(t testing.TB) string {
	t.Helper()
	if fi, err := os.Stat("/usr/sbin/nginx"); err == nil && !fi.IsDir() {
		return "/usr/sbin/nginx"
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	t.Fatal("nginx not installed: run .ci/run or apt-get install nginx-light")
	return ""
}

// StartMTLSStack starts goproxy serving mods and nginx in front of it with
// mTLS, waits until both answer, and stops both when the test ends.
func StartMTLSStack(t testing.TB, mods []Module, opts ...StackOption) *Stack {
	t.Helper()
	var o stackOptions
	for _, opt := range opts {
		opt(&o)
	}
	nginx := NginxPath(t)
	goproxyBin := Tool(t, "goproxy")
	if o.ca == nil {
		o.ca = NewCA(t)
	}
	if o.clientCA == nil {
		o.clientCA = o.ca
	}
	base := t.TempDir()
	s := &Stack{
		CA:        o.ca,
		ClientCA:  o.clientCA,
		OriginDir: filepath.Join(base, "origin"),
		Dir:       filepath.Join(base, "nginx"),
	}
	t.Cleanup(s.stop)
	s.GoSum = WriteProxyDir(t, s.OriginDir, mods)

	// Certificates.
	certs := filepath.Join(base, "certs")
	switch {
	case o.serverLeaf != nil:
		s.Server = o.serverLeaf
	case o.serverSpec != nil:
		s.Server = o.ca.Issue(t, *o.serverSpec)
	default:
		s.Server = o.ca.Issue(t, CertSpec{Server: true, CommonName: "localhost"})
	}
	clientSpec := CertSpec{Client: true, CommonName: "ci-client"}
	if o.clientSpec != nil {
		clientSpec = *o.clientSpec
	}
	s.Client = o.clientCA.Issue(t, clientSpec)
	serverCert, serverKey := s.Server.WriteFiles(t, filepath.Join(certs, "server"))
	s.CertFile, s.KeyFile = s.Client.WriteFiles(t, filepath.Join(certs, "client"))
	s.CAFile = o.ca.WriteRoot(t, certs)
	clientCAFile := o.clientCA.WriteRoot(t, filepath.Join(certs, "client-ca"))

	// goproxy, fetching from the origin directory.
	gpDir := filepath.Join(base, "goproxy")
	for _, d := range []string{"home", "modcache", "gocache", "tmp", "cache"} {
		mkdir(t, filepath.Join(gpDir, d))
	}
	gpEnv := []string{
		"PATH=" + filepath.Dir(goCommand(t)) + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + filepath.Join(gpDir, "home"),
		"GOPROXY=file://" + filepath.ToSlash(s.OriginDir),
		"GOSUMDB=off",
		"GONOSUMDB=*",
		"GOFLAGS=-mod=mod",
		"GOTOOLCHAIN=local",
		"GOMODCACHE=" + filepath.Join(gpDir, "modcache"),
		"GOCACHE=" + filepath.Join(gpDir, "gocache"),
		"GOENV=off",
		"CGO_ENABLED=0",
	}
	var gp *proc
	gp, s.Origin = startWithPort(t, "goproxy", filepath.Join(gpDir, "goproxy.log"), func(port int) *exec.Cmd {
		cmd := exec.Command(goproxyBin, "server",
			"--address", "127.0.0.1:"+strconv.Itoa(port),
			"--cacher-dir", filepath.Join(gpDir, "cache"),
			"--temp-dir", filepath.Join(gpDir, "tmp"),
			"--shutdown-timeout", "2s")
		cmd.Env = gpEnv
		return cmd
	}, func(port int) (string, error) {
		u := "http://127.0.0.1:" + strconv.Itoa(port)
		return u, probe(&http.Client{Timeout: 2 * time.Second}, u+"/")
	})
	s.procs = append(s.procs, gp)

	// nginx, from the example template.
	tmplPath := filepath.Join(RepoRoot(t), "examples", "nginx-mtls", "nginx.conf.template")
	tmpl, err := os.ReadFile(tmplPath)
	if err != nil {
		t.Fatalf("testenv: nginx template: %v", err)
	}
	mkdir(t, filepath.Join(s.Dir, "tmp")) // nginx creates only the last element of a temp path
	client := s.HTTPClient()
	client.Timeout = 2 * time.Second
	var ng *proc
	ng, s.URL = startWithPort(t, "nginx", filepath.Join(s.Dir, "nginx.out"), func(port int) *exec.Cmd {
		conf, err := RenderNginxConf(string(tmpl), map[string]string{
			"PREFIX":      s.Dir,
			"LISTEN":      "127.0.0.1:" + strconv.Itoa(port),
			"SERVER_CERT": serverCert,
			"SERVER_KEY":  serverKey,
			"CLIENT_CA":   clientCAFile,
			"UPSTREAM":    s.Origin,
		})
		if err != nil {
			t.Fatalf("testenv: %s: %v", tmplPath, err)
		}
		if o.editConf != nil {
			conf = o.editConf(conf)
		}
		writeFile(t, filepath.Join(s.Dir, "nginx.conf"), []byte(conf), 0o644)
		return exec.Command(nginx, "-p", s.Dir, "-c", filepath.Join(s.Dir, "nginx.conf"), "-e", filepath.Join(s.Dir, "error.log"))
	}, func(port int) (string, error) {
		u := "https://127.0.0.1:" + strconv.Itoa(port)
		// Any HTTP answer means nginx serves TLS. A custom server leaf
		// may not verify; then a TCP connect is the readiness probe.
		err := probe(client, u+"/")
		var herr *tlsProbeError
		if err != nil && errors.As(err, &herr) {
			err = probeTLS(port)
		}
		return u, err
	})
	s.procs = append(s.procs, ng)
	return s
}

// HTTPClient returns a client that trusts the stack's CA and presents
// Stack.Client.
func (s *Stack) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{
			RootCAs:      s.CA.Pool(),
			Certificates: []tls.Certificate{s.Client.TLS},
			MinVersion:   tls.VersionTLS12,
		},
		ForceAttemptHTTP2: true,
	}}
}

// ErrorLog returns nginx's error log so far, for failure messages.
func (s *Stack) ErrorLog() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "error.log"))
	return string(b)
}

// Stop stops nginx and goproxy now (it also runs when the test ends), for
// tests of an upstream that goes away.
func (s *Stack) Stop() { s.stop() }

func (s *Stack) stop() {
	s.stopOnce.Do(func() {
		for i := len(s.procs) - 1; i >= 0; i-- {
			s.procs[i].stop()
		}
	})
}

var placeholderRE = regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)\}`)

// RenderNginxConf substitutes ${NAME} placeholders in the template with
// vars, like `envsubst '${LISTEN} ...'`, leaving nginx's own $variables
// alone. A placeholder without a value is an error.
func RenderNginxConf(tmpl string, vars map[string]string) (string, error) {
	var missing []string
	out := placeholderRE.ReplaceAllStringFunc(tmpl, func(m string) string {
		name := m[2 : len(m)-1]
		v, ok := vars[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("no value for placeholders %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// proc is a started server process.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits; after 10s it kills the process group.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// startWithPort starts a server on a free port and waits until ready
// succeeds. A server that exits early because another process took the
// port in between is retried on a new port.
func startWithPort(t testing.TB, name, logFile string, mk func(port int) *exec.Cmd, ready func(port int) (string, error)) (*proc, string) {
	t.Helper()
	var lastErr string
	for attempt := 0; attempt < 3; attempt++ {
		port := FreePort(t)
		cmd := mk(port)
		lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatalf("testenv: %s log: %v", name, err)
		}
		cmd.Stdout, cmd.Stderr = lf, lf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			lf.Close()
			t.Fatalf("testenv: start %s: %v", name, err)
		}
		lf.Close()
		p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logFile}
		go func() { p.err = cmd.Wait(); close(p.done) }()
		t.Cleanup(p.stop)
		deadline := time.Now().Add(20 * time.Second)
		for {
			if p.exited() {
				tail := p.logTail()
				if name == "nginx" {
					tail += "\n" + tailFile(filepath.Join(filepath.Dir(logFile), "error.log"))
				}
				lastErr = fmt.Sprintf("%s exited early (%v):\n%s", name, p.err, tail)
				if strings.Contains(tail, "in use") {
					break // port race: try another port
				}
				t.Fatalf("testenv: %s", lastErr)
			}
			u, err := ready(port)
			if err == nil {
				return p, u
			}
			if time.Now().After(deadline) {
				p.stop()
				t.Fatalf("testenv: %s not ready on port %d after 20s: %v\n%s", name, port, err, p.logTail())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Fatalf("testenv: %s: %s", name, lastErr)
	return nil, ""
}

func tailFile(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

type tlsProbeError struct{ err error }

func (e *tlsProbeError) Error() string { return e.err.Error() }

// probe GETs u and accepts any HTTP answer.
func probe(c *http.Client, u string) error {
	resp, err := c.Get(u)
	if err != nil {
		var certErr *tls.CertificateVerificationError
		if errors.As(err, &certErr) {
			return &tlsProbeError{err}
		}
		return err
	}
	resp.Body.Close()
	return nil
}

// probeTLS checks that nginx accepts connections, for stacks that serve a
// deliberately bad certificate the client cannot verify: nginx listens
// only after it loaded its configuration and certificates, and a
// connection in the backlog is served once its worker starts.
func probeTLS(port int) error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

func mkdir(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}
