package podsidecar

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/server"
	"github.com/goproxy-setup/goproxy-setup/agent/wire"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

// The sidecar's and the job's uids in the host-level tests: in no passwd
// file, as in a pod.
const sidecarUID, jobUID = 64101, 64102

// TestSidecarRenews: the sidecar binary, as a non-root uid, with a
// 10-second certificate from step-ca in Secret-shaped files (0644) and the
// renewal settings of the manifests, renews it itself: a fetch for the job
// after the enrolled certificate has expired, on a fresh handshake (the
// first connection to the upstream), is served (nginx accepts only
// certificates from that step-ca, and checks their expiry). SIGTERM then
// ends it with exit 0, and its log holds neither the token nor the key.
func TestSidecarRenews(t *testing.T) {
	t.Parallel()
	ca := testenv.StartStepCA(t)
	stack := testenv.StartMTLSStack(t, []testenv.Module{mod}, testenv.WithClientCA(ca.CA))
	cert, err := tlsauth.Enroll(context.Background(), tlsauth.EnrollConfig{
		CAURL: ca.URL, Fingerprint: ca.Fingerprint, Lifetime: 10 * time.Second,
		Token: ca.JWKToken(t, "sidecar.example.test"),
	})
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := tlsauth.IdentityPEM(cert)
	if err != nil {
		t.Fatal(err)
	}
	dir := testenv.PublicDir(t, "gps-sidecar-")
	bin := filepath.Join(dir, "goproxy-setup")
	copyFile(t, testenv.Binary(t), bin, 0o755)
	for name, data := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, stack.CAFile, filepath.Join(dir, "ca.crt"), 0o644)
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))

	sc := startSidecar(t, bin, addr, "--upstream", stack.URL, "--ca-cert", filepath.Join(dir, "ca.crt"),
		"--client-cert", filepath.Join(dir, "tls.crt"), "--client-key", filepath.Join(dir, "tls.key"),
		"--renew-ca-url", ca.URL, "--renew-ca-fingerprint", ca.Fingerprint)

	// Past the enrolled certificate's end: only a renewed one is accepted.
	time.Sleep(time.Until(leaf.NotAfter) + time.Second)
	env := getAs(t, jobUID, "http://"+addr+wire.SidecarEnvPath+"?format=dotenv")
	base, ok := strings.CutPrefix(strings.TrimSpace(env), "GOPROXY=")
	if !ok {
		t.Fatalf("the job's environment: %q, want GOPROXY=...", env)
	}
	if info := getAs(t, jobUID, base+"/"+mod.Path+"/@v/"+mod.Version+".info"); !strings.Contains(info, mod.Version) {
		t.Errorf("fetch after the enrolled certificate expired: %q, want the .info of %s", info, mod.Version)
	}
	if !strings.Contains(sc.logs.String(), "renewed client certificate") {
		t.Errorf("the sidecar's log does not show a renewal:\n%s", sc.logs.String())
	}
	sc.stop(t)
	token := strings.TrimPrefix(base, "http://"+addr+"/")
	for what, secret := range map[string]string{"the token": token, "the key": string(bytes.TrimSpace(keyPEM))[40:80]} {
		if strings.Contains(sc.logs.String(), secret) {
			t.Errorf("the sidecar's log holds %s", what)
		}
	}
}

// TestSidecarRestartKeepsGOPROXY: with --state-dir (an emptyDir of the
// sidecar's own in the manifests), a restarted sidecar (liveness probe,
// out of memory) serves the GOPROXY the job already holds.
func TestSidecarRestartKeepsGOPROXY(t *testing.T) {
	t.Parallel()
	stack := testenv.StartMTLSStack(t, []testenv.Module{mod})
	dir := testenv.PublicDir(t, "gps-sidecar-")
	bin := filepath.Join(dir, "goproxy-setup")
	copyFile(t, testenv.Binary(t), bin, 0o755)
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, sidecarUID, sidecarUID); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	envURL := "http://" + addr + wire.SidecarEnvPath
	var envs []string
	for range 2 {
		sc := startSidecar(t, bin, addr, "--upstream", stack.URL, "--state-dir", state)
		envs = append(envs, getAs(t, jobUID, envURL))
		sc.stop(t)
	}
	if envs[0] != envs[1] || !strings.Contains(envs[0], "GOPROXY=") {
		t.Errorf("the job's environment after a restart changed (or holds no GOPROXY): before %q, after %q", envs[0], envs[1])
	}
}

// sidecarProc is a sidecar started by startSidecar.
type sidecarProc struct {
	cmd  *exec.Cmd
	done chan error
	logs *testenv.SyncBuffer
}

// startSidecar starts the sidecar binary bin as sidecarUID serving jobUID
// on addr, with args added, and waits until it answers its probe; it is
// killed when the test ends unless stop ended it.
func startSidecar(t *testing.T, bin, addr string, args ...string) *sidecarProc {
	t.Helper()
	sc := &sidecarProc{done: make(chan error, 1), logs: &testenv.SyncBuffer{}}
	sc.cmd = exec.Command(bin, append([]string{"sidecar", "--job-uid", strconv.Itoa(jobUID), "--listen", addr, "--log-format", "json"}, args...)...)
	sc.cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	sc.cmd.Dir = "/"
	sc.cmd.Stdout, sc.cmd.Stderr = sc.logs, sc.logs
	sc.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: sidecarUID, Gid: sidecarUID}}
	if err := sc.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { sc.done <- sc.cmd.Wait() }()
	t.Cleanup(func() {
		sc.cmd.Process.Kill()
		err := <-sc.done
		sc.done <- err
	})
	waitServing(t, addr, sc.done, sc.logs)
	return sc
}

// stop sends SIGTERM and expects exit 0 (a clean shutdown).
func (sc *sidecarProc) stop(t *testing.T) {
	t.Helper()
	sc.cmd.Process.Signal(syscall.SIGTERM)
	err := <-sc.done
	sc.done <- err
	if err != nil {
		t.Errorf("sidecar after SIGTERM: %v, want exit 0\n%s", err, sc.logs.String())
	}
}

// waitServing waits until the sidecar at addr answers its probe, failing
// when it exits first.
func waitServing(t *testing.T, addr string, done chan error, logs *testenv.SyncBuffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for server.Probe(context.Background(), addr) != nil {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("sidecar exited before serving: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sidecar not serving after 30 s:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// getAs GETs url with curl as uid and returns the body; a failed request
// fails the test.
func getAs(t *testing.T, uid int, url string) string {
	t.Helper()
	c := exec.Command("curl", "-fsS", "--max-time", "20", url)
	c.Dir = "/"
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("GET %s as uid %d: %v: %s", strings.SplitN(url, "/", 4)[2], uid, err, stderr.String())
	}
	return string(out)
}
