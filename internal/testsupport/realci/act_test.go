package realci_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/realci"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

var mods = realci.Mods

// testVersion is the release the tests publish on the loopback host.
const testVersion = realci.TestVersion

// hostModProxy is this machine's module download cache as a file://
// GOPROXY: a source build of the action fetches goproxy-setup's
// dependencies from it instead of the internet.
func hostModProxy(t testing.TB) string { return "file://" + realci.HostModCache(t) }

// actRepo is a throwaway repository for one act run: a copy of this
// repository (the action at ./, the report action at ./report), a consumer
// module of mods in consumer/, and the test's workflow.
type actRepo struct {
	dir  string
	home string // HOME of act: its tool cache is HOME/.cache/act/tool_cache
}

func newActRepo(t testing.TB, release []byte) *actRepo {
	t.Helper()
	r := &actRepo{dir: filepath.Join(t.TempDir(), "repo"), home: t.TempDir()}
	realci.CopyRepo(t, testenv.RepoRoot(t), r.dir)
	testenv.WriteConsumer(t, filepath.Join(r.dir, "consumer"), mods)
	if release != nil {
		// The release commit's trust root: the sums and the version.
		realci.WriteFile(t, filepath.Join(r.dir, "checksums", testVersion+".txt"), release)
		realci.WriteFile(t, filepath.Join(r.dir, "checksums", "RELEASE"), []byte(testVersion+"\n"))
	}
	return r
}

// release builds the loopback release of testVersion for this machine's
// platform: the archive and its sums line.
func release(t testing.TB) (asset string, archive, sums []byte) {
	r := realci.NewRelease(t)
	return r.Asset, r.Archive, r.Sums
}

// run runs the workflow in act's host mode (-P ubuntu-latest=-self-hosted:
// no Docker) and returns act's log and error.
func (r *actRepo) run(ctx context.Context, t testing.TB, workflow string, extraEnv ...string) (string, error) {
	t.Helper()
	realci.WriteFile(t, filepath.Join(r.dir, ".github", "workflows", "test.yml"), []byte(workflow))
	realci.GitInit(t, r.dir)
	act := realci.Runner(t, testenv.RepoRoot(t), "act")
	cmd := exec.CommandContext(ctx, act, "push",
		"-P", "ubuntu-latest=-self-hosted",
		"-W", ".github/workflows/test.yml",
		"--no-cache-server")
	cmd.Dir = r.dir
	cmd.Env = append(r.env(t), extraEnv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("act ran %s in %v", workflow[:strings.Index(workflow, "\n")], time.Since(start).Round(time.Millisecond))
	return out.String(), err
}

// env is act's environment, which host mode passes on to the steps: the
// go command hermetic (its own module cache, the host's download cache as
// a file:// GOPROXY for a source build of the action) and HOME a fresh
// directory, so the tool cache starts empty.
func (r *actRepo) env(t testing.TB) []string {
	env := testenv.GoEnv(t, t.TempDir())
	env = append(env, "HOME="+r.home, "GOPROXY="+hostModProxy(t), "GOFLAGS=-modcacherw")
	return env
}

// setupStep is the `uses: ./` step with the mTLS stack's identity.
func setupStep(stack *testenv.Stack, extra string) string {
	return fmt.Sprintf(`      - uses: actions/checkout@v4
      - id: gps
        uses: ./
        with:
          upstream: %s
          client-cert: %s
          client-key: %s
          ca-cert: %s
          working-directory: consumer
%s`, stack.URL, stack.CertFile, stack.KeyFile, stack.CAFile, extra)
}

const buildAndReport = `      - name: method
        run: echo "install-method=${{ steps.gps.outputs.install-method }}"
      - name: go build
        working-directory: consumer
        run: go build ./... && GOPROXY=off go mod verify
      - name: report
        if: always()
        uses: ./report
`

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// summaries returns the job summary act printed: every "Summary - " block,
// up to the next line of act's own (they start with "[workflow/job]").
func summaries(log string) string {
	var b strings.Builder
	in := false
	for _, l := range strings.Split(log, "\n") {
		if _, s, ok := strings.Cut(l, "Summary - "); ok && strings.HasPrefix(l, "[") {
			in = true
			b.WriteString(s + "\n")
			continue
		}
		if strings.HasPrefix(l, "[") {
			in = false
		}
		if in {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func mustContain(t *testing.T, log string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(log, w) {
			t.Errorf("act log lacks %q", w)
		}
	}
	if t.Failed() {
		t.Logf("act log:\n%s", log)
	}
}

// TestActHappyPath: the action installs the loopback release (verified
// against the sums in its tree), starts the agent against the real mTLS
// upstream, the next step builds through it, and report/ stops it.
func TestActHappyPath(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 6*time.Minute)
	asset, archive, sums := release(t)
	host := realci.NewReleaseHost(t)
	host.Put(testVersion, asset, archive)
	stack := testenv.StartMTLSStack(t, mods)
	r := newActRepo(t, sums)
	wf := "name: happy\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n" +
		setupStep(stack, "          releases-url: "+host.URL+"\n") + buildAndReport
	log, err := r.run(ctx, t, wf)
	if err != nil {
		t.Fatalf("act: %v\n%s", err, log)
	}
	mustContain(t, log,
		asset+" sha256 ",
		"verified against",
		"install-method=release",
		"agent serving",
		"Job succeeded",
	)
	if strings.Contains(log, "building from source") {
		t.Errorf("the release install fell back to a source build:\n%s", log)
	}
	if n := host.Hits(testVersion, asset); n != 1 {
		t.Errorf("release asset requested %d times, want 1", n)
	}
	if strings.Contains(log, string(stack.Client.KeyPEM[40:80])) {
		t.Errorf("a piece of the client key is in the act log")
	}
	if os.Getenv("REALCI_DUMP") != "" {
		os.WriteFile(os.Getenv("REALCI_DUMP"), []byte(log), 0o644)
	}
	if strings.Contains(log, "\x1b[") && regexp.MustCompile(`\| .*\x1b\[`).MatchString(log) {
		t.Errorf("colour escape codes in a step's output (act prints step output after '| '); depends on the CI adapter's fix")
	}
}

// TestActUpstreamFromPolicy: with the upstream input left out, the
// policy's default route applies (the modules exist only on the loopback
// stack it names); an explicitly empty input (an unset repository
// variable) fails the step instead of falling back to the public proxy.
func TestActUpstreamFromPolicy(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 6*time.Minute)
	asset, archive, sums := release(t)
	host := realci.NewReleaseHost(t)
	host.Put(testVersion, asset, archive)
	stack := testenv.StartMTLSStack(t, mods)
	for _, tc := range []struct {
		name, upstream string
		ok             bool
	}{
		{"left out", "", true},
		{"empty", "          upstream: ${{ vars.NOT_SET }}\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newActRepo(t, sums)
			realci.WriteFile(t, filepath.Join(r.dir, "policy.hcl"), fmt.Appendf(nil, "upstreams = [\"corp\"]\n\nupstream \"corp\" {\n  url = %q\n}\n", stack.URL))
			wf := fmt.Sprintf(`name: policy
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: gps
        uses: ./
        with:
%s          policy: ${{ github.workspace }}/policy.hcl
          client-cert: %s
          client-key: %s
          ca-cert: %s
          working-directory: consumer
          releases-url: %s
`, tc.upstream, stack.CertFile, stack.KeyFile, stack.CAFile, host.URL) + buildAndReport[strings.Index(buildAndReport, "      - name: go build"):]
			log, err := r.run(ctx, t, wf)
			if !tc.ok {
				if err == nil {
					t.Fatalf("act succeeded with an empty upstream input, want the step to fail:\n%s", log)
				}
				mustContain(t, log, "never the public default", "Job failed")
				return
			}
			if err != nil {
				t.Fatalf("act: %v\n%s", err, log)
			}
			mustContain(t, log, "agent serving", "Job succeeded")
		})
	}
}

// TestActFailingLayer: without a client certificate the setup step fails,
// the failing layer (client-cert) is named in the log and in the job
// summary, and the report step still runs.
func TestActFailingLayer(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 6*time.Minute)
	asset, archive, sums := release(t)
	host := realci.NewReleaseHost(t)
	host.Put(testVersion, asset, archive)
	stack := testenv.StartMTLSStack(t, mods)
	r := newActRepo(t, sums)
	wf := fmt.Sprintf(`name: failing
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: gps
        uses: ./
        with:
          upstream: %s
          ca-cert: %s
          working-directory: consumer
          releases-url: %s
      - name: report
        if: always()
        uses: ./report
`, stack.URL, stack.CAFile, host.URL)
	log, err := r.run(ctx, t, wf)
	if err == nil {
		t.Fatalf("act succeeded, want the job to fail:\n%s", log)
	}
	mustContain(t, log, "client-cert", "Job failed")
	summary := summaries(log)
	if !strings.Contains(summary, "Failing layer: `client-cert`") {
		t.Errorf("the job summary does not name the failing layer client-cert; summary:\n%s", summary)
	}
	// The report summary must not contradict the failure (the CI
	// adapter's fix): no "No fetch failed" above a table of errors.
	if strings.Contains(summary, "No fetch failed") {
		t.Errorf("the report's summary says no fetch failed after a failed setup:\n%s", summary)
	}
	if !regexp.MustCompile(`(?m)Run Main report|report \[`).MatchString(log) && !strings.Contains(log, "goproxy-setup report") {
		t.Errorf("the report step did not run after the failed setup:\n%s", log)
	}
}

// TestActReleaseInstall: what the install does when the release host
// misbehaves, and that a runner downloads each version once.
func TestActReleaseInstall(t *testing.T) {
	t.Parallel()
	asset, archive, sums := release(t)
	stack := testenv.StartMTLSStack(t, mods)
	want := strings.Fields(string(sums))[0]

	t.Run("tampered asset fails with exit 4 naming both sums", func(t *testing.T) {
		t.Parallel()
		ctx := ctxFor(t, 6*time.Minute)
		host := realci.NewReleaseHost(t)
		tampered := append(bytes.Clone(archive[:len(archive)-8]), "tampered"...)
		host.Put(testVersion, asset, tampered)
		got := strings.Fields(realci.SumLine(tampered, asset))[0]
		r := newActRepo(t, sums)
		wf := "name: tampered\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n" +
			setupStep(stack, "          releases-url: "+host.URL+"\n") +
			"      - name: report\n        if: always()\n        uses: ./report\n"
		log, err := r.run(ctx, t, wf)
		if err == nil {
			t.Fatalf("act succeeded with a tampered release:\n%s", log)
		}
		// The report step has no binary and no agent: it says so rather
		// than building one.
		mustContain(t, log, "got sha256 "+got, "want "+want, "exit status 4", "no agent ran: nothing to report")
		if strings.Contains(log, "building from source") || strings.Contains(log, "agent serving") {
			t.Errorf("a tampered release must fail the job, not fall back or go on:\n%s", log)
		}
	})

	t.Run("unreachable host falls back to a source build", func(t *testing.T) {
		t.Parallel()
		ctx := ctxFor(t, 8*time.Minute)
		testenv.Binary(t)
		closed := fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
		r := newActRepo(t, sums)
		wf := "name: unreachable\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n" +
			setupStep(stack, "") + buildAndReport
		// The host comes from the environment this time (the input is
		// empty): the override a self-hosted runner's mirror would use.
		// The source build shares the build cache that testenv.Binary
		// filled with the same flags: seconds, not a cold build (the
		// benchmark measures that).
		gocache, err := exec.Command("go", "env", "GOCACHE").Output()
		if err != nil {
			t.Fatal(err)
		}
		log, err := r.run(ctx, t, wf, "GOPROXY_SETUP_RELEASES_URL="+closed, "GOCACHE="+strings.TrimSpace(string(gocache)))
		if err != nil {
			t.Fatalf("act: %v\n%s", err, log)
		}
		mustContain(t, log,
			"could not be downloaded from "+closed+": building from source instead",
			"install-method=source",
			"agent serving",
			"Job succeeded")
	})

	t.Run("a second job hits the tool cache", func(t *testing.T) {
		t.Parallel()
		ctx := ctxFor(t, 6*time.Minute)
		host := realci.NewReleaseHost(t)
		host.Put(testVersion, asset, archive)
		r := newActRepo(t, sums)
		job := func(name, needs string) string {
			return "  " + name + ":\n    runs-on: ubuntu-latest\n" + needs + "    steps:\n" +
				setupStep(stack, "          releases-url: "+host.URL+"\n") + buildAndReport
		}
		wf := "name: cache\non: push\njobs:\n" + job("first", "") + job("second", "    needs: first\n")
		log, err := r.run(ctx, t, wf)
		if err != nil {
			t.Fatalf("act: %v\n%s", err, log)
		}
		if n := host.Hits(testVersion, asset); n != 1 {
			t.Errorf("release asset downloaded %d times by two jobs, want 1 (the second from the tool cache)", n)
		}
		mustContain(t, log, "from the tool cache", "[cache/second]")
		if !regexp.MustCompile(`\[cache/second\].*from the tool cache`).MatchString(log) {
			t.Errorf("the second job did not install from the tool cache:\n%s", log)
		}
	})
}

// runnerUser makes sure the account `runner` exists with passwordless sudo,
// the shape of a GitHub-hosted runner, and returns its uid and gid. What
// the test creates, it removes at the end.
func runnerUser(t *testing.T) (uid, gid uint32) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the hosted-runner test needs root to create the runner user; CI runs as root")
		}
		t.Skip("needs root to create the runner user (CI runs as root)")
	}
	if _, err := exec.LookPath("sudo"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sudo is not installed (CI is set, so this is a failure): .ci/setup installs it")
		}
		t.Skip("sudo is not installed: run .ci/setup")
	}
	if exec.Command("id", "-u", "runner").Run() != nil {
		if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/bash", "runner").CombinedOutput(); err != nil {
			t.Fatalf("useradd runner: %v\n%s", err, out)
		}
		t.Cleanup(func() { exec.Command("userdel", "--remove", "runner").Run() })
	}
	const sudoers = "/etc/sudoers.d/goproxy-setup-test-runner"
	if _, err := os.Stat(sudoers); err != nil {
		if err := os.WriteFile(sudoers, []byte("runner ALL=(ALL) NOPASSWD:ALL\n"), 0o440); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(sudoers) })
	}
	id := func(flag string) uint32 {
		out, err := exec.Command("id", flag, "runner").Output()
		if err != nil {
			t.Fatal(err)
		}
		var n uint32
		fmt.Sscan(string(out), &n)
		return n
	}
	return id("-u"), id("-g")
}

// TestActHostedRunnerShape runs the job the way a GitHub-hosted runner
// does: act as the non-root user `runner`, which has passwordless sudo.
// The action installs the release, and the setup uses sudo to run the
// agent as a user of its own, saying that the job's sudo still reaches
// the key.
func TestActHostedRunnerShape(t *testing.T) {
	t.Parallel()
	uid, gid := runnerUser(t)
	ctx := ctxFor(t, 6*time.Minute)
	asset, archive, sums := release(t)
	host := realci.NewReleaseHost(t)
	host.Put(testVersion, asset, archive)
	stack := testenv.StartMTLSStack(t, mods)

	// Everything the runner user touches is its own, under /tmp (t.TempDir
	// is 0700 root).
	base, err := os.MkdirTemp("", "realci-runner-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	r := &actRepo{dir: filepath.Join(base, "repo"), home: filepath.Join(base, "home")}
	realci.CopyRepo(t, testenv.RepoRoot(t), r.dir)
	testenv.WriteConsumer(t, filepath.Join(r.dir, "consumer"), mods)
	realci.WriteFile(t, filepath.Join(r.dir, "checksums", testVersion+".txt"), sums)
	realci.WriteFile(t, filepath.Join(r.dir, "checksums", "RELEASE"), []byte(testVersion+"\n"))
	ident := filepath.Join(base, "identity")
	for name, src := range map[string]string{"client.crt": stack.CertFile, "client.key": stack.KeyFile, "ca.crt": stack.CAFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		realci.WriteFile(t, filepath.Join(ident, name), b)
	}
	if err := os.Chmod(filepath.Join(ident, "client.key"), 0o600); err != nil {
		t.Fatal(err)
	}
	act, err := os.ReadFile(realci.Runner(t, testenv.RepoRoot(t), "act"))
	if err != nil {
		t.Fatal(err)
	}
	actBin := filepath.Join(base, "act")
	if err := os.WriteFile(actBin, act, 0o755); err != nil {
		t.Fatal(err)
	}
	wf := fmt.Sprintf(`name: hosted
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "job user $(id -un)"
      - id: gps
        uses: ./
        with:
          upstream: %s
          client-cert: %s/client.crt
          client-key: %s/client.key
          ca-cert: %s/ca.crt
          working-directory: consumer
          releases-url: %s
      - name: modules through the agent
        working-directory: consumer
        run: go list -m all
      - name: report
        if: always()
        uses: ./report
`, stack.URL, ident, ident, ident, host.URL)
	realci.WriteFile(t, filepath.Join(r.dir, ".github", "workflows", "test.yml"), []byte(wf))
	realci.GitInit(t, r.dir)
	if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", uid, gid), base).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v\n%s", err, out)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(ctx, actBin, "push", "-P", "ubuntu-latest=-self-hosted", "-W", ".github/workflows/test.yml", "--no-cache-server")
	cmd.Dir = r.dir
	env := testenv.GoEnv(t, filepath.Join(base, "modcache"))
	env = append(env, "HOME="+r.home, "USER=runner", "LOGNAME=runner", "GOCACHE="+filepath.Join(base, "gocache"), "GOFLAGS=-modcacherw")
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	log := out.String()
	if runErr != nil {
		t.Fatalf("act as runner: %v\n%s", runErr, log)
	}
	mustContain(t, log,
		"job user runner",
		"verified against",
		"agent serving",
		"user=goproxy-agent",
		"passwordless sudo",
		"example.com/alpha v1.0.0",
		"Job succeeded")
}
