package actionrun_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/actionrun"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

var update = os.Getenv("UPDATE_GOLDEN") != ""

var e2eModules = []testenv.Module{
	{Path: "example.com/alpha", Version: "v1.0.0"},
	{Path: "example.com/Beta/gamma", Version: "v0.2.0"},
}

// hostModProxy is the host's module download cache as a file:// GOPROXY:
// the action builds goproxy-setup from source with the runner's Go, and
// here its dependencies come from this machine instead of the internet.
func hostModProxy(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOMODCACHE: %v", err)
	}
	return "file://" + filepath.Join(strings.TrimSpace(string(out)), "cache", "download")
}

// job is one simulated GitHub job: a workspace with a consumer module, a
// runner temp dir, a fresh module cache, and the runner.
type job struct {
	runner    *actionrun.Runner
	workspace string
	temp      string
	modcache  string
}

func newJob(t *testing.T, mods []testenv.Module) *job {
	t.Helper()
	j := &job{workspace: t.TempDir(), temp: t.TempDir(), modcache: t.TempDir()}
	if mods != nil {
		testenv.WriteConsumer(t, j.workspace, mods)
	}
	env := append(testenv.GoEnv(t, j.modcache), "GOPROXY="+hostModProxy(t))
	j.runner = actionrun.New(j.workspace, j.temp, env)
	if testing.Verbose() {
		j.runner.Log = os.Stderr
	}
	return j
}

// checkNoSecret fails when any log line, the summary, or any file under
// the job's directories holds secret, except the files in allow (path
// suffixes) and the ::add-mask:: lines that exist to hide it.
func (j *job) checkNoSecret(t *testing.T, what, secret string, allow ...string) {
	t.Helper()
	for i, l := range j.runner.Lines() {
		if strings.Contains(l, secret) && !strings.HasPrefix(l, "::add-mask::") {
			t.Errorf("%s appears in log line %d before masking: %q", what, i+1, l)
		}
	}
	if strings.Contains(j.runner.MaskedLog(), secret) {
		t.Errorf("%s appears in the masked log", what)
	}
	if strings.Contains(j.runner.Summary(), secret) {
		t.Errorf("%s appears in the job summary", what)
	}
	for _, root := range []string{j.workspace, j.temp} {
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			for _, a := range allow {
				if strings.HasSuffix(path, a) {
					return nil
				}
			}
			if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), secret) {
				t.Errorf("%s appears in %s", what, path)
			}
			return nil
		})
	}
}

var (
	portRE     = regexp.MustCompile(`127\.0\.0\.1(:|%3A)\d+`)
	durationRE = regexp.MustCompile(`\b\d+(\.\d+)? (ms|s)\b`)
	bytesRE    = regexp.MustCompile(`\b\d+(\.\d+)? (B|KiB|MiB)\b`)
	pidRE      = regexp.MustCompile(`pid \d+`)
)

// normalize replaces what changes from run to run: ports, temp paths,
// durations, sizes.
func normalize(s string, paths map[string]string) string {
	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool { return len(keys[a]) > len(keys[b]) })
	for _, k := range keys {
		s = strings.ReplaceAll(s, k, paths[k])
	}
	s = portRE.ReplaceAllString(s, "127.0.0.1${1}PORT")
	s = durationRE.ReplaceAllString(s, "DURATION")
	s = bytesRE.ReplaceAllString(s, "SIZE")
	return pidRE.ReplaceAllString(s, "pid PID")
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (UPDATE_GOLDEN=1 writes it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s: got\n%s\nwant\n%s", name, got, want)
	}
}

// annotations renders the workflow commands of the log, one per line.
func annotations(r *actionrun.Runner) string {
	var b strings.Builder
	for _, a := range r.Annotations() {
		if a.Command == "debug" {
			continue
		}
		fmt.Fprintf(&b, "::%s %s::%s\n", a.Command, a.Properties, strings.ReplaceAll(a.Message, "\n", "\\n"))
	}
	return b.String()
}

var caNameRE = regexp.MustCompile(`test root [0-9a-f]+`)

// failureAnnotations is annotations with what varies between failing runs
// taken out: the per-module errors (their order follows the concurrent
// fetches) leave only the diagnosis line, and the throwaway CA's name is
// replaced.
func failureAnnotations(r *actionrun.Runner) string {
	var b strings.Builder
	for _, a := range r.Annotations() {
		if a.Command == "debug" {
			continue
		}
		msg := a.Message
		if strings.Contains(a.Properties, "goproxy-setup failed") {
			for _, l := range strings.Split(msg, "\n") {
				if strings.HasPrefix(l, "diagnosis:") {
					msg = "… " + l
				}
			}
		}
		fmt.Fprintf(&b, "::%s %s::%s\n", a.Command, a.Properties, strings.ReplaceAll(caNameRE.ReplaceAllString(msg, "test root CA"), "\n", "\\n"))
	}
	return b.String()
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestActionEndToEnd runs action.yml as GitHub's runner would against the
// real mTLS stack (nginx with ssl_verify_client on, in front of the real
// goproxy server), then `go build` in the next step through the exported
// environment, then the report action.
func TestActionEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 8*time.Minute)
	stack := testenv.StartMTLSStack(t, e2eModules)
	j := newJob(t, e2eModules)
	root := testenv.RepoRoot(t)

	// The key goes in as content, the way a workflow passes a secret: it is
	// the canary checked below.
	res, err := j.runner.RunAction(ctx, root, map[string]string{
		"upstream":    stack.URL,
		"client-cert": stack.CertFile,
		"client-key":  string(stack.Client.KeyPEM),
		"ca-cert":     stack.CAFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Err != nil {
		t.Fatalf("action failed: %v\n%s", res.Err, j.runner.MaskedLog())
	}
	stateDir := j.runner.Env["GOPROXY_SETUP_STATE_DIR"]
	t.Cleanup(func() {
		exec.Command(filepath.Join(j.temp, "goproxy-setup-bin", "goproxy-setup"), "stop", "--state-dir", stateDir).Run()
	})

	goproxy := res.Outputs["goproxy"]
	if !regexp.MustCompile(`^http://127\.0\.0\.1:\d+/[A-Za-z0-9_-]{16,}$`).MatchString(goproxy) {
		t.Fatalf("output goproxy = %q, want http://127.0.0.1:<port>/<token>", goproxy)
	}
	if got := j.runner.Env["GOPROXY"]; !strings.HasPrefix(got, goproxy) {
		t.Errorf("exported GOPROXY = %q, want it to start with the output %q", got, goproxy)
	}
	if got, want := res.Outputs["modules"], fmt.Sprint(len(e2eModules)); got != want {
		t.Errorf("output modules = %q, want %q", got, want)
	}
	if got := res.Outputs["cache-hit"]; got != "false" {
		t.Errorf("output cache-hit = %q, want false on a fresh cache", got)
	}
	if v := j.runner.MaskViolations(); len(v) > 0 {
		t.Errorf("secrets shown before their ::add-mask::: %v", v)
	}
	masks := strings.Join(j.runner.Masks(), "\n")
	if !strings.Contains(masks, goproxy) {
		t.Errorf("the capability URL was never masked; masks:\n%s", masks)
	}

	// The next steps: the real go command through the exported env.
	for _, script := range []string{
		`go build ./... && GOPROXY=off go mod verify`,
		// An emptied cache is refilled through the agent, so the agent
		// has something to report.
		`go clean -modcache && go mod download && go build ./...`,
	} {
		if sr := j.runner.RunScript(ctx, script, nil); sr.Err != nil {
			t.Fatalf("step %q: %v\n%s", script, sr.Err, j.runner.MaskedLog())
		}
	}

	rep, err := j.runner.RunAction(ctx, filepath.Join(root, "report"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Err != nil {
		t.Fatalf("report action failed: %v\n%s", rep.Err, j.runner.MaskedLog())
	}
	if rep.Outputs["failed-after-setup"] != "0" || rep.Outputs["requests"] == "0" || rep.Outputs["requests"] == "" {
		t.Errorf("report outputs = %v, want requests > 0 and failed-after-setup 0", rep.Outputs)
	}

	paths := map[string]string{j.temp: "$RUNNER_TEMP", j.workspace: "$GITHUB_WORKSPACE", stack.URL: "$UPSTREAM"}
	golden(t, "action-success.summary.golden", normalize(j.runner.Summary(), paths))
	golden(t, "action-success.annotations.golden", normalize(annotations(j.runner), paths))

	// The canaries: the client key never appears anywhere but its file;
	// the capability token only in the runner's env/output files.
	// The agent's custody copy (step 3) is the one other place the key may
	// be: a 0600 file in a 0700 directory.
	custody := filepath.Join(stateDir, "private", "client.key")
	if fi, err := os.Stat(custody); err == nil {
		di, derr := os.Stat(filepath.Dir(custody))
		if fi.Mode().Perm() != 0o600 || derr != nil || di.Mode().Perm() != 0o700 {
			t.Errorf("custody key %s mode %v in a directory of mode %v, want 0600 in 0700", custody, fi.Mode().Perm(), di.Mode().Perm())
		}
	}
	if m, _ := filepath.Glob(filepath.Join(j.temp, "goproxy-setup-identity-*")); len(m) > 0 {
		t.Errorf("the key written from the input is still on disk after setup: %v", m)
	}
	key := strings.TrimSpace(string(stack.Client.KeyPEM))
	if !strings.Contains(strings.Join(j.runner.Masks(), "\n"), key) {
		t.Errorf("the client-key input was never masked")
	}
	j.checkNoSecret(t, "the client key", key, stack.KeyFile, custody)
	for _, line := range strings.Split(key, "\n") {
		if !strings.HasPrefix(line, "-----") {
			j.checkNoSecret(t, "a line of the client key", line, stack.KeyFile, custody)
		}
	}
	token := goproxy[strings.LastIndex(goproxy, "/")+1:]
	j.checkNoSecret(t, "the capability token", token, "/github_env", "/github_output", "/goproxy-setup-bin/goproxy-setup")
}

// TestActionFailureIsDiagnosed runs the action against the mTLS stack
// without a client certificate: the step fails, the summary leads with the
// failing layer, annotations say why, the report output names the
// diagnosis, and the report action (if: always()) still runs.
func TestActionFailureIsDiagnosed(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 8*time.Minute)
	stack := testenv.StartMTLSStack(t, e2eModules)
	j := newJob(t, e2eModules)
	root := testenv.RepoRoot(t)
	res, err := j.runner.RunAction(ctx, root, map[string]string{
		"upstream": stack.URL,
		"ca-cert":  stack.CAFile,
		"timeout":  "10s",
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Err == nil {
		t.Fatalf("action succeeded without a client certificate, want a failure\n%s", j.runner.MaskedLog())
	}
	stateDir := j.runner.Env["GOPROXY_SETUP_STATE_DIR"]
	t.Cleanup(func() {
		exec.Command(filepath.Join(j.temp, "goproxy-setup-bin", "goproxy-setup"), "stop", "--state-dir", stateDir).Run()
	})
	if rp := res.Outputs["report"]; rp == "" {
		t.Errorf("output report is empty, want the diagnosis path")
	} else if _, err := os.Stat(rp); err != nil {
		t.Errorf("output report %q: %v", rp, err)
	}
	summary := j.runner.Summary()
	if !strings.Contains(summary, "## goproxy-setup failed") || !strings.Contains(summary, "Failing layer") {
		t.Errorf("summary does not lead with the failure:\n%s", summary)
	}
	var errs int
	for _, a := range j.runner.Annotations() {
		if a.Command == "error" {
			errs++
		}
	}
	if errs == 0 {
		t.Errorf("no error annotation; annotations:\n%s", annotations(j.runner))
	}
	if v := j.runner.MaskViolations(); len(v) > 0 {
		t.Errorf("secrets shown before their ::add-mask::: %v", v)
	}
	// The report action runs with if: always() in a workflow.
	rep, err := j.runner.RunAction(ctx, filepath.Join(root, "report"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report action: err=%v outputs=%v", rep.Err, rep.Outputs)
	// The report after a failed setup: its errors happened during setup,
	// and the summary's headline must agree with its errors table.
	report := j.runner.Summary()
	report = report[strings.LastIndex(report, "## goproxy-setup report"):]
	if strings.Contains(report, "| `client-cert` |") && strings.Contains(report, "No fetch failed") {
		t.Errorf("report summary contradicts itself:\n%s", report)
	}
	if !strings.Contains(report, "fetches failed during setup, none after it") {
		t.Errorf("report summary does not say the failures were the setup's:\n%s", report)
	}
	paths := map[string]string{j.temp: "$RUNNER_TEMP", j.workspace: "$GITHUB_WORKSPACE", stack.URL: "$UPSTREAM"}
	golden(t, "action-failure.annotations.golden", normalize(failureAnnotations(j.runner), paths))
}

// TestActionSecretInputNeverShown gives the action a canary step-ca token
// and a CA that is not there: enrolment fails, and the token appears in no
// log line (other than the mask), summary, output or file.
func TestActionSecretInputNeverShown(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 5*time.Minute)
	j := newJob(t, nil)
	const canary = "CANARY-ott-eyJhbGciOiJFUzI1NiJ9.c2VjcmV0.c2ln"
	port := testenv.FreePort(t)
	res, err := j.runner.RunAction(ctx, testenv.RepoRoot(t), map[string]string{
		"ca-url":         fmt.Sprintf("https://127.0.0.1:%d", port),
		"ca-fingerprint": strings.Repeat("ab", 32),
		"token":          canary,
		"warm":           "false",
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Err == nil {
		t.Fatalf("action succeeded with an unreachable CA, want a failure")
	}
	if !strings.Contains(strings.Join(j.runner.Masks(), "\n"), canary) {
		t.Errorf("the token input was never masked")
	}
	j.checkNoSecret(t, "the token input", canary)
	if !strings.Contains(j.runner.MaskedLog(), "goproxy-setup") {
		t.Errorf("the log says nothing:\n%s", j.runner.MaskedLog())
	}
}

// TestActionUpstreamLeftOut: with the upstream input left out, the
// policy's default route applies (the modules exist only on the loopback
// stack it names, so a fall back to the public proxy fails the warm); an
// explicitly empty input (an unset repository variable) is refused, never
// taken for the public proxy.
func TestActionUpstreamLeftOut(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 8*time.Minute)
	stack := testenv.StartMTLSStack(t, e2eModules)
	for _, tc := range []struct {
		name   string
		with   map[string]string
		wantOK bool
	}{
		{"left out", map[string]string{}, true},
		{"empty", map[string]string{"upstream": ""}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := newJob(t, e2eModules)
			policy := filepath.Join(j.temp, "policy.hcl")
			hcl := fmt.Sprintf("upstreams = [\"corp\"]\n\nupstream \"corp\" {\n  url = %q\n}\n", stack.URL)
			if err := os.WriteFile(policy, []byte(hcl), 0o644); err != nil {
				t.Fatal(err)
			}
			with := map[string]string{"client-cert": stack.CertFile, "client-key": stack.KeyFile, "ca-cert": stack.CAFile, "policy": policy}
			for k, v := range tc.with {
				with[k] = v
			}
			res, err := j.runner.RunAction(ctx, testenv.RepoRoot(t), with)
			if err != nil {
				t.Fatal(err)
			}
			stateDir := j.runner.Env["GOPROXY_SETUP_STATE_DIR"]
			t.Cleanup(func() {
				exec.Command(filepath.Join(j.temp, "goproxy-setup-bin", "goproxy-setup"), "stop", "--state-dir", stateDir).Run()
			})
			if !tc.wantOK {
				if res.Err == nil {
					t.Fatalf("an empty upstream input was accepted:\n%s", j.runner.MaskedLog())
				}
				if log := j.runner.MaskedLog(); !strings.Contains(log, "never the public default") {
					t.Errorf("the log does not say why an empty upstream is refused:\n%s", log)
				}
				return
			}
			if res.Err != nil {
				t.Fatalf("action failed with the policy's route: %v\n%s", res.Err, j.runner.MaskedLog())
			}
			if got, want := res.Outputs["modules"], fmt.Sprint(len(e2eModules)); got != want {
				t.Errorf("output modules = %q, want %q (warmed from the policy's upstream)", got, want)
			}
			if sr := j.runner.RunScript(ctx, `GOPROXY=off go build ./...`, nil); sr.Err != nil {
				t.Errorf("offline build after the warm: %v\n%s", sr.Err, j.runner.MaskedLog())
			}
		})
	}
}

// TestActionUsesEnvNotInterpolation guards the composite steps: inputs
// reach scripts only through env:, never as ${{ }} inside `run:`.
func TestActionUsesEnvNotInterpolation(t *testing.T) {
	t.Parallel()
	root := testenv.RepoRoot(t)
	for _, dir := range []string{root, filepath.Join(root, "report")} {
		a, err := actionrun.LoadAction(dir)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range a.Runs.Steps {
			if strings.Contains(s.Run, "${{") {
				t.Errorf("%s step %d interpolates an expression into its script: %q", dir, i+1, s.Run)
			}
		}
	}
	a, err := actionrun.LoadAction(root)
	if err != nil {
		t.Fatal(err)
	}
	var setup *actionrun.Step
	for i := range a.Runs.Steps {
		if a.Runs.Steps[i].ID == "setup" {
			setup = &a.Runs.Steps[i]
		}
	}
	if setup == nil {
		t.Fatal("action.yml has no step with id setup")
	}
	// The inputs of the install step reach it under their own names; every
	// other input reaches the setup step as its GOPROXY_SETUP_* twin.
	install := map[string]string{"install": "INSTALL", "releases-url": "RELEASES_URL"}
	var inst *actionrun.Step
	for i := range a.Runs.Steps {
		if a.Runs.Steps[i].ID == "install" {
			inst = &a.Runs.Steps[i]
		}
	}
	if inst == nil {
		t.Fatal("action.yml has no step with id install")
	}
	for name := range a.Inputs {
		step, env := setup, "GOPROXY_SETUP_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if v, ok := install[name]; ok {
			step, env = inst, v
		}
		if got, want := step.Env[env], "${{ inputs."+name+" }}"; got != want {
			t.Errorf("step %s env %s = %q, want %q", step.ID, env, got, want)
		}
	}
}

// TestExampleWorkflowsLint runs actionlint over examples/github as a
// repository's .github/workflows, with action.yml and report/action.yml at
// the root so `uses: ./` and `uses: ./report` are checked against the real
// inputs; a misspelled input must be caught.
func TestExampleWorkflowsLint(t *testing.T) {
	t.Parallel()
	actionlint := testenv.Tool(t, "actionlint")
	root := testenv.RepoRoot(t)
	examples, err := filepath.Glob(filepath.Join(root, "examples", "github", "*.yml"))
	if err != nil || len(examples) < 4 {
		t.Fatalf("examples/github holds %d workflows (%v), want at least 4", len(examples), err)
	}
	lint := func(t *testing.T, edit func(name, body string) string) (string, error) {
		repo := t.TempDir()
		for _, d := range []string{".git", ".github/workflows", "report"} {
			if err := os.MkdirAll(filepath.Join(repo, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		copyFile := func(src, dst string, edit func(string) string) {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, []byte(edit(string(b))), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		same := func(s string) string { return s }
		copyFile(filepath.Join(root, "action.yml"), filepath.Join(repo, "action.yml"), same)
		copyFile(filepath.Join(root, "report", "action.yml"), filepath.Join(repo, "report", "action.yml"), same)
		for _, e := range examples {
			name := filepath.Base(e)
			copyFile(e, filepath.Join(repo, ".github", "workflows", name), func(s string) string { return edit(name, s) })
		}
		cmd := exec.Command(actionlint, "-color=false")
		cmd.Dir = repo
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Run("examples pass", func(t *testing.T) {
		t.Parallel()
		if out, err := lint(t, func(_, s string) string { return s }); err != nil {
			t.Errorf("actionlint: %v\n%s", err, out)
		}
	})
	t.Run("misspelled input is caught", func(t *testing.T) {
		t.Parallel()
		out, err := lint(t, func(name, s string) string {
			if name == "plain.yml" {
				return strings.Replace(s, "client-key:", "client-kye:", 1)
			}
			return s
		})
		if err == nil || !strings.Contains(out, `input "client-kye" is not defined in action "goproxy-setup"`) {
			t.Errorf("actionlint with a misspelled input: err=%v, want the undefined-input error\n%s", err, out)
		}
	})
}

// binary is the goproxy-setup binary, built once, the way the template's
// `go install` would build it.
func binary(t *testing.T) string { return testenv.Binary(t) }

// gitlabJob is the part of a GitLab job the test runs.
type gitlabJob struct {
	Variables    map[string]string `yaml:"variables"`
	BeforeScript []string          `yaml:"before_script"`
	AfterScript  []string          `yaml:"after_script"`
	IDTokens     map[string]struct {
		Aud string `yaml:"aud"`
	} `yaml:"id_tokens"`
	Artifacts struct {
		When    string `yaml:"when"`
		Reports struct {
			JUnit  string `yaml:"junit"`
			Dotenv string `yaml:"dotenv"`
		} `yaml:"reports"`
	} `yaml:"artifacts"`
}

func loadTemplate(t *testing.T) gitlabJob {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "examples", "gitlab", "goproxy-setup.gitlab-ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]gitlabJob
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("parse the GitLab template: %v", err)
	}
	job, ok := doc[".goproxy-setup"]
	if !ok {
		t.Fatal("the template has no hidden job .goproxy-setup")
	}
	return job
}

// runShell runs lines as GitLab's bash does (set -eo pipefail, one shell
// for the whole list) and returns the combined log.
func runShell(ctx context.Context, t *testing.T, dir string, env []string, lines []string) (string, error) {
	t.Helper()
	script := "set -eo pipefail\n" + strings.Join(lines, "\n") + "\n"
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-c", script)
	cmd.Dir = dir
	cmd.Env = env
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestGitLabTemplate runs the template's before_script, a job script doing
// `go build`, and the after_script in bash with GitLab's predefined
// variables, against the real mTLS stack; then checks the dotenv artifact
// and validates the JUnit report against the JUnit schema.
func TestGitLabTemplate(t *testing.T) {
	t.Parallel()
	job := loadTemplate(t)
	if job.Artifacts.When != "always" || job.Artifacts.Reports.JUnit == "" || job.Artifacts.Reports.Dotenv == "" {
		t.Fatalf("artifacts = %+v, want when: always with junit and dotenv reports", job.Artifacts)
	}
	if _, ok := job.IDTokens["GOPROXY_SETUP_ID_TOKEN"]; !ok {
		t.Errorf("id_tokens lacks GOPROXY_SETUP_ID_TOKEN (the variable tlsauth reads)")
	}
	cases := []struct {
		name       string
		clientCert bool
		wantResult string
	}{
		{"ok", true, "ok"},
		{"no client certificate", false, "failed"},
	}
	stack := testenv.StartMTLSStack(t, e2eModules)
	bin := binary(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxFor(t, 5*time.Minute)
			project, modcache := t.TempDir(), t.TempDir()
			testenv.WriteConsumer(t, project, e2eModules)
			jobID := fmt.Sprint(time.Now().UnixNano() % 1e9)
			env := testenv.GoEnv(t, modcache)
			for i, kv := range env {
				if strings.HasPrefix(kv, "PATH=") {
					env[i] = "PATH=" + filepath.Dir(bin) + ":" + strings.TrimPrefix(kv, "PATH=")
				}
			}
			predefined := map[string]string{
				"CI": "true", "GITLAB_CI": "true", "CI_PROJECT_DIR": project, "CI_BUILDS_DIR": filepath.Dir(project),
				"CI_JOB_ID": jobID, "CI_PIPELINE_ID": "4242", "CI_JOB_NAME": "build", "CI_SERVER_URL": "https://gitlab.example.com",
				"CI_PROJECT_PATH": "group/project", "CI_COMMIT_SHA": strings.Repeat("a", 40),
			}
			for k, v := range predefined {
				env = append(env, k+"="+v)
			}
			lookup := func(k string) string { return predefined[k] }
			for k, v := range job.Variables {
				env = append(env, k+"="+os.Expand(v, lookup))
			}
			// The project's CI/CD variables.
			env = append(env, "GOPROXY_SETUP_UPSTREAM="+stack.URL, "GOPROXY_SETUP_CA_CERT="+stack.CAFile, "GOPROXY_SETUP_TIMEOUT=10s")
			if tc.clientCert {
				env = append(env, "GOPROXY_SETUP_CLIENT_CERT="+stack.CertFile, "GOPROXY_SETUP_CLIENT_KEY="+stack.KeyFile)
			}
			stateDir := os.Expand(job.Variables["GOPROXY_SETUP_STATE_DIR"], lookup)
			t.Cleanup(func() {
				exec.Command(bin, "stop", "--state-dir", stateDir).Run()
				os.RemoveAll(stateDir)
			})
			script := append(append([]string(nil), job.BeforeScript...),
				`test -n "$GOPROXY" && test "$GOPROXY" != off`,
				`go build ./...`,
				`GOPROXY=off go mod verify`)
			log, err := runShell(ctx, t, project, env, script)
			if tc.clientCert && err != nil {
				t.Fatalf("job script: %v\n%s", err, log)
			}
			if !tc.clientCert && err == nil {
				t.Fatalf("job script succeeded without a client certificate\n%s", log)
			}
			for _, marker := range []string{"\x1b[0Ksection_start:", "section_end:", "[collapsed=true]\r\x1b[0K"} {
				if !strings.Contains(log, marker) {
					t.Errorf("job log lacks the section marker %q", marker)
				}
			}
			afterLog, afterErr := runShell(ctx, t, project, env, job.AfterScript)
			if tc.clientCert && afterErr != nil {
				t.Errorf("after_script: %v\n%s", afterErr, afterLog)
			}

			dotenv, err := os.ReadFile(filepath.Join(project, job.Artifacts.Reports.Dotenv))
			if err != nil {
				t.Fatalf("dotenv artifact: %v", err)
			}
			kv := map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(string(dotenv)), "\n") {
				k, v, ok := strings.Cut(line, "=")
				if !ok || !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`).MatchString(k) {
					t.Errorf("dotenv line %q is not KEY=value", line)
				}
				kv[k] = v
			}
			if kv["GOPROXY_SETUP_RESULT"] != tc.wantResult {
				t.Errorf("dotenv GOPROXY_SETUP_RESULT = %q, want %q\n%s", kv["GOPROXY_SETUP_RESULT"], tc.wantResult, dotenv)
			}
			if _, ok := kv["GOPROXY"]; ok {
				t.Errorf("dotenv carries GOPROXY, a loopback agent that ends with the job")
			}
			if !tc.clientCert && kv["GOPROXY_SETUP_FAILED_LAYER"] == "" {
				t.Errorf("dotenv lacks GOPROXY_SETUP_FAILED_LAYER on failure:\n%s", dotenv)
			}
			junit := filepath.Join(project, job.Artifacts.Reports.JUnit)
			xsd := filepath.Join(testenv.RepoRoot(t), "agent", "ci", "testdata", "junit.xsd")
			if out, err := exec.Command("xmllint", "--noout", "--schema", xsd, junit).CombinedOutput(); err != nil {
				t.Errorf("JUnit report fails the schema: %v\n%s", err, out)
			}
			jb, _ := os.ReadFile(junit)
			if tc.clientCert == strings.Contains(string(jb), "<failure") {
				t.Errorf("JUnit report failure elements = %v, want %v\n%s", !tc.clientCert, !tc.clientCert, jb)
			}
			// GitLab does not mask computed values: neither the key nor
			// the capability token may be printed at all.
			key := strings.TrimSpace(string(stack.Client.KeyPEM))
			all := log + afterLog + string(dotenv) + string(jb)
			if strings.Contains(all, key) {
				t.Errorf("the client key appears in the job's log or artifacts")
			}
			if m := regexp.MustCompile(`http://127\.0\.0\.1:\d+/([A-Za-z0-9_-]{16,})`).FindStringSubmatch(all); m != nil {
				t.Errorf("a capability URL appears in the job's log or artifacts: %q", m[0])
			}
		})
	}
}
