package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// The policy answers of the front in TestRunUpstreamAnswers, as corporate
// proxies (Artifactory, Nexus, Athens with a filter) give them.
const (
	deniedText  = "This module version is not available."
	blockedText = "Go module host not permitted"
)

// policyFront edits the nginx configuration of the mTLS stack so that nginx
// answers for chosen paths as a policy-enforcing module proxy does: 403
// with a text for example.com/denied and for the module-path prefix
// example.com (which cmd/go probes on every go get of an example.com
// module), 400 with a text for example.com/blocked. verify turns the
// client-certificate requirement on or off.
func policyFront(verify bool) testenv.StackOption {
	return testenv.WithConfigEdit(func(conf string) string {
		if !verify {
			conf = strings.Replace(conf, "ssl_verify_client      on;", "ssl_verify_client      off;", 1)
		}
		locations := `
        location ^~ /example.com/denied/ {
            default_type "text/plain; charset=utf-8";
            return 403 "` + deniedText + `\n";
        }
        location ^~ /example.com/@v/ {
            default_type "text/plain; charset=utf-8";
            return 403 "` + deniedText + `\n";
        }
        location ^~ /example.com/blocked/ {
            default_type text/plain;
            return 400 "` + blockedText + `\n";
        }

        location / {`
		return strings.Replace(conf, "\n        location / {", locations, 1)
	})
}

// goGet runs `go get mod` in a fresh module with proxy as GOPROXY.
func goGet(t *testing.T, proxy, mod string, extraEnv ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module consumer\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(testenv.GoEnv(t, t.TempDir()), "GOPROXY="+proxy)
	return testenv.RunGo(t, dir, append(env, extraEnv...), "get", mod)
}

type agentStats struct {
	Answered         int64            `json:"answered"`
	AnsweredByStatus map[string]int64 `json:"answered_by_status"`
	Failures         int64            `json:"failures"`
	FailedAfterSetup int64            `json:"failed_after_setup"`
}

func statusJSON(t *testing.T, state string) agentStats {
	t.Helper()
	out, stderr, code := runCLI(t, nil, "status", "--json", "--state-dir", state)
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, stderr)
	}
	var st agentStats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// TestRunUpstreamAnswers: a front that answers 403 and 400 with a text
// (real nginx before the real goproxy server). Through the agent, cmd/go
// prints the upstream's status and text, as it does talking to the front
// itself; without a client certificate nothing blames an identity, and
// nothing sends the user to a network diagnosis. A green go get whose
// module-path prefix probes were answered 403 leaves `stop` green.
func TestRunUpstreamAnswers(t *testing.T) {
	t.Parallel()
	for _, withCert := range []bool{false, true} {
		name := "no client certificate"
		if withCert {
			name = "client certificate"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			stack := testenv.StartMTLSStack(t, e2eModules, policyFront(withCert))
			start := func() (gp, state string) {
				t.Helper()
				state = t.TempDir()
				args := []string{"run", "--format", "json", "--warm=false", "--upstream", stack.URL, "--ca-cert", stack.CAFile, "--state-dir", state}
				if withCert {
					args = append(args, "--client-cert", stack.CertFile, "--client-key", stack.KeyFile)
				}
				stdout, stderr, code := runCLI(t, nil, args...)
				if code != 0 {
					t.Fatalf("run exit %d\n%s", code, stderr)
				}
				t.Cleanup(func() { runCLI(t, nil, "stop", "--state-dir", state) })
				return parseJSONEnv(t, stdout)["GOPROXY"], state
			}

			// A green go get: cmd/go probes example.com/@v/v1.0.0.info
			// (answered 403) besides example.com/alpha, and succeeds.
			gp, state := start()
			if out, err := goGet(t, gp, "example.com/alpha@v1.0.0"); err != nil {
				t.Fatalf("go get example.com/alpha through the agent: %v\n%s", err, out)
			}
			if st := statusJSON(t, state); st.AnsweredByStatus["403"] == 0 {
				t.Fatalf("no prefix probe was answered 403 (stats %+v): the test proves nothing\nnginx access log:\n%s", st, readFile(t, filepath.Join(stack.Dir, "access.log")))
			}
			stopOut, stopErr, code := runCLI(t, nil, "stop", "--state-dir", state)
			if code != 0 {
				t.Errorf("stop after a green go get: exit %d, want 0\n%s\n%s", code, stopOut, stopErr)
			}
			if strings.Contains(stopOut+stopErr, "map[") {
				t.Errorf("stop prints Go map syntax:\n%s\n%s", stopOut, stopErr)
			}
			if !strings.Contains(stopOut, "upstream answered") || !strings.Contains(stopOut, "403: ") {
				t.Errorf("stop's report does not count the relayed answers:\n%s", stopOut)
			}

			// Go gets the front refuses: the upstream's status and text,
			// as cmd/go prints them talking to the front itself.
			gp, state = start()
			for _, test := range []struct {
				mod, status, text string
			}{
				{"example.com/denied@v1.0.0", "403 Forbidden", deniedText},
				{"example.com/blocked@v1.0.0", "400 Bad Request", blockedText},
			} {
				via, err := goGet(t, gp, test.mod)
				if err == nil {
					t.Fatalf("go get %s through the agent succeeded, want the front's refusal\n%s", test.mod, via)
				}
				if !strings.Contains(via, test.status) || !strings.Contains(testenv.ServerResponse(via), test.text) {
					t.Errorf("go get %s through the agent does not print the front's %s and text %q:\n%s", test.mod, test.status, test.text, via)
				}
				for _, bad := range []string{"diagnose", "failure at"} {
					if strings.Contains(via, bad) {
						t.Errorf("go get %s through the agent prints %q (the network works):\n%s", test.mod, bad, via)
					}
				}
				// A status, not digits of a port such as 45025.
				if regexp.MustCompile(`\b502\b`).MatchString(via) {
					t.Errorf("go get %s through the agent prints 502 (the network works):\n%s", test.mod, via)
				}
				if !withCert {
					for _, bad := range []string{"identity", "certificate"} {
						if strings.Contains(via, bad) {
							t.Errorf("go get %s without a client certificate blames %q:\n%s", test.mod, bad, via)
						}
					}
					// Straight to the front (possible without a client
					// certificate), cmd/go prints the same text.
					direct, derr := goGet(t, stack.URL, test.mod, "SSL_CERT_FILE="+stack.CAFile)
					if derr == nil || !strings.Contains(testenv.ServerResponse(direct), test.text) {
						t.Errorf("go get %s straight to the front: %v\n%s\nwant the front's text", test.mod, derr, direct)
					}
					if d, v := testenv.ServerResponse(direct), testenv.ServerResponse(via); !strings.HasPrefix(v, d) {
						t.Errorf("server response through the agent %q does not start with the front's own %q", v, d)
					}
				}
			}
			stopOut, stopErr, code = runCLI(t, nil, "stop", "--state-dir", state)
			if code != 0 {
				t.Errorf("stop after refused go gets: exit %d, want 0 (the upstream answered; the go commands printed why)\n%s\n%s", code, stopOut, stopErr)
			}
		})
	}
}

var stoppedPIDRE = regexp.MustCompile(`stopped the agent it started \(pid (\d+)\)`)

// gone reports whether pid no longer runs (a zombie waiting for a reaper
// counts as gone).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err != nil || strings.Contains(string(b), ") Z ")
}

// TestRunUnusableModCache: a module cache the warm cannot use is a local
// fault: `run` exits 1 (or 2 for a relative path) naming the path and the
// fix, starts no network diagnosis, writes no report, prints no
// environment and leaves no agent running.
func TestRunUnusableModCache(t *testing.T) {
	t.Parallel()
	url, _ := testenv.NewModuleServer(t, e2eModules)
	work := t.TempDir()
	testenv.WriteConsumer(t, work, e2eModules)
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, test := range []struct {
		name     string
		modcache string
		code     int
		want     []string
		started  bool // whether the agent starts before the fault shows
	}{
		{"relative", "rel/modcache", 2, []string{`GOMODCACHE="rel/modcache"`, "absolute path"}, false},
		{"under a file", filepath.Join(blocker, "modcache"), 1, []string{blocker, "fix: ", "no network diagnosis"}, true},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			state := t.TempDir()
			stdout, stderr, code := runCLI(t, []string{"GOMODCACHE=" + test.modcache, "GOFLAGS=-modcacherw"}, "run", "--upstream", url,
				"--state-dir", state, "--working-directory", work, "--timeout", "10s")
			t.Cleanup(func() { runCLI(t, nil, "stop", "--state-dir", state) })
			if code != test.code {
				t.Errorf("exit %d, want %d\n%s", code, test.code, stderr)
			}
			checkLocalFault(t, state, stdout, stderr, test.want...)
			m := stoppedPIDRE.FindStringSubmatch(stderr)
			if !test.started {
				if m != nil {
					t.Errorf("the agent was started although the input was refused first:\n%s", stderr)
				}
				return
			}
			if m == nil {
				t.Fatalf("run does not say it stopped its agent:\n%s", stderr)
			}
			pid, _ := strconv.Atoi(m[1])
			for deadline := time.Now().Add(5 * time.Second); !gone(pid) && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
			}
			if !gone(pid) {
				t.Errorf("the agent (pid %d) still runs after the failed run", pid)
			}
			if _, err := os.Stat(filepath.Join(state, "agent.json")); err == nil {
				t.Errorf("agent.json is left in the state dir after the failed run")
			}
		})
	}
}

// runInMountNS runs the binary like runCLI, in a mount namespace of its own
// where a tmpfs mounted with opts covers dir: a full or read-only file
// system that disappears with the namespace, whatever happens to the test.
func runInMountNS(t *testing.T, env []string, dir, opts string, args ...string) (string, string, int) {
	t.Helper()
	script := `mount -t tmpfs -o "$1" goproxy-setup-test "$2" || exit 99; shift 2; exec "$@"`
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", opts, dir, binary(t)}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan struct{})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("goproxy-setup %s did not return", strings.Join(args, " "))
	}
	if code := cmd.ProcessState.ExitCode(); code == 99 {
		t.Fatalf("mount a tmpfs (%s) in a mount namespace: %s", opts, stderr.String())
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// TestRunFullOrReadOnlyDisk: a module cache on a full or a read-only file
// system (a tmpfs in a mount namespace of the test's own) is a local
// fault: exit 1, the path and the fix, no network diagnosis, no agent
// left. ENOSPC passes for a net.Error (it has Timeout and Temporary), which
// once made this look like an unreachable upstream.
func TestRunFullOrReadOnlyDisk(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	url, _ := testenv.NewModuleServer(t, e2eModules)
	work := t.TempDir()
	testenv.WriteConsumer(t, work, e2eModules)
	for _, test := range []struct {
		name, opts string
		want       []string
	}{
		{"full", "size=4k,nr_inodes=6", []string{"no space left on device", "the disk is full", "no network diagnosis"}},
		{"read-only", "ro", []string{"read-only file system", "point GOMODCACHE at a writable directory", "no network diagnosis"}},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			mnt := t.TempDir()
			state := t.TempDir()
			stdout, stderr, code := runInMountNS(t, []string{"GOMODCACHE=" + filepath.Join(mnt, "modcache"), "GOFLAGS=-modcacherw"}, mnt, test.opts,
				"run", "--upstream", url, "--state-dir", state, "--working-directory", work, "--timeout", "10s")
			t.Cleanup(func() { runCLI(t, nil, "stop", "--state-dir", state) })
			if code != 1 {
				t.Errorf("exit %d, want 1\n%s", code, stderr)
			}
			checkLocalFault(t, state, stdout, stderr, append(test.want, mnt)...)
			m := stoppedPIDRE.FindStringSubmatch(stderr)
			if m == nil {
				t.Fatalf("run does not say it stopped its agent:\n%s", stderr)
			}
			pid, _ := strconv.Atoi(m[1])
			for deadline := time.Now().Add(5 * time.Second); !gone(pid) && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
			}
			if !gone(pid) {
				t.Errorf("the agent (pid %d) still runs after the failed run", pid)
			}
		})
	}
}

// TestRunEncryptedKey: an encrypted legacy PEM key is bad input (exit 2)
// that names the file and how to decrypt it.
func TestRunEncryptedKey(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	dir := t.TempDir()
	leaf := ca.Issue(t, testenv.CertSpec{Client: true, KeyType: "rsa", KeyFormat: "pkcs1"})
	cert, _ := leaf.WriteFiles(t, dir)
	//lint:ignore SA1019 the legacy format is what users bring; only a test writes it.
	block, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(leaf.TLS.PrivateKey.(*rsa.PrivateKey)), []byte("passphrase"), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "encrypted.key")
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runCLI(t, nil, "run", "--warm=false", "--state-dir", t.TempDir(), "--client-cert", cert, "--client-key", key)
	if code != 2 {
		t.Errorf("exit %d, want 2\n%s", code, stderr)
	}
	if want := "client key " + key + " is encrypted: decrypt it first (e.g. openssl pkey -in " + key + " -out plain.key)"; !strings.Contains(stderr, want) {
		t.Errorf("stderr does not say %q:\n%s", want, stderr)
	}
}

// checkLocalFault checks what a run that met a local fault left: stderr
// says each of want and explains the fault once, no network diagnosis was
// run or written, no environment was printed.
func checkLocalFault(t *testing.T, state, stdout, stderr string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr does not say %q:\n%s", w, stderr)
		}
	}
	if n := strings.Count(stderr, "no network diagnosis"); n > 1 {
		t.Errorf("the local fault is explained %d times, want once:\n%s", n, stderr)
	}
	if strings.Contains(stderr, "unreachable") || strings.Contains(stderr, "diagnosis:") || strings.Contains(stderr, "report.txt") {
		t.Errorf("a local fault is reported as a network one or started a diagnosis:\n%s", stderr)
	}
	if _, err := os.Stat(filepath.Join(state, "report.txt")); err == nil {
		t.Errorf("a local fault wrote a diagnosis report")
	}
	if stdout != "" {
		t.Errorf("a failed run printed the environment:\n%s", stdout)
	}
}
