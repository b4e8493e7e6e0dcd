package containerci_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/containerci"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/podman"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/realci"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// actContainer runs workflow with act in container mode through the Docker
// API at dockerHost (podman's): the job's `container:` image is local
// (--pull=false), job containers use the host's network (act's default),
// the runner image is a local job image too, and act's own socket mount is
// off (--container-daemon-socket -). The secrets come from act's
// environment (-s NAME).
func actContainer(ctx context.Context, t *testing.T, dir, dockerHost, runnerImage, workflow string, secrets map[string]string) (string, error) {
	t.Helper()
	realci.WriteFile(t, filepath.Join(dir, ".github", "workflows", "test.yml"), []byte(workflow))
	realci.GitInit(t, dir)
	act := realci.Runner(t, testenv.RepoRoot(t), "act")
	args := []string{"push",
		"-P", "ubuntu-latest=" + runnerImage,
		"--pull=false",
		"--container-daemon-socket", "-",
		"-W", ".github/workflows/test.yml",
		"--no-cache-server"}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "DOCKER_HOST=" + dockerHost}
	for name, v := range secrets {
		args = append(args, "-s", name)
		env = append(env, name+"="+v)
	}
	cmd := exec.CommandContext(ctx, act, args...)
	cmd.Dir = dir
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("act (container mode) ran in %v", time.Since(start).Round(time.Millisecond))
	return out.String(), err
}

// TestMain removes act's tool cache volume (act-toolcache, which act makes
// for container mode and keeps) once every test here has ended, unless a
// container still uses it.
func TestMain(m *testing.M) {
	code := m.Run()
	if p, err := exec.LookPath("podman"); err == nil {
		// Not -f: that removes the containers using the volume, and an
		// act job of another test process may be one of them.
		exec.Command(p, "volume", "rm", "act-toolcache").Run()
	}
	os.Exit(code)
}

// TestActContainerJob runs action.yml and report/ in a GitHub `container:`
// job under act in container mode on podman, in both job images (as root,
// GitHub's default for container jobs): the release installs from the
// loopback host, verified against the sums in the action's tree (and,
// without a release, the action builds itself from source in the
// container); the agent runs as its own user, the job builds through it,
// the report step reports; the summary says plainly that a root job can
// still read the key, and no key copy is left when the job ends.
func TestActContainerJob(t *testing.T) {
	t.Parallel()
	images := podman.JobImages(t)
	for _, tc := range []struct {
		name, image string
		release     bool // a release for the ref; else the source build
	}{
		{"bookworm-release", images.Bookworm, true},
		{"alpine-release", images.Alpine, true},
		{"bookworm-source", images.Bookworm, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testActContainer(t, images, tc.image, tc.release)
		})
	}
}

func testActContainer(t *testing.T, images podman.Images, image string, release bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	scope := podman.NewScope(t, "act")
	dockerHost := scope.Service(t)
	stack := testenv.StartMTLSStack(t, realci.Mods)
	repo := filepath.Join(t.TempDir(), "repo")
	realci.CopyRepo(t, testenv.RepoRoot(t), repo)
	testenv.WriteConsumer(t, filepath.Join(repo, "consumer"), realci.Mods)
	caPEM, err := os.ReadFile(stack.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	realci.WriteFile(t, filepath.Join(repo, "upstream-ca.pem"), caPEM)
	cert, err := os.ReadFile(stack.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	host := realci.NewReleaseHost(t)
	rel := realci.NewRelease(t)
	releasesURL := ""
	if release {
		host.Put(realci.TestVersion, rel.Asset, rel.Archive)
		realci.WriteFile(t, filepath.Join(repo, "checksums", realci.TestVersion+".txt"), rel.Sums)
		realci.WriteFile(t, filepath.Join(repo, "checksums", "RELEASE"), []byte(realci.TestVersion+"\n"))
		releasesURL = "          releases-url: " + host.URL + "\n"
	}
	// The job's name carries the scope's token: act names its containers
	// after the workflow and job.
	wf := fmt.Sprintf(`name: c%[1]s
on: push
jobs:
  j%[1]s:
    runs-on: ubuntu-latest
    container:
      image: %[2]s
      env:
        GOPROXY: file:///hostmod
        GOFLAGS: -mod=mod
        GOSUMDB: "off"
      volumes:
        - %[3]s:/hostmod:ro
    defaults:
      run:
        shell: sh
    steps:
      - uses: actions/checkout@v4
      - run: %[4]s
      - id: gps
        uses: ./
        with:
          upstream: %[5]s
          client-cert: ${{ secrets.GPS_CERT }}
          client-key: ${{ secrets.GPS_KEY }}
          ca-cert: ${{ github.workspace }}/upstream-ca.pem
          working-directory: consumer
%[6]s      - run: %[7]s
      - run: echo "install-method=${{ steps.gps.outputs.install-method }}"
      - name: go build
        working-directory: consumer
        run: go build ./... && GOPROXY=off go mod verify
      - run: %[8]s
      - name: report
        if: always()
        uses: ./report
      - if: always()
        run: %[9]s
`, scope.Token, image, realci.HostModCache(t), containerci.UptimeProbe("start"), stack.URL, releasesURL,
		containerci.UptimeProbe("serving"), containerci.ProbeScript("during"), containerci.ProbeScript("after"))
	log, err := actContainer(ctx, t, repo, dockerHost, images.Bookworm, wf, map[string]string{
		"GPS_CERT": string(cert),
		"GPS_KEY":  string(stack.Client.KeyPEM),
	})
	if err != nil {
		t.Errorf("act: %v", err)
	}
	wants := []string{"agent serving", "all modules verified", "Job succeeded", "a root job can still read"}
	if release {
		// Downloaded and verified against the sums in the action's tree,
		// or found verified in act's tool cache (the volume act-toolcache,
		// which act keeps between runs as a self-hosted runner keeps
		// RUNNER_TOOL_CACHE).
		wants = append(wants, "sha256 ", "verified", "install-method=release")
	} else {
		wants = append(wants, "building from source", "install-method=source")
	}
	for _, w := range wants {
		if !strings.Contains(log, w) {
			t.Errorf("act log lacks %q", w)
		}
	}
	if release && strings.Contains(log, "building from source") {
		t.Errorf("the release install fell back to a source build")
	}
	if strings.Contains(log, containerci.KeyLine(stack.Client.KeyPEM)) {
		t.Errorf("a line of the client key is in act's log")
	}
	probes := containerci.Probes(log)
	during, after := probes["during"], probes["after"]
	if during == nil || after == nil || probes["start"] == nil || probes["serving"] == nil {
		t.Fatalf("probes missing (%v)\n%s", probes, log)
	}
	t.Logf("job start → agent serving (install + setup): %.2f s; key files a root job can read during the job %v, after %v; agent uids %v",
		probes["serving"].Uptime-probes["start"].Uptime, during.KeyFiles, after.KeyFiles, during.AgentUIDs)
	if len(during.AgentUIDs) != 1 || during.AgentUIDs[0] == 0 {
		t.Errorf("agent uids during the job = %v, want one, not 0", during.AgentUIDs)
	}
	if len(during.KeyFiles) != 1 || !strings.Contains(during.KeyFiles[0], "/private/") {
		t.Errorf("key files a root job can read during the job = %v, want exactly the agent's private copy", during.KeyFiles)
	}
	if len(after.KeyFiles) != 0 {
		t.Errorf("key files left after the report step: %v, want none", after.KeyFiles)
	}
	if t.Failed() {
		t.Logf("act log (goproxy-setup's lines):\n%s", relevant(log))
	}
}

// relevant returns the lines of act's log that come from the steps
// (output lines, "|"-prefixed) or say how a step ended.
func relevant(log string) string {
	var b strings.Builder
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "| ") && !strings.Contains(l, "| ---") || strings.Contains(l, "Failure") || strings.Contains(l, "Job ") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
