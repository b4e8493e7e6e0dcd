package depcheck

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A third-party action is pinned by the full commit SHA that its tag named
// when it was pinned, with the tag in ratchet's comment form, e.g.
//
//	uses: actions/checkout@11d5960a326750d5838078e36cf38b85af677262 # ratchet:actions/checkout@v4
//
// A tag can be moved by whoever controls the action's repository; a commit
// cannot. The SHA is read from the action repository's own tag (git
// rev-parse 'refs/tags/v4^{commit}'), never typed by hand.
var (
	usesLine   = regexp.MustCompile(`^\s*(?:-\s+)?uses:\s*(\S+)(.*)$`)
	pinnedUses = regexp.MustCompile(`^([A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+)@([0-9a-f]{40})$`)
	ratchet    = regexp.MustCompile(`^\s*#\s*ratchet:(\S+)@(\S+)\s*$`)
	// latestImage matches an image reference with the :latest tag.
	latestImage = regexp.MustCompile(`[a-z0-9.-]+(?:/[a-z0-9._-]+)+:latest\b`)
)

// checkUses returns what is wrong with one `uses:` value and the rest of its
// line, or "" when it is local or pinned.
func checkUses(ref, rest string) string {
	switch {
	case strings.HasPrefix(ref, "./"):
		return "" // the action's own tree: pinned by the workflow's commit
	case strings.HasPrefix(ref, "docker://"):
		if !strings.Contains(ref, "@sha256:") {
			return fmt.Sprintf("%s: pin a docker action by digest (docker://IMAGE@sha256:...)", ref)
		}
		return ""
	}
	m := pinnedUses.FindStringSubmatch(ref)
	if m == nil {
		return fmt.Sprintf("%s: pin by commit SHA with the tag in a comment: uses: ACTION@<40-hex sha of the tag> # ratchet:ACTION@TAG", ref)
	}
	c := ratchet.FindStringSubmatch(rest)
	if c == nil {
		return fmt.Sprintf("%s: the pinned SHA needs its tag in a comment: # ratchet:%s@TAG", ref, m[1])
	}
	if c[1] != m[1] {
		return fmt.Sprintf("%s: the ratchet comment names %s, want %s", ref, c[1], m[1])
	}
	return ""
}

// checkPins reads one workflow, action or Dockerfile and returns a
// file:line message for every unpinned action or :latest image.
func checkPins(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var bad []string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if m := usesLine.FindStringSubmatch(line); m != nil {
			if msg := checkUses(strings.Trim(m[1], `"'`), m[2]); msg != "" {
				bad = append(bad, fmt.Sprintf("%s:%d: %s", path, n, msg))
			}
		}
		if img := latestImage.FindString(line); img != "" {
			bad = append(bad, fmt.Sprintf("%s:%d: %s: pin the image by version tag or digest, not :latest", path, n, img))
		}
	}
	return bad, sc.Err()
}

func TestCheckUses(t *testing.T) {
	t.Parallel()
	const sha = "11d5960a326750d5838078e36cf38b85af677262"
	cases := []struct {
		ref, rest string
		ok        bool
	}{
		{"./", "", true},
		{"./report", "", true},
		{"actions/checkout@" + sha, " # ratchet:actions/checkout@v4", true},
		{"anchore/sbom-action/download-syft@" + sha, " # ratchet:anchore/sbom-action/download-syft@v0", true},
		{"actions/checkout@v4", "", false},
		{"actions/checkout@" + sha[:12], " # ratchet:actions/checkout@v4", false},
		{"actions/checkout@" + sha, "", false},
		{"actions/checkout@" + sha, " # v4", false},
		{"actions/checkout@" + sha, " # ratchet:actions/setup-go@v5", false},
		{"docker://alpine:3.20", "", false},
		{"docker://alpine@sha256:" + strings.Repeat("a", 64), "", true},
	}
	for _, tc := range cases {
		if got := checkUses(tc.ref, tc.rest); (got == "") != tc.ok {
			t.Errorf("checkUses(%q, %q): got %q, want ok=%v", tc.ref, tc.rest, got, tc.ok)
		}
	}
	for _, line := range []string{"FROM ghcr.io/actions/actions-runner:latest", "ARG RUNNER_IMAGE=ghcr.io/actions/actions-runner:latest", "  --base ghcr.io/actions/actions-runner:latest \\"} {
		if !latestImage.MatchString(line) {
			t.Errorf("latestImage: %q not matched", line)
		}
	}
}

// TestEverythingPinned keeps every third-party action in the workflows,
// the actions and the examples pinned by commit SHA, and no image base at
// :latest (the release job has contents: write).
func TestEverythingPinned(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	var files []string
	for _, dir := range []string{".github", "examples", "report"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if ext := filepath.Ext(p); !d.IsDir() && (ext == ".yml" || ext == ".yaml" || d.Name() == "Dockerfile") {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	files = append(files, filepath.Join(root, "action.yml"), filepath.Join(root, "Dockerfile"))
	if len(files) < 8 {
		t.Fatalf("found %d workflow/action files, want the release workflow, action.yml, report/ and examples: the walk is broken", len(files))
	}
	for _, f := range files {
		bad, err := checkPins(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bad {
			t.Error(b)
		}
	}
}
