package actionrun

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testAction = `name: t
inputs:
  greeting:
    description: d
    default: hello
  who:
    description: d
    required: true
outputs:
  said:
    description: d
    value: ${{ steps.say.outputs.said }}
runs:
  using: composite
  steps:
    - id: say
      shell: bash
      env:
        GREETING: ${{ inputs.greeting }}
        WHO: ${{ inputs.who }}
      run: |
        echo "::add-mask::$WHO"
        echo "said=$GREETING $WHO" >> "$GITHUB_OUTPUT"
        printf 'MULTI<<EOF_X\nline1\nline2\nEOF_X\n' >> "$GITHUB_ENV"
        echo "CARRIED=from-step-1" >> "$GITHUB_ENV"
        mkdir -p "$RUNNER_TEMP/bin" && printf '#!/bin/sh\necho tool-ran\n' > "$RUNNER_TEMP/bin/mytool" && chmod +x "$RUNNER_TEMP/bin/mytool"
        echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
        echo "# summary" >> "$GITHUB_STEP_SUMMARY"
        echo "::warning title=T::careful"
    - shell: bash
      working-directory: ${{ github.action_path }}
      env:
        WHO: ${{ inputs.who }}
      run: |
        test "$CARRIED" = from-step-1
        test "$(pwd)" = "$GITHUB_ACTION_PATH"
        test -z "${INPUT_WHO:-}"
        mytool
        echo "the secret is $WHO"
    - shell: bash
      if: ${{ always() }}
      run: echo always
`

func writeAction(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "action.yml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func newRunner(t *testing.T) *Runner {
	t.Helper()
	return New(t.TempDir(), t.TempDir(), []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()})
}

func TestRunAction(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := writeAction(t, testAction)
	r := newRunner(t)
	res, err := r.RunAction(ctx, dir, map[string]string{"who": "s3cr3t-canary"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Err != nil {
		t.Fatalf("action failed: %v\n%s", res.Err, strings.Join(r.Lines(), "\n"))
	}
	if got, want := res.Outputs["said"], "hello s3cr3t-canary"; got != want {
		t.Errorf("output said = %q, want %q", got, want)
	}
	if got, want := r.Env["MULTI"], "line1\nline2"; got != want {
		t.Errorf("env MULTI = %q, want %q", got, want)
	}
	log := r.MaskedLog()
	if strings.Contains(log, "s3cr3t-canary") {
		t.Errorf("masked log shows the secret:\n%s", log)
	}
	for _, want := range []string{"tool-ran", "the secret is ***", "always"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if v := r.MaskViolations(); len(v) != 0 {
		t.Errorf("mask violations: %v", v)
	}
	if got := r.Summary(); got != "# summary\n" {
		t.Errorf("summary = %q, want %q", got, "# summary\n")
	}
	an := r.Annotations()
	if len(an) != 1 || an[0].Command != "warning" || an[0].Message != "careful" {
		t.Errorf("annotations = %+v, want one warning 'careful'", an)
	}
}

func TestRunActionRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, action string
		with         map[string]string
		want         string
	}{
		{"unknown input", testAction, map[string]string{"who": "x", "gretting": "y"}, `unexpected input "gretting"`},
		{"missing required", testAction, nil, `input "who" is required`},
		{"unmodelled expression", strings.Replace(testAction, "${{ inputs.greeting }}", "${{ github.token }}", 1), map[string]string{"who": "x"}, `"github.token" is not modelled`},
		{"docker action", "name: d\nruns:\n  using: docker\n", nil, "only composite"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := newRunner(t).RunAction(context.Background(), writeAction(t, tc.action), tc.with)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestFailedStepStopsAllButAlways(t *testing.T) {
	t.Parallel()
	action := `name: f
runs:
  using: composite
  steps:
    - shell: bash
      run: echo "before"; exit 3
    - shell: bash
      run: echo never
    - shell: bash
      if: failure()
      run: echo cleanup
`
	r := newRunner(t)
	res, err := r.RunAction(context.Background(), writeAction(t, action), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Err == nil || !strings.Contains(res.Err.Error(), "exit status 3") {
		t.Errorf("got action error %v, want exit status 3", res.Err)
	}
	if !res.Steps[1].Skipped || res.Steps[2].Skipped {
		t.Errorf("got skipped = %v, %v; want true, false", res.Steps[1].Skipped, res.Steps[2].Skipped)
	}
	log := r.MaskedLog()
	if strings.Contains(log, "never") || !strings.Contains(log, "cleanup") {
		t.Errorf("log = %q, want cleanup and not never", log)
	}
}

func TestMaskViolation(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	sr := r.RunScript(context.Background(), "echo leaked-value-1234; echo ::add-mask::leaked-value-1234", nil)
	if sr.Err != nil {
		t.Fatal(sr.Err)
	}
	if v := r.MaskViolations(); len(v) != 1 {
		t.Errorf("got %d violations, want 1: %v", len(v), v)
	}
}

func TestUndetachedChildIsReported(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r := newRunner(t)
	sr := r.RunScript(ctx, "sleep 30 & echo started", nil)
	if sr.Err == nil || !strings.Contains(sr.Err.Error(), "still open") {
		t.Errorf("got %v, want the open-stream error", sr.Err)
	}
}

func TestParseFileCommands(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		want     []KV
		wantErr  bool
	}{
		{"plain", "A=1\nB=x=y\n", []KV{{"A", "1"}, {"B", "x=y"}}, false},
		{"heredoc", "A<<D\nl1\nl2\nD\nB=2\n", []KV{{"A", "l1\nl2"}, {"B", "2"}}, false},
		{"heredoc with = in name side", "A<<D=\nv\nD=\n", []KV{{"A", "v"}}, false},
		{"unclosed", "A<<D\nv\n", nil, true},
		{"garbage", "just text\n", nil, true},
		{"bad name", "1A=x\n", nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseFileCommands([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("got error %v, want error %v", err, tc.wantErr)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("got %v, want %v", got[i], tc.want[i])
				}
			}
		})
	}
}
