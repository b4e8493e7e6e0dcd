package ci

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/junit"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/actionrun"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s: got\n%s\nwant\n%s", name, got, want)
	}
}

const (
	canaryToken = "CANARY-capability-token-6f1d2a"
	canaryURL   = "http://127.0.0.1:41234/" + canaryToken
)

// fakeDiagnosis is a fixed diagnosis; its texts carry the canary to prove
// the renderers' output is redacted too. The zero value fails at tls; a
// diagnosis whose ladder found every layer working has an empty layer.
type fakeDiagnosis struct{ noLayer bool }

func (d fakeDiagnosis) Verdict() (string, string) {
	if d.noLayer {
		return "", "7 checks ok"
	}
	return "tls", "the server's certificate is signed by an unknown authority"
}

func (fakeDiagnosis) WriteMarkdown(w io.Writer) error {
	_, err := io.WriteString(w, "| Layer | Status |\n| --- | --- |\n| `tls` | fail |\n| `dns` | ok |\n\nproxy was "+canaryURL+"\n")
	return err
}

func (fakeDiagnosis) WriteText(w io.Writer) error {
	_, err := io.WriteString(w, "tls: FAIL unknown authority\ndns: ok\n")
	return err
}

func (fakeDiagnosis) WriteAnnotations(w io.Writer) error {
	_, err := io.WriteString(w, "::error title=tls::unknown authority at "+canaryURL+"\n")
	return err
}

func (fakeDiagnosis) WriteJUnit(w io.Writer) error {
	return junit.Write(w, &junit.Suites{Suites: []junit.Suite{{Name: "diagnose", Cases: []junit.Case{
		{Name: "tls", Classname: "diagnose", Time: "0.012", Failure: &junit.Message{Message: "unknown authority", Type: "tls", Text: "remedy: pass --ca-cert"}},
		{Name: "dns", Classname: "diagnose", Time: "0.001"},
	}}}})
}

func okOutcome() *Outcome {
	return &Outcome{
		Env: []EnvVar{
			{Name: "GOPROXY", Value: canaryURL},
			{Name: "GONOSUMDB", Value: "corp.example.com/*"},
			{Name: "GOFLAGS", Value: "-mod=mod"},
		},
		Secrets:   []string{canaryURL, canaryToken},
		Upstream:  "https://proxy.corp.example.com",
		StateDir:  "/runner/_temp/goproxy-setup",
		Addr:      "127.0.0.1:41234",
		Endpoints: []string{"proxy.corp.example.com:443"},
		Warm:      &Warm{Modules: 42, Hits: 40, Fetched: 2, Bytes: 123456, Duration: 1234 * time.Millisecond},
		Latency:   &Latency{P50: 12 * time.Millisecond, P90: 40 * time.Millisecond, P99: 1500 * time.Millisecond},
		Warnings:  []string{"running unseparated: no root"},
	}
}

func failedOutcome() *Outcome {
	return &Outcome{
		Secrets:    []string{canaryURL, canaryToken},
		Upstream:   "https://proxy.corp.example.com",
		StateDir:   "/runner/_temp/goproxy-setup",
		Err:        errkind.Mark(errkind.Unreachable, fmt.Errorf("warm: fetch example.com/m@v1.0.0 via %s: x509: unknown authority", canaryURL)),
		Diagnosis:  fakeDiagnosis{},
		ReportPath: "/runner/_temp/goproxy-setup/report.md",
	}
}

// startedOutcome is a setup whose agent was serving (Env, Addr set) when
// the warm-up failed with err.
func startedOutcome(err error, d Diagnosis) *Outcome {
	o := okOutcome()
	o.Warm, o.Latency, o.Warnings = nil, nil, nil
	o.Err, o.Diagnosis = err, d
	return o
}

// failureOutcomes are the failure model's cases (docs/architecture.md) as the front
// ends meet them: a transport failure with a diagnosis, one whose ladder
// found every layer working, a local fault (an unusable GOMODCACHE, with a
// stray diagnosis the renderers must not show), and an upstream that
// answered 403.
func failureOutcomes() map[string]*Outcome {
	return map[string]*Outcome{
		"failure": failedOutcome(),
		"unreachable-no-layer": startedOutcome(errkind.Mark(errkind.Unreachable,
			errors.New("warm: fetch example.com/m@v1.0.0: context deadline exceeded")), fakeDiagnosis{noLayer: true}),
		"local": startedOutcome(errkind.Mark(errkind.Local,
			errors.New("warm: module cache /home/u/go/pkg/mod: mkdir /home/u/go/pkg/mod/cache: permission denied: make GOMODCACHE writable or point it elsewhere")), fakeDiagnosis{noLayer: true}),
		"answered": startedOutcome(errkind.Mark(errkind.Answered,
			errors.New("warm: fetch example.com/m@v1.0.0: upstream answered 403 Forbidden: client certificate not allowed for example.com/*")), nil),
	}
}

func TestValidateVar(t *testing.T) {
	t.Parallel()
	cases := []struct {
		v  EnvVar
		ok bool
	}{
		{EnvVar{Name: "GOPROXY", Value: "http://127.0.0.1:1/x"}, true},
		{EnvVar{Name: "_x1", Value: ""}, true},
		{EnvVar{Name: "cache-hit", Value: "true"}, false},
		{EnvVar{Name: "-x", Value: "true"}, false},
		{EnvVar{Name: "1A", Value: "v"}, false},
		{EnvVar{Name: "", Value: "v"}, false},
		{EnvVar{Name: "A B", Value: "v"}, false},
		{EnvVar{Name: "A", Value: "line\nEVIL=1"}, false},
		{EnvVar{Name: "A", Value: "cr\rx"}, false},
		{EnvVar{Name: "A", Value: "nul\x00"}, false},
		{EnvVar{Name: "A", Value: "_GitHubActionsFileCommandDelimeter_"}, true},
	}
	for _, tc := range cases {
		err := ValidateVar(tc.v)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateVar(%q) = %v, want ok=%v", tc.v, err, tc.ok)
		}
		if err != nil {
			if errkind.Of(err) != errkind.BadInput || !errors.Is(err, ErrInvalid) {
				t.Errorf("ValidateVar(%q) error kind %v, want bad input wrapping ErrInvalid", tc.v, errkind.Of(err))
			}
			if len(tc.v.Value) > 3 && strings.Contains(err.Error(), tc.v.Value) {
				t.Errorf("ValidateVar(%q) error quotes the value: %v", tc.v, err)
			}
		}
	}
}

func TestFileCommandsCannotInject(t *testing.T) {
	t.Parallel()
	// The fixed delimiter of go-githubactions v1.3.0, and our own
	// prefix: values holding them still parse as one variable each.
	vars := []EnvVar{
		{Name: "A", Value: "_GitHubActionsFileCommandDelimeter_"},
		{Name: "B", Value: "ghadelimiter_"},
		{Name: "C", Value: "x=y<<z"},
	}
	var b bytes.Buffer
	if err := WriteFileCommands(&b, vars); err != nil {
		t.Fatal(err)
	}
	got, err := actionrun.ParseFileCommands(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(vars) {
		t.Fatalf("got %d variables %v, want %d", len(got), got, len(vars))
	}
	for i, kv := range got {
		if kv.Name != vars[i].Name || kv.Value != vars[i].Value {
			t.Errorf("got %v, want %v", kv, vars[i])
		}
	}
	// Two writes use different delimiters.
	var b2 bytes.Buffer
	if err := WriteFileCommands(&b2, vars[:1]); err != nil {
		t.Fatal(err)
	}
	if strings.SplitN(b2.String(), "\n", 2)[0] == strings.SplitN(b.String(), "\n", 2)[0] {
		t.Errorf("delimiter repeated across writes: %q", strings.SplitN(b.String(), "\n", 2)[0])
	}
	// A multi-line value is refused and nothing is written.
	var b3 bytes.Buffer
	if err := WriteFileCommands(&b3, []EnvVar{{Name: "OK", Value: "1"}, {Name: "EVIL", Value: "x\nGOPROXY=http://evil"}}); err == nil || b3.Len() != 0 {
		t.Errorf("got error %v and %d bytes written, want an error and nothing written", err, b3.Len())
	}
}

func TestNewGitHubOutsideGitHub(t *testing.T) {
	t.Parallel()
	_, err := NewGitHub(io.Discard, func(string) string { return "" })
	if err == nil {
		t.Fatal("got nil error, want one naming GITHUB_ENV")
	}
	for _, want := range []string{"GITHUB_ENV is not set", "GITHUB_OUTPUT is not set", "goproxy-setup run"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if errkind.Of(err) != errkind.BadInput {
		t.Errorf("got kind %v, want bad input", errkind.Of(err))
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestCommandPanicBecomesError(t *testing.T) {
	t.Parallel()
	gh, err := NewGitHub(failWriter{}, fakeEnv(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := gh.Mask("some-secret"); err == nil || !strings.Contains(err.Error(), "broken pipe") {
		t.Errorf("Mask on a broken writer = %v, want the write error", err)
	}
	if err := gh.Group("x"); err == nil {
		t.Error("Group on a broken writer = nil, want an error")
	}
}

// fakeEnv returns a getenv with the runner's files in a temp dir, plus
// extra variables.
func fakeEnv(t *testing.T, extra map[string]string) func(string) string {
	t.Helper()
	dir := t.TempDir()
	env := map[string]string{}
	for _, n := range []string{GitHubEnvFile, GitHubOutputFile, GitHubSummaryFile} {
		env[n] = filepath.Join(dir, strings.ToLower(n))
	}
	for k, v := range extra {
		env[k] = v
	}
	return func(k string) string { return env[k] }
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// maskFirst checks that every secret has its ::add-mask:: line before any
// other line that shows it (other add-mask lines are consumed by the
// runner and never shown).
func maskFirst(t *testing.T, log string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		masked := false
		for _, line := range strings.Split(log, "\n") {
			if line == "::add-mask::"+s {
				masked = true
			}
			if strings.Contains(line, s) && !strings.HasPrefix(line, "::add-mask::") && !masked {
				t.Errorf("secret %q appears in %q before its ::add-mask:: line", s, line)
			}
		}
		if !masked {
			t.Errorf("secret %q is never masked", s)
		}
	}
}

func TestGitHubPublish(t *testing.T) {
	t.Parallel()
	cases := map[string]*Outcome{"success": okOutcome()}
	for name, o := range failureOutcomes() {
		cases[name] = o
	}
	for name, o := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			getenv := fakeEnv(t, nil)
			var out bytes.Buffer
			gh, err := NewGitHub(&out, getenv)
			if err != nil {
				t.Fatal(err)
			}
			if err := gh.Publish(o); err != nil {
				t.Fatal(err)
			}
			log := out.String()
			maskFirst(t, log, canaryURL, canaryToken)
			golden(t, "github-"+name+".log.golden", log)
			summary := readFile(t, getenv(GitHubSummaryFile))
			golden(t, "github-"+name+".summary.golden", summary)
			if strings.Contains(summary, canaryToken) {
				t.Errorf("summary shows the capability token")
			}
			env, err := actionrun.ParseFileCommands([]byte(readFile(t, getenv(GitHubEnvFile))))
			if err != nil {
				t.Fatal(err)
			}
			outputs, err := actionrun.ParseFileCommands([]byte(readFile(t, getenv(GitHubOutputFile))))
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, kv := range append(env, outputs...) {
				got[kv.Name] = kv.Value
			}
			var want map[string]string
			if o.Err == nil {
				want = map[string]string{"GOPROXY": canaryURL, "GONOSUMDB": "corp.example.com/*", "GOFLAGS": "-mod=mod", StateDirVar: "/runner/_temp/goproxy-setup",
					"goproxy": canaryURL, "modules": "42", "cache-hit": "false", "report": ""}
			} else {
				// A failed setup exports no environment and no
				// figures that could pass for success.
				want = map[string]string{StateDirVar: "/runner/_temp/goproxy-setup",
					"goproxy": "", "modules": "", "cache-hit": "false", "report": o.ReportPath}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("env and outputs = %v, want %v", got, want)
			}
			checkFailureShown(t, o, log+summary)
		})
	}
}

// checkFailureShown checks what every front end must say about a failed
// setup: its kind, never an empty failing layer, and a ladder verdict only
// for a transport failure.
func checkFailureShown(t *testing.T, o *Outcome, text string) {
	t.Helper()
	if o.Err == nil {
		return
	}
	f := o.failure()
	if !strings.Contains(text, f.name) {
		t.Errorf("output does not name the kind %q:\n%s", f.name, text)
	}
	for _, bad := range []string{"failing layer: :", "Failing layer: —", "Failing layer: ``"} {
		if strings.Contains(text, bad) {
			t.Errorf("output shows an empty failing layer %q:\n%s", bad, text)
		}
	}
	if k := errkind.Of(o.Err); k != errkind.Unreachable && (strings.Contains(text, "ailing layer") || strings.Contains(text, "tls: FAIL") || strings.Contains(text, "checks ok")) {
		t.Errorf("a %v failure is shown as a network diagnosis:\n%s", k, text)
	}
}

func TestGitHubPublishWithoutSummaryFile(t *testing.T) {
	t.Parallel()
	getenv := fakeEnv(t, map[string]string{GitHubSummaryFile: ""})
	var out bytes.Buffer
	gh, err := NewGitHub(&out, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if err := gh.Publish(okOutcome()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "GITHUB_STEP_SUMMARY is not set") || !strings.Contains(out.String(), "## goproxy-setup") {
		t.Errorf("log lacks the summary fallback:\n%s", out.String())
	}
	if strings.Contains(out.String(), "## goproxy-setup\n") && strings.Contains(out.String(), canaryToken+"`") {
		t.Errorf("fallback summary shows the token")
	}
}

func TestGitHubPublishStats(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		stats Stats
		fail  bool
	}{
		{"clean", Stats{Requests: 120, Bytes: 3 << 20, Latency: Latency{P50: 5 * time.Millisecond, P90: 20 * time.Millisecond, P99: 90 * time.Millisecond}}, false},
		{"failed-after-setup", Stats{Requests: 7, Bytes: 2048, ErrorsByLayer: map[string]int64{"tls": 2, "http": 1}, FailedAfterSetup: 3}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			getenv := fakeEnv(t, nil)
			var out bytes.Buffer
			gh, err := NewGitHub(&out, getenv)
			if err != nil {
				t.Fatal(err)
			}
			err = gh.PublishStats(&tc.stats)
			if (err != nil) != tc.fail {
				t.Fatalf("PublishStats = %v, want failure %v", err, tc.fail)
			}
			if tc.fail && errkind.Of(err) != errkind.Unreachable {
				t.Errorf("got kind %v, want unreachable", errkind.Of(err))
			}
			golden(t, "stats-"+tc.name+".summary.golden", readFile(t, getenv(GitHubSummaryFile)))
			golden(t, "stats-"+tc.name+".log.golden", out.String())
		})
	}
}

func TestWriteEnvShellRoundTrip(t *testing.T) {
	t.Parallel()
	vars := []EnvVar{{Name: "A", Value: "it's $HOME `x` \"q\" \\"}, {Name: "B", Value: ""}, {Name: "C", Value: "a b"}}
	var b bytes.Buffer
	if err := WriteEnv(&b, FormatShell, vars); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "--noprofile", "--norc", "-c", `eval "$SCRIPT"; printf '%s|%s|%s' "$A" "$B" "$C"`)
	cmd.Env = []string{"SCRIPT=" + b.String(), "HOME=/nowhere"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := vars[0].Value + "||a b"; string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}
	for _, f := range []Format{FormatShell, FormatDotenv, FormatJSON} {
		var b bytes.Buffer
		if err := WriteEnv(&b, f, []EnvVar{{Name: "X", Value: "a\nY=b"}}); err == nil || b.Len() != 0 {
			t.Errorf("%s: got %v and %q, want an error and nothing written", f, err, b.String())
		}
	}
	if _, err := ParseFormat("yaml"); errkind.Of(err) != errkind.BadInput {
		t.Errorf("ParseFormat(yaml) = %v, want bad input", err)
	}
}

// validateJUnit validates path against the Jenkins/Surefire JUnit schema
// subset in testdata with xmllint.
func validateJUnit(t *testing.T, path string) {
	t.Helper()
	out, err := exec.Command("xmllint", "--noout", "--schema", filepath.Join("testdata", "junit.xsd"), path).CombinedOutput()
	if err != nil {
		t.Errorf("xmllint --schema junit.xsd %s: %v\n%s", path, err, out)
	}
}

func TestGitLabPublish(t *testing.T) {
	t.Parallel()
	cases := map[string]*Outcome{"success": okOutcome()}
	for name, o := range failureOutcomes() {
		cases[name] = o
	}
	for name, o := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var stdout, stderr bytes.Buffer
			dotenv, junitFile := filepath.Join(dir, "goproxy-setup.env"), filepath.Join(dir, "junit.xml")
			gl := NewGitLab(GitLabConfig{Log: &stderr, Stdout: &stdout, Dotenv: dotenv, JUnit: junitFile,
				Now: func() time.Time { return time.Unix(1700000000, 0) }})
			if err := gl.Publish(o); err != nil {
				t.Fatal(err)
			}
			golden(t, "gitlab-"+name+".stdout.golden", stdout.String())
			golden(t, "gitlab-"+name+".stderr.golden", stderr.String())
			golden(t, "gitlab-"+name+".env.golden", readFile(t, dotenv))
			golden(t, "gitlab-"+name+".junit.golden", readFile(t, junitFile))
			validateJUnit(t, junitFile)
			for name, s := range map[string]string{"stderr": stderr.String(), "dotenv": readFile(t, dotenv), "junit": readFile(t, junitFile)} {
				if strings.Contains(s, canaryToken) {
					t.Errorf("%s shows the capability token", name)
				}
			}
			if !strings.HasPrefix(stderr.String(), "\x1b[0Ksection_start:1700000000:goproxy_setup_report") {
				t.Errorf("stderr does not open a section: %q", stderr.String())
			}
			checkFailureShown(t, o, stderr.String())
			if o.Err == nil {
				return
			}
			var suites junit.Suites
			if err := xml.Unmarshal([]byte(readFile(t, junitFile)), &suites); err != nil {
				t.Fatal(err)
			}
			if suites.Failures == 0 {
				t.Errorf("JUnit report of a failed setup has 0 failures:\n%s", readFile(t, junitFile))
			}
			if strings.Contains(readFile(t, junitFile), "<failure") && errkind.Of(o.Err) != errkind.Unreachable && !strings.Contains(readFile(t, junitFile), o.failure().name+": ") {
				t.Errorf("JUnit failure does not name the kind %q:\n%s", o.failure().name, readFile(t, junitFile))
			}
			env := readFile(t, dotenv)
			for _, bad := range []string{"MODULES=", "CACHE_HIT=", "GONOSUMDB=", "GOFLAGS="} {
				if strings.Contains(env, bad) {
					t.Errorf("dotenv of a failed setup exports %s:\n%s", bad, env)
				}
			}
			if want := "GOPROXY_SETUP_FAILURE=" + o.failure().slug + "\n"; !strings.Contains(env, want) {
				t.Errorf("dotenv lacks %q:\n%s", want, env)
			}
			if stdout.Len() != 0 {
				t.Errorf("a failed setup printed export lines: %q", stdout.String())
			}
		})
	}
}

func TestSetupJUnitValidates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := okOutcome()
	o.Warm = nil
	bad := failedOutcome()
	bad.Diagnosis = nil
	for i, o := range []*Outcome{okOutcome(), o, bad} {
		var b bytes.Buffer
		if err := WriteSetupJUnit(&b, o, time.Unix(0, 0), &Redactor{}); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, fmt.Sprintf("j%d.xml", i))
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		validateJUnit(t, path)
	}
}

func TestCode(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"":        "—",
		"a|b":     "`a\\|b`",
		"x`y":     "``x`y``",
		"`x":      "`` `x ``",
		"two\nln": "`two ln`",
	}
	for in, want := range cases {
		if got := code(in); got != want {
			t.Errorf("code(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestResolvePath(t *testing.T) {
	t.Parallel()
	cases := []struct{ path, base, dir, want string }{
		{"", "/p", "/s", ""},
		{"/abs/r.xml", "/p", "/s", "/abs/r.xml"},
		{"r.xml", "/p", "/s", "/p/r.xml"},
		{"r.xml", "", "/s", "/s/r.xml"},
	}
	for _, tc := range cases {
		if got := ResolvePath(tc.path, tc.base, tc.dir); got != tc.want {
			t.Errorf("ResolvePath(%q, %q, %q) = %q, want %q", tc.path, tc.base, tc.dir, got, tc.want)
		}
	}
}
