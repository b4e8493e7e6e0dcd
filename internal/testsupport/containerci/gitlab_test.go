package containerci_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/containerci"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/podman"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/realci"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// gitlabDocker runs gitlab-ci-local's docker executor in dir through the
// Docker API at dockerHost (podman's), with the job containers on the
// host's network (loopback only is used) and images never pulled (the
// helper image is a local job image: gitlab-ci-local's default lives on
// Docker Hub). The CI/CD variables come from the file variables, outside
// the project (as GitLab keeps them in its settings, not in the repository).
// It returns the output and each job's log.
func gitlabDocker(ctx context.Context, t *testing.T, dir, variables, dockerHost, helper string) (string, map[string]string, error) {
	t.Helper()
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "DOCKER_HOST=" + dockerHost}
	return realci.RunGitLabCILocal(ctx, t, dir, env,
		"--network", "host",
		"--pull-policy", "if-not-present",
		"--helper-image", helper,
		"--variables-file", variables,
		"--no-artifacts-to-source")
}

// TestGitLabDockerExecutor runs the GitLab template as a project includes
// it in job containers of the docker executor (gitlab-ci-local's, on
// podman), in both job images: the release installs from the loopback
// host, verified; as root the agent runs under a user of its own inside
// the job container and the job builds through it; after_script (which
// GitLab runs in a new container from the job image, sharing only the
// build directory, so the agent is gone by then) still reports the agent's
// final stats; the dotenv reaches a later job; the key's file variable is
// removed once the agent holds it, and no key copy is in the project
// directory, its caches or artifacts. As a non-root image user with no
// sudo, setup runs unseparated and says so.
func TestGitLabDockerExecutor(t *testing.T) {
	t.Parallel()
	images := podman.JobImages(t)
	for _, tc := range []struct {
		name, image string
		user        string // image: docker: user:, "" for the image's (root)
		// newContainer makes after_script see what GitLab's new container
		// sees: gitlab-ci-local restarts the script's container instead,
		// so what lies outside the build volume (the state dir in /tmp)
		// is removed first; without it the state dir is still there, with
		// its agent gone (both must report).
		newContainer bool
	}{
		{"bookworm-root", images.Bookworm, "", false},
		{"alpine-root", images.Alpine, "", true},
		{"bookworm-nonroot", images.Bookworm, "1000:1000", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testGitLabDocker(t, images, tc.image, tc.user, tc.newContainer)
		})
	}
}

func testGitLabDocker(t *testing.T, images podman.Images, image, user string, newContainer bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	scope := podman.NewScope(t, "gcl")
	dockerHost := scope.Service(t)
	rel := realci.NewRelease(t)
	host := realci.NewReleaseHost(t)
	host.Put(realci.TestVersion, rel.Asset, rel.Archive)
	stack := testenv.StartMTLSStack(t, realci.Mods)

	project := filepath.Join(t.TempDir(), "project")
	testenv.WriteConsumer(t, project, realci.Mods)
	realci.WriteFile(t, filepath.Join(project, "goproxy-setup.gitlab-ci.yml"), containerci.PinTemplate(t, rel))
	cert, err := os.ReadFile(stack.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(stack.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	// File variables, as a project's CI/CD settings hold PEM content.
	variables := filepath.Join(t.TempDir(), "variables.yml")
	realci.WriteFile(t, variables, []byte(
		"GOPROXY_SETUP_CLIENT_CERT:\n  type: file\n  values:\n    '*': |\n"+realci.Indent(string(cert), 6)+
			"GOPROXY_SETUP_CLIENT_KEY:\n  type: file\n  values:\n    '*': |\n"+realci.Indent(string(stack.Client.KeyPEM), 6)+
			"GOPROXY_SETUP_CA_CERT:\n  type: file\n  values:\n    '*': |\n"+realci.Indent(string(caPEM), 6)))
	imageYAML := "image: " + image
	if user != "" {
		imageYAML = fmt.Sprintf("image:\n    name: %s\n    docker:\n      user: %q", image, user)
	}
	build, later := "build-"+scope.Token, "later-"+scope.Token
	emulate := ""
	if newContainer {
		emulate = "\n    - rm -rf \"$GOPROXY_SETUP_STATE_DIR\""
	}
	realci.WriteFile(t, filepath.Join(project, ".gitlab-ci.yml"), []byte(fmt.Sprintf(`include:
  - local: goproxy-setup.gitlab-ci.yml

stages: [build, after]

variables:
  GOPROXY_SETUP_UPSTREAM: %[1]s
  GOPROXY_SETUP_RELEASES_URL: %[2]s
  GOFLAGS: -mod=mod
  GOSUMDB: "off"
  # Nothing but loopback: the template's go install fallback fails at
  # once instead of asking the public proxy (setup's GOPROXY replaces it).
  GOPROXY: "off"
  # A user without a passwd entry has HOME=/: give go a writable one.
  HOME: /tmp

%[3]s:
  stage: build
  extends: .goproxy-setup
  %[5]s
  before_script:
    - %[6]s
    - !reference [.goproxy-setup, before_script]
    - %[7]s
  script:
    - go build ./... && GOPROXY=off go mod verify
    - %[8]s
  after_script:%[11]s
    - !reference [.goproxy-setup, after_script]
    - %[9]s
    - if [ -s goproxy-setup.junit.xml ]; then echo "goproxy-setup-probe junit present"; fi

%[4]s:
  stage: after
  image: %[10]s
  needs: [%[3]s]
  script:
    - echo "dotenv result=$GOPROXY_SETUP_RESULT modules=$GOPROXY_SETUP_MODULES cache_hit=$GOPROXY_SETUP_CACHE_HIT"
`, stack.URL, host.URL, build, later, imageYAML,
		containerci.UptimeProbe("start"), containerci.UptimeProbe("serving"),
		containerci.ProbeScript("during"), containerci.ProbeScript("after"), image, emulate)))
	realci.GitInit(t, project)
	containerci.GitLabRemote(t, project, scope.Token)
	// gitlab-ci-local leaves the file variables (the key) in /tmp.
	realci.RemoveFileVariableDirs(t, stack.Client.KeyPEM)

	out, logs, err := gitlabDocker(ctx, t, project, variables, dockerHost, images.Helper)
	if err != nil {
		t.Errorf("gitlab-ci-local: %v\n%s", err, out)
	}
	l := logs[build]
	for _, w := range []string{rel.Asset + " sha256", "verified against", "agent serving", "all modules verified"} {
		if !strings.Contains(l, w) {
			t.Errorf("job %s: log lacks %q", build, w)
		}
	}
	if want := "dotenv result=ok modules=2 cache_hit=false\n"; !strings.Contains(logs[later], want) {
		t.Errorf("job %s (needs the build job's dotenv): log lacks %q\n%s", later, want, logs[later])
	}
	// after_script reports the agent's final stats although the agent is
	// gone, and says so; it does not warn.
	if regexp.MustCompile(`WARN\s+\S+\s+after_script`).MatchString(out) {
		t.Errorf("after_script failed (WARN after_script):\n%s", out)
	}
	if strings.Contains(l, "is not running") || !strings.Contains(l, "requests:") {
		t.Errorf("job %s: after_script did not report the agent's final stats (want its 'requests:' line, not 'is not running')", build)
	}
	probes := containerci.Probes(l)
	during, after := probes["during"], probes["after"]
	if during == nil || after == nil || probes["start"] == nil || probes["serving"] == nil {
		t.Fatalf("job %s: probes missing (%v)\n%s", build, probes, l)
	}
	t.Logf("job start → agent serving: %.2f s; key files the job can read during the job %v, after %v; agent uids %v",
		probes["serving"].Uptime-probes["start"].Uptime, during.KeyFiles, after.KeyFiles, during.AgentUIDs)
	fileVar := func(f string) bool { return strings.Contains(f, "gitlab-ci-local-file-variables-") }
	switch user {
	case "":
		// Root: the agent runs as its own user, not root, not the job's.
		if len(during.AgentUIDs) != 1 || during.AgentUIDs[0] == 0 {
			t.Errorf("agent uids during the job = %v, want one, not 0", during.AgentUIDs)
		}
		// The key is on disk only where the agent needs it: its private
		// copy; the file variable's copy is gone once the agent holds it.
		if slices.ContainsFunc(during.KeyFiles, fileVar) {
			t.Errorf("the key's file variable is still on disk while the job runs (%v): remove it once the agent holds the key", during.KeyFiles)
		}
		if len(during.KeyFiles) != 1 || !strings.Contains(during.KeyFiles[0], "/private/") {
			t.Errorf("key files a root job can read during the job = %v, want exactly the agent's private copy", during.KeyFiles)
		}
		if !strings.Contains(l, "root job can still read") {
			t.Errorf("job %s: the summary does not say plainly that a root job can still read the key", build)
		}
	default:
		if !strings.Contains(l, "runs as the job's user") {
			t.Errorf("job %s: as a non-root user without sudo, setup does not say the agent runs unseparated", build)
		}
	}
	if !strings.Contains(l, "goproxy-setup-probe junit present") {
		t.Errorf("job %s: the JUnit report goproxy-setup.junit.xml is not in the build directory for GitLab to collect", build)
	}
	if slices.ContainsFunc(after.KeyFiles, func(f string) bool { return strings.HasPrefix(f, "/builds/") }) {
		t.Errorf("a key copy is in the build directory after the report: %v", after.KeyFiles)
	}
	// Nothing the job leaves (project dir, artifacts, caches) holds the key.
	if hits := containerci.FilesContaining(t, project, containerci.KeyLine(stack.Client.KeyPEM)); len(hits) > 0 {
		t.Errorf("the key is in the project's files, artifacts or caches: %v", hits)
	}
	for job, jl := range logs {
		if strings.Contains(jl, containerci.KeyLine(stack.Client.KeyPEM)) {
			t.Errorf("job %s: a line of the client key is in the log", job)
		}
	}
	if t.Failed() {
		t.Logf("gitlab-ci-local output:\n%s", out)
	}
}
