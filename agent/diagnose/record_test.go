//go:build record

package diagnose

// The recorder runs every fault of the matrix against the real go command
// (go mod download) and against the ladder, and writes the comparison
// table docs/diagnose.md carries. It must run inside a network namespace of
// its own whose resolv.conf points at 127.0.0.1, so that the go command's
// resolver asks the test DNS server (which then listens on port 53):
//
//	ip netns add gps-diag && ip -n gps-diag link set lo up
//	mkdir -p /etc/netns/gps-diag && echo 'nameserver 127.0.0.1' > /etc/netns/gps-diag/resolv.conf
//	ip netns exec gps-diag go test -tags record -run TestRecordGoModDownload -v ./agent/diagnose/
//	ip netns del gps-diag; rm -r /etc/netns/gps-diag

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

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

func TestRecordGoModDownload(t *testing.T) {
	dnsListenAddr = "127.0.0.1:53"
	type row struct{ name, goSays, weSay string }
	var rows []row
	record := func(t *testing.T, name string, targets []Target, o Options) {
		r := Run(context.Background(), targets, o)
		v := r.Verdict
		we := fmt.Sprintf("**%s %s**: %s<br>fix: %s", v.Layer, v.Status, mdEscape(normalize(detailOf(r, v))), mdEscape(normalize(v.Remedy)))
		if v.Status == StatusOK {
			we = "**ok**: " + v.Summary
		}
		rows = append(rows, row{name, runGo(t, targets[0], o), we})
	}
	for _, tc := range faultCases() {
		t.Run(tc.name, func(t *testing.T) {
			relaxClientAuth = tc.wantLayer != LayerClientCert
			targets, o := tc.setup(t)
			record(t, tc.name, targets, o)
		})
	}
	stack := testenv.StartMTLSStack(t, []testenv.Module{{Path: "example.com/m", Version: "v1.0.0"}})
	for _, tc := range nginxCases(stack) {
		if tc.wantStatus == StatusOK {
			continue
		}
		t.Run("nginx "+tc.name, func(t *testing.T) {
			tg := target(stack.URL+"/", stack.CA, tc.client(t))
			record(t, tc.name+" (nginx)", []Target{tg}, Options{Env: envMap(nil), Step: 2 * time.Second, Total: 8 * time.Second})
		})
	}
	var b strings.Builder
	b.WriteString("| fault | `go mod download` says | `goproxy-setup diagnose` says |\n|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r.name, r.goSays, r.weSay)
	}
	if err := os.WriteFile(filepath.Join("testdata", "gomod-comparison.md"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", b.String())
}

var (
	portRE = regexp.MustCompile(`(127\.0\.0\.1|proxy\.test|nope\.test|\[::1\]|::1):(\d\d\d+)`)
	caRE   = regexp.MustCompile(`test (root|intermediate) [0-9a-f]{8}`)
	dateRE = regexp.MustCompile(`Date: [^)]*`)
	tmpRE  = regexp.MustCompile(`/tmp/[^ :\n]+`)
	timeRE = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)
)

// runGo runs go mod download against the target's URL with the target's
// environment; the CA root goes to SSL_CERT_FILE (what --ca-cert is to us).
func runGo(t *testing.T, tg Target, o Options) string {
	modcache := t.TempDir()
	env := testenv.GoEnv(t, modcache)
	env = append(env, "GOPROXY="+tg.URL.String())
	for _, n := range []string{"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"} {
		if v := o.Env(n); v != "" {
			env = append(env, n+"="+v)
		}
	}
	if tg.Roots != nil {
		if pem, ok := rootPEMs.Load(tg.Roots); ok {
			f := filepath.Join(t.TempDir(), "roots.pem")
			if err := os.WriteFile(f, pem.([]byte), 0o644); err != nil {
				t.Fatal(err)
			}
			env = append(env, "SSL_CERT_FILE="+f)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "mod", "download", testModule)
	cmd.Dir = t.TempDir()
	cmd.Env = env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start).Round(time.Second)
	s := normalize(strings.TrimSpace(string(out)))
	switch {
	case ctx.Err() != nil:
		s = fmt.Sprintf("(nothing; still waiting after %s, killed)", took)
	case err == nil && s == "":
		s = fmt.Sprintf("(nothing: success, exit 0, %s)", took)
	default:
		s = "`" + strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", "`<br>`") + "`"
		if took >= 2*time.Second {
			s += fmt.Sprintf(" (after %s)", took)
		}
	}
	return s
}

// normalize replaces what changes from run to run (ports, temp paths, times,
// CA name suffixes) so the table is stable.
func normalize(s string) string {
	s = portRE.ReplaceAllString(s, "$1:PORT")
	s = tmpRE.ReplaceAllString(s, "…")
	s = timeRE.ReplaceAllString(s, "TIME")
	s = caRE.ReplaceAllString(s, "test $1")
	s = dateRE.ReplaceAllString(s, "Date: …")
	return s
}
