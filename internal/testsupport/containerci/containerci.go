package containerci

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/realci"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// ProbeScript is a POSIX sh snippet (BusyBox's too) a job runs to say, on
// lines starting "goproxy-setup-probe WHEN", which files on its container's
// disk hold a private key it can read, and the uid of every goproxy-setup
// process: what a job can reach, measured from inside it. /proc, /sys, /dev
// and /usr (the Go distribution's test keys) are left out, and so are the
// module cache /go/pkg/mod (third-party sources: docker/cli's testdata
// holds keys) and Go test files (the checked-out repository's own
// fixtures); the needle is
// put together at run time, so the script itself (in the job's YAML and
// the runner's script file) does not match.
func ProbeScript(when string) string {
	return fmt.Sprintf(`for d in /proc/[0-9]*; do if [ "$(cat $d/comm 2>/dev/null)" = goproxy-setup ]; then echo "goproxy-setup-probe %[1]s agent uid $(awk '/^Uid:/ {print $2}' $d/status)"; fi; done; `+
		`k="PRIVATE KEY"; k="$k-----"; find / \( -path /proc -o -path /sys -o -path /dev -o -path /usr -o -path /go/pkg/mod -o -name '*_test.go' \) -prune -o -type f -size -64k -print 2>/dev/null | while read -r f; do if grep -q -e "$k" "$f" 2>/dev/null; then echo "goproxy-setup-probe %[1]s key file $f"; fi; done || true; `+
		`echo "goproxy-setup-probe %[1]s uptime $(cut -d' ' -f1 /proc/uptime)"`, when)
}

// UptimeProbe is a line that prints the container's uptime (the host's
// clock since boot, in seconds) as "goproxy-setup-probe WHEN uptime S".
func UptimeProbe(when string) string {
	return fmt.Sprintf(`echo "goproxy-setup-probe %s uptime $(cut -d' ' -f1 /proc/uptime)"`, when)
}

// Probe is what the probe lines of one moment said.
type Probe struct {
	// KeyFiles are the files holding a private key the job could read.
	KeyFiles []string
	// AgentUIDs are the uids of the goproxy-setup processes.
	AgentUIDs []int
	// Uptime is the probe's clock (seconds since boot), 0 when absent.
	Uptime float64
	// Seen says the probe ran.
	Seen bool
}

// Probes parses the probe lines of a job log by moment.
func Probes(log string) map[string]*Probe {
	re := regexp.MustCompile(`goproxy-setup-probe (\S+) (agent uid|key file|uptime) (\S+)`)
	m := map[string]*Probe{}
	for _, g := range re.FindAllStringSubmatch(log, -1) {
		if strings.HasPrefix(g[3], "$") {
			continue // the script itself, echoed by the runner
		}
		p := m[g[1]]
		if p == nil {
			p = &Probe{}
			m[g[1]] = p
		}
		p.Seen = true
		switch g[2] {
		case "agent uid":
			if n, err := strconv.Atoi(g[3]); err == nil && !slices.Contains(p.AgentUIDs, n) {
				p.AgentUIDs = append(p.AgentUIDs, n)
			}
		case "key file":
			if !slices.Contains(p.KeyFiles, g[3]) {
				p.KeyFiles = append(p.KeyFiles, g[3])
			}
		case "uptime":
			p.Uptime, _ = strconv.ParseFloat(g[3], 64)
		}
	}
	return m
}

// FilesContaining returns the files under dir whose content holds needle.
func FilesContaining(t testing.TB, dir, needle string) []string {
	t.Helper()
	var hits []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), needle) {
			hits = append(hits, p)
		}
		return nil
	})
	return hits
}

// KeyLine is a line of the PEM key that appears nowhere else: the needle
// for FilesContaining and log checks.
func KeyLine(keyPEM []byte) string {
	return strings.Split(string(keyPEM), "\n")[1]
}

// GitLabRemote gives the project in dir the git remote origin
// https://gitlab.example/GROUP/project.git, so that gitlab-ci-local names
// the job's project GROUP/project (CI_PROJECT_DIR /builds/GROUP/project).
func GitLabRemote(t testing.TB, dir, group string) {
	t.Helper()
	cmd := exec.Command("git", "-C", dir, "remote", "add", "origin", "https://gitlab.example/"+group+"/project.git")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git remote add: %v\n%s", err, out)
	}
}

// PinTemplate returns the GitLab template as the release of rel pins it
// (scripts/pin-release.sh).
func PinTemplate(t testing.TB, rel realci.Release) []byte {
	t.Helper()
	root := testenv.RepoRoot(t)
	const templatePath = "examples/gitlab/goproxy-setup.gitlab-ci.yml"
	tree := t.TempDir()
	tmpl, err := os.ReadFile(filepath.Join(root, templatePath))
	if err != nil {
		t.Fatal(err)
	}
	realci.WriteFile(t, filepath.Join(tree, templatePath), tmpl)
	sumsFile := filepath.Join(t.TempDir(), "checksums.txt")
	realci.WriteFile(t, sumsFile, rel.Sums)
	if out, err := exec.Command("sh", filepath.Join(root, "scripts", "pin-release.sh"), realci.TestVersion, sumsFile, tree).CombinedOutput(); err != nil {
		t.Fatalf("pin-release.sh: %v\n%s", err, out)
	}
	pinned, err := os.ReadFile(filepath.Join(tree, templatePath))
	if err != nil {
		t.Fatal(err)
	}
	return pinned
}
