package realci_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/realci"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

const templatePath = "examples/gitlab/goproxy-setup.gitlab-ci.yml"

// TestTemplateEmbedsInstallScript: the GitLab template carries
// scripts/install.sh verbatim (an included template cannot reach a file of
// its project), so the two never drift apart.
func TestTemplateEmbedsInstallScript(t *testing.T) {
	t.Parallel()
	root := testenv.RepoRoot(t)
	want, err := os.ReadFile(filepath.Join(root, "scripts", "install.sh"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, templatePath))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]struct {
		BeforeScript []string          `yaml:"before_script"`
		Variables    map[string]string `yaml:"variables"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("parse %s: %v", templatePath, err)
	}
	job := doc[".goproxy-setup"]
	if len(job.BeforeScript) == 0 {
		t.Fatalf("%s: .goproxy-setup has no before_script", templatePath)
	}
	const open, end = "<<'GOPROXY_SETUP_INSTALL_SH'\n", "\nGOPROXY_SETUP_INSTALL_SH\n"
	s := job.BeforeScript[0]
	i, j := strings.Index(s, open), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s: the first before_script entry has no install.sh heredoc", templatePath)
	}
	if got := s[i+len(open) : j+1]; got != string(want) {
		t.Errorf("%s embeds an install.sh that differs from scripts/install.sh: copy the script into the heredoc (indented 6 spaces)", templatePath)
	}
	if v := job.Variables["GOPROXY_SETUP_VERSION"]; !strings.HasPrefix(v, "v") || v == "latest" {
		t.Errorf("GOPROXY_SETUP_VERSION = %q, want a pinned vX.Y.Z", v)
	}
}

// glRun runs gitlab-ci-local with the shell executor in dir and returns
// its output and the job logs it wrote under .gitlab-ci-local/output.
func glRun(ctx context.Context, t *testing.T, dir string, env []string) (string, map[string]string, error) {
	t.Helper()
	return realci.RunGitLabCILocal(ctx, t, dir, env)
}

// TestGitLabTemplate runs the template in gitlab-ci-local's shell
// executor as a project includes it, with the client identity in "file"
// variables as the template's header says: the release is installed from
// a loopback host and verified against the sums pin-release.sh wrote into
// the template; a job that extends it builds through the agent, a job with
// its own before_script keeps the agent through !reference, a later job
// reads the dotenv, and a job without a client certificate fails naming
// the failing layer.
func TestGitLabTemplate(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 8*time.Minute)
	root := testenv.RepoRoot(t)
	asset, archive, sums := release(t)
	host := realci.NewReleaseHost(t)
	host.Put(testVersion, asset, archive)
	stack := testenv.StartMTLSStack(t, mods)
	// An upstream with the same server CA that accepts client certificates
	// of another CA only: the client-cert layer fails there.
	rejecting := testenv.StartMTLSStack(t, mods, testenv.WithCA(stack.CA), testenv.WithClientCA(testenv.NewCA(t)))

	// The template as a release pins it.
	tree := t.TempDir()
	if err := os.MkdirAll(filepath.Join(tree, "examples", "gitlab"), 0o755); err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile(filepath.Join(root, templatePath))
	if err != nil {
		t.Fatal(err)
	}
	realci.WriteFile(t, filepath.Join(tree, templatePath), tmpl)
	sumsFile := filepath.Join(t.TempDir(), "checksums.txt")
	realci.WriteFile(t, sumsFile, sums)
	if out, err := exec.Command("sh", filepath.Join(root, "scripts", "pin-release.sh"), testVersion, sumsFile, tree).CombinedOutput(); err != nil {
		t.Fatalf("pin-release.sh: %v\n%s", err, out)
	}
	pinned, err := os.ReadFile(filepath.Join(tree, templatePath))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(pinned), "GOPROXY_SETUP_VERSION: "+testVersion) || !strings.Contains(string(pinned), strings.TrimSpace(string(sums))) {
		t.Fatalf("pin-release.sh did not pin %s and its sums:\n%s", testVersion, pinned)
	}

	project := filepath.Join(t.TempDir(), "project")
	testenv.WriteConsumer(t, project, mods)
	realci.WriteFile(t, filepath.Join(project, "goproxy-setup.gitlab-ci.yml"), pinned)
	state := t.TempDir()
	t.Cleanup(func() {
		// after_script stops each job's agent; if a job died before it,
		// stop what is left so no agent outlives the test.
		for _, job := range []string{"build", "own", "fail"} {
			exec.Command(testenv.Binary(t), "stop", "--state-dir", filepath.Join(state, job)).Run()
		}
	})
	cert, err := os.ReadFile(stack.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	// File variables, as a project's CI/CD settings hold PEM content.
	// gitlab-ci-local writes them 0644, as gitlab-runner does under its
	// usual umask: the setup must accept them (the CI adapter's fix).
	realci.WriteFile(t, filepath.Join(project, ".gitlab-ci-local-variables.yml"), []byte(
		"GOPROXY_SETUP_CLIENT_CERT:\n  type: file\n  values:\n    '*': |\n"+realci.Indent(string(cert), 6)+
			"GOPROXY_SETUP_CLIENT_KEY:\n  type: file\n  values:\n    '*': |\n"+realci.Indent(string(stack.Client.KeyPEM), 6)))
	realci.WriteFile(t, filepath.Join(project, ".gitlab-ci.yml"), []byte(fmt.Sprintf(`include:
  - local: goproxy-setup.gitlab-ci.yml

# One job a stage where they write the same files: gitlab-ci-local's shell
# executor runs every job in the project directory (its --shell-isolation
# loses files between script and after_script in 4.75.1).
stages: [build, after, fail]

variables:
  GOPROXY_SETUP_UPSTREAM: %[1]s
  GOPROXY_SETUP_CA_CERT: %[2]s
  GOPROXY_SETUP_RELEASES_URL: %[3]s
  GOMODCACHE: %[4]s/modcache-$CI_JOB_NAME

build:
  stage: build
  extends: .goproxy-setup
  variables:
    GOPROXY_SETUP_STATE_DIR: %[4]s/build
  script:
    - go build ./... && GOPROXY=off go mod verify

own-before-script:
  stage: after
  extends: .goproxy-setup
  variables:
    GOPROXY_SETUP_STATE_DIR: %[4]s/own
  before_script:
    - !reference [.goproxy-setup, before_script]
    - echo "own before_script ran, GOPROXY ${GOPROXY:+is set}"
  script:
    - GOFLAGS=-mod=mod go list -m all

no-client-cert:
  stage: fail
  extends: .goproxy-setup
  allow_failure: true
  variables:
    GOPROXY_SETUP_STATE_DIR: %[4]s/fail
    GOPROXY_SETUP_UPSTREAM: %[5]s
  script:
    - echo "unreachable"

later:
  stage: after
  needs: [build]
  script:
    - echo "dotenv result=$GOPROXY_SETUP_RESULT modules=$GOPROXY_SETUP_MODULES cache_hit=$GOPROXY_SETUP_CACHE_HIT"
`, stack.URL, stack.CAFile, host.URL, state, rejecting.URL)))
	realci.GitInit(t, project)

	// gitlab-ci-local's shell executor lets its own environment win over
	// job variables: GOMODCACHE is left out of it, so each job gets its
	// own module cache from the pipeline's variables.
	var env []string
	for _, kv := range testenv.GoEnv(t, t.TempDir()) {
		if !strings.HasPrefix(kv, "GOMODCACHE=") {
			env = append(env, kv)
		}
	}
	env = append(env, "GOFLAGS=-modcacherw")
	// gitlab-ci-local leaves the file variables (the key) in /tmp.
	realci.RemoveFileVariableDirs(t, stack.Client.KeyPEM)
	out, logs, err := glRun(ctx, t, project, env)
	if keep := os.Getenv("REALCI_KEEP"); keep != "" {
		exec.Command("cp", "-a", project, keep).Run()
	}
	if err != nil {
		t.Errorf("gitlab-ci-local: %v\n%s", err, out)
	}
	if strings.Contains(logs["build"], "has mode 0644") {
		t.Errorf("setup rejects the key file variable gitlab-ci-local wrote 0644, as gitlab-runner does: the template's documented use fails on day one (the CI adapter's fix accepts it); the checks below fail with it")
	}
	check := func(job string, wants ...string) {
		t.Helper()
		l := logs[job]
		for _, w := range wants {
			if !strings.Contains(l, w) {
				t.Errorf("job %s: log lacks %q\n%s", job, w, l)
			}
		}
	}
	check("build", asset+" sha256", "verified against", "agent serving", "all modules verified")
	check("own-before-script", "from the tool cache", "agent serving", "own before_script ran, GOPROXY is set", "example.com/alpha v1.0.0")
	check("later", "dotenv result=ok modules=2 cache_hit=false\n")
	check("no-client-cert", "client-cert")
	if !regexp.MustCompile(`(?i)fail(ing|ed)? (layer|at)[^\n]*client-cert`).MatchString(logs["no-client-cert"]) {
		t.Errorf("job no-client-cert does not name the failing layer client-cert:\n%s", logs["no-client-cert"])
	}
	if strings.Contains(logs["build"], "falling back to go install") {
		t.Errorf("the build job fell back to go install instead of the release")
	}
	// The first job downloads; the others find the verified archive in
	// the cache directory.
	if n := host.Hits(testVersion, asset); n != 1 {
		t.Errorf("release asset requested %d times by three jobs, want 1", n)
	}
	// after_script removes the agent's private copy of the key (the CI
	// adapter's fix): none of the jobs leaves one behind.
	for _, job := range []string{"build", "own", "fail"} {
		if m, _ := filepath.Glob(filepath.Join(state, job, "private", "*.key")); len(m) > 0 {
			t.Errorf("job %s left its key copy behind: %v", job, m)
		}
	}
	for job, l := range logs {
		if strings.Contains(l, strings.Split(string(stack.Client.KeyPEM), "\n")[1]) {
			t.Errorf("job %s: a line of the client key is in the log", job)
		}
	}
}
