// Package actionrun runs a composite GitHub Action's steps on this machine
// the way GitHub's runner does, so tests can prove action.yml by running it:
// inputs with their defaults, the ${{ }} expressions action.yml uses
// (inputs.*, github.action_path, github.action_ref and
// github.action_repository (empty, as for a local action), github.workspace,
// runner.temp, env.*,
// steps.<id>.outputs.*, and the status functions in `if:`), a fresh
// GITHUB_ENV, GITHUB_OUTPUT, GITHUB_PATH and GITHUB_STEP_SUMMARY file per
// step, read back after it as the runner does (NAME=value and NAME<<DELIM
// heredocs), the environment carried to the next step, `bash --noprofile
// --norc -eo pipefail` for `shell: bash` and `sh -e` for `shell: sh` (as
// GitHub runs them), and workflow commands in the log
// (::add-mask::, ::group::, annotations).
//
// It is a test harness, not a reimplementation of the runner: expressions
// outside those forms are an error, so action.yml cannot silently depend on
// something the harness does not model. Like GitHub, it sets no INPUT_*
// variables for composite steps (the runner does so only for JavaScript and
// Docker actions), which proves the action passes its inputs through env:.
package actionrun

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Action is the part of action.yml the runner reads.
type Action struct {
	Name    string                  `yaml:"name"`
	Inputs  map[string]ActionInput  `yaml:"inputs"`
	Outputs map[string]ActionOutput `yaml:"outputs"`
	Runs    struct {
		Using string `yaml:"using"`
		Steps []Step `yaml:"steps"`
	} `yaml:"runs"`
}

// ActionInput is one input of action.yml.
type ActionInput struct {
	Description string `yaml:"description"`
	Required    bool   `yaml:"required"`
	Default     string `yaml:"default"`
}

// ActionOutput is one output of action.yml.
type ActionOutput struct {
	Description string `yaml:"description"`
	Value       string `yaml:"value"`
}

// Step is one composite step.
type Step struct {
	ID               string            `yaml:"id"`
	Name             string            `yaml:"name"`
	If               string            `yaml:"if"`
	Run              string            `yaml:"run"`
	Shell            string            `yaml:"shell"`
	WorkingDirectory string            `yaml:"working-directory"`
	Env              map[string]string `yaml:"env"`
	Uses             string            `yaml:"uses"`
}

// LoadAction reads dir/action.yml (or action.yaml).
func LoadAction(dir string) (*Action, error) {
	data, err := os.ReadFile(filepath.Join(dir, "action.yml"))
	if errors.Is(err, os.ErrNotExist) {
		data, err = os.ReadFile(filepath.Join(dir, "action.yaml"))
	}
	if err != nil {
		return nil, fmt.Errorf("read action: %w", err)
	}
	var a Action
	if err := yaml.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("parse action in %s: %w", dir, err)
	}
	if a.Runs.Using != "composite" {
		return nil, fmt.Errorf("action in %s: runs.using is %q: only composite actions run here", dir, a.Runs.Using)
	}
	return &a, nil
}

// Annotation is a workflow command the log carried: error, warning,
// notice, debug, group or endgroup.
type Annotation struct {
	Command    string
	Properties string
	Message    string
}

// Runner is one job: its environment is carried from step to step.
type Runner struct {
	// Workspace is GITHUB_WORKSPACE, the default working directory.
	Workspace string
	// Temp is RUNNER_TEMP; the per-step files are created below it.
	Temp string
	// Env is the job's environment, updated from GITHUB_ENV after each
	// step. Set the base environment (PATH, HOME, GOCACHE, ...) before
	// the first step.
	Env map[string]string
	// Log receives every line the steps print, unmasked, as it comes.
	Log io.Writer

	mu          sync.Mutex
	lines       []string
	masks       []string
	maskAt      map[string]int
	annotations []Annotation
	summary     bytes.Buffer
	paths       []string
	stepN       int
}

// New returns a runner for a job with the given workspace and temp dir and
// the base environment (KEY=VALUE entries).
func New(workspace, temp string, base []string) *Runner {
	env := map[string]string{}
	for _, kv := range base {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	env["CI"] = "true"
	env["GITHUB_ACTIONS"] = "true"
	env["RUNNER_OS"] = "Linux"
	env["RUNNER_TEMP"] = temp
	env["GITHUB_WORKSPACE"] = workspace
	return &Runner{Workspace: workspace, Temp: temp, Env: env, Log: io.Discard, maskAt: map[string]int{}}
}

// Lines returns every log line so far, unmasked.
func (r *Runner) Lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

// MaskedLog returns the log as GitHub shows it: workflow commands
// consumed, masked values replaced by "***".
func (r *Runner) MaskedLog() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	masks := append([]string(nil), r.masks...)
	sort.Slice(masks, func(i, j int) bool { return len(masks[i]) > len(masks[j]) })
	var b strings.Builder
	for _, l := range r.lines {
		if strings.HasPrefix(l, "::add-mask::") {
			continue
		}
		for _, m := range masks {
			l = strings.ReplaceAll(l, m, "***")
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

// Masks returns the values registered with ::add-mask::, in order.
func (r *Runner) Masks() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.masks...)
}

// MaskViolations returns, for each masked value, the lines printed before
// its ::add-mask:: that contained it: a secret shown in the log before the
// runner knew to hide it.
func (r *Runner) MaskViolations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.masks {
		for i := 0; i < r.maskAt[m]; i++ {
			if strings.Contains(r.lines[i], m) && !strings.HasPrefix(r.lines[i], "::add-mask::") {
				out = append(out, fmt.Sprintf("line %d shows a value before it is masked at line %d", i+1, r.maskAt[m]+1))
			}
		}
	}
	return out
}

// Annotations returns the workflow commands seen so far, add-mask
// excluded.
func (r *Runner) Annotations() []Annotation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Annotation(nil), r.annotations...)
}

// Summary returns the job summary: every step's GITHUB_STEP_SUMMARY.
func (r *Runner) Summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.summary.String()
}

var commandRE = regexp.MustCompile(`^::([a-z-]+)(?: ([^:]*))?::(.*)$`)

// unescapeData undoes the workflow-command data escaping.
func unescapeData(s string) string {
	return strings.NewReplacer("%0D", "\r", "%0A", "\n", "%25", "%").Replace(s)
}

func (r *Runner) addLine(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, line)
	fmt.Fprintln(r.Log, line)
	m := commandRE.FindStringSubmatch(line)
	if m == nil {
		return
	}
	switch m[1] {
	case "add-mask":
		v := unescapeData(m[3])
		if v == "" {
			return
		}
		if _, seen := r.maskAt[v]; !seen {
			r.maskAt[v] = len(r.lines) - 1
			r.masks = append(r.masks, v)
		}
	case "error", "warning", "notice", "debug", "group", "endgroup":
		r.annotations = append(r.annotations, Annotation{Command: m[1], Properties: m[2], Message: unescapeData(m[3])})
	}
}

// StepResult is what one step left behind.
type StepResult struct {
	// ID is the step's id.
	ID string
	// Outputs are read from its GITHUB_OUTPUT.
	Outputs map[string]string
	// Env are the variables it wrote to GITHUB_ENV.
	Env map[string]string
	// Skipped is true when its `if:` was false.
	Skipped bool
	// Err is its failure: a non-zero exit or a malformed file command.
	Err error
}

// ActionResult is a composite action's run.
type ActionResult struct {
	// Steps are the composite steps, in order.
	Steps []*StepResult
	// Outputs are the action's outputs.
	Outputs map[string]string
	// Err is the first failed step's error.
	Err error
}

// RunAction runs the composite action in dir with the inputs in with, like
// a workflow step `uses: <dir>` with `with:`. An input the action does not
// declare, or a required one left out, is an error before any step runs.
func (r *Runner) RunAction(ctx context.Context, dir string, with map[string]string) (*ActionResult, error) {
	a, err := LoadAction(dir)
	if err != nil {
		return nil, err
	}
	inputs := map[string]string{}
	for name, in := range a.Inputs {
		inputs[name] = in.Default
	}
	var bad []error
	for name, v := range with {
		if _, ok := a.Inputs[name]; !ok {
			bad = append(bad, fmt.Errorf("unexpected input %q: the action declares no such input", name))
			continue
		}
		inputs[name] = v
	}
	for name, in := range a.Inputs {
		if in.Required && inputs[name] == "" {
			bad = append(bad, fmt.Errorf("input %q is required", name))
		}
	}
	if err := errors.Join(bad...); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	ctxData := &exprContext{inputs: inputs, actionPath: abs, runner: r, steps: map[string]*StepResult{}}
	res := &ActionResult{Outputs: map[string]string{}}
	for i, s := range a.Runs.Steps {
		if s.Uses != "" {
			return nil, fmt.Errorf("step %d uses %q: nested actions are not modelled", i+1, s.Uses)
		}
		sr := &StepResult{ID: s.ID}
		res.Steps = append(res.Steps, sr)
		run, err := ctxData.condition(s.If, res.Err != nil)
		if err != nil {
			return nil, fmt.Errorf("step %d if: %w", i+1, err)
		}
		if !run {
			sr.Skipped = true
			continue
		}
		stepEnv := map[string]string{"GITHUB_ACTION_PATH": abs}
		for k, v := range s.Env {
			if stepEnv[k], err = ctxData.expand(v); err != nil {
				return nil, fmt.Errorf("step %d env %s: %w", i+1, k, err)
			}
		}
		script, err := ctxData.expand(s.Run)
		if err != nil {
			return nil, fmt.Errorf("step %d run: %w", i+1, err)
		}
		wd, err := ctxData.expand(s.WorkingDirectory)
		if err != nil {
			return nil, fmt.Errorf("step %d working-directory: %w", i+1, err)
		}
		if s.Shell != "bash" && s.Shell != "sh" {
			return nil, fmt.Errorf("step %d: shell %q: only bash and sh are modelled (composite steps must name their shell)", i+1, s.Shell)
		}
		r.runStep(ctx, sr, s.Shell, script, wd, stepEnv)
		if s.ID != "" {
			ctxData.steps[s.ID] = sr
		}
		if sr.Err != nil && res.Err == nil {
			res.Err = fmt.Errorf("step %d (%s): %w", i+1, s.Name, sr.Err)
		}
	}
	for name, o := range a.Outputs {
		v, err := ctxData.expand(o.Value)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", name, err)
		}
		res.Outputs[name] = v
	}
	return res, nil
}

// RunScript runs a workflow `run:` step (shell: bash) with extra env.
func (r *Runner) RunScript(ctx context.Context, script string, env map[string]string) *StepResult {
	sr := &StepResult{}
	r.runStep(ctx, sr, "bash", script, "", env)
	return sr
}

// environ returns the step's environment: the job's, the PATH additions
// and the step's own variables.
func (r *Runner) environ(stepEnv map[string]string, files map[string]string) []string {
	env := map[string]string{}
	for k, v := range r.Env {
		env[k] = v
	}
	if len(r.paths) > 0 {
		p := strings.Join(r.paths, string(os.PathListSeparator))
		if env["PATH"] != "" {
			p += string(os.PathListSeparator) + env["PATH"]
		}
		env["PATH"] = p
	}
	for k, v := range stepEnv {
		env[k] = v
	}
	for k, v := range files {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func (r *Runner) runStep(ctx context.Context, sr *StepResult, shell, script, wd string, stepEnv map[string]string) {
	r.mu.Lock()
	r.stepN++
	dir := filepath.Join(r.Temp, "_runner_file_commands", fmt.Sprintf("step%d", r.stepN))
	r.mu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		sr.Err = err
		return
	}
	files := map[string]string{}
	for _, name := range []string{"GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_PATH", "GITHUB_STEP_SUMMARY"} {
		files[name] = filepath.Join(dir, strings.ToLower(name))
		if err := os.WriteFile(files[name], nil, 0o644); err != nil {
			sr.Err = err
			return
		}
	}
	scriptFile := filepath.Join(dir, "script.sh")
	if err := os.WriteFile(scriptFile, []byte(script), 0o644); err != nil {
		sr.Err = err
		return
	}
	if wd == "" {
		wd = r.Workspace
	} else if !filepath.IsAbs(wd) {
		wd = filepath.Join(r.Workspace, wd)
	}
	args := []string{"bash", "--noprofile", "--norc", "-eo", "pipefail", scriptFile}
	if shell == "sh" {
		args = []string{"sh", "-e", scriptFile}
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = wd
	cmd.Env = r.environ(stepEnv, files)
	cmd.Stdin = nil
	pr, pw, err := os.Pipe()
	if err != nil {
		sr.Err = err
		return
	}
	// One pipe for stdout and stderr keeps their order, as in the log.
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pw.Close()
		pr.Close()
		sr.Err = err
		return
	}
	pw.Close()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<16), 1<<22)
		for sc.Scan() {
			r.addLine(strings.TrimSuffix(sc.Text(), "\r"))
		}
	}()
	if err := cmd.Wait(); err != nil {
		sr.Err = fmt.Errorf("process completed with %w", err)
	}
	// Like GitHub's runner, the step ends when its output stream closes: a
	// background process that kept the stream open would hang the job.
	select {
	case <-readDone:
	case <-ctx.Done():
		pr.Close()
		<-readDone
		sr.Err = errors.Join(sr.Err, fmt.Errorf("the step's output stream is still open after it exited (a process it started did not detach its stdout/stderr): %w", ctx.Err()))
		return
	}
	pr.Close()
	var errs []error
	read := func(name string) []KV {
		data, err := os.ReadFile(files[name])
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		kvs, err := ParseFileCommands(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		return kvs
	}
	sr.Env, sr.Outputs = map[string]string{}, map[string]string{}
	for _, kv := range read("GITHUB_ENV") {
		sr.Env[kv.Name] = kv.Value
	}
	for _, kv := range read("GITHUB_OUTPUT") {
		sr.Outputs[kv.Name] = kv.Value
	}
	pathData, err := os.ReadFile(files["GITHUB_PATH"])
	errs = append(errs, err)
	summary, err := os.ReadFile(files["GITHUB_STEP_SUMMARY"])
	errs = append(errs, err)
	r.mu.Lock()
	for k, v := range sr.Env {
		r.Env[k] = v
	}
	for _, p := range strings.Split(string(pathData), "\n") {
		if p = strings.TrimSpace(p); p != "" {
			r.paths = append([]string{p}, r.paths...)
		}
	}
	r.summary.Write(summary)
	r.mu.Unlock()
	if err := errors.Join(errs...); err != nil && sr.Err == nil {
		sr.Err = err
	}
}

// KV is one variable from a file command.
type KV struct{ Name, Value string }

var fileCommandName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// ParseFileCommands parses a GITHUB_ENV or GITHUB_OUTPUT file as the
// runner does: NAME=value lines and NAME<<DELIMITER heredocs; a heredoc
// without its closing delimiter, or a line that is neither, is an error.
// (The runner accepts '-' in output names, so this does too.)
func ParseFileCommands(data []byte) ([]KV, error) {
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	var out []KV
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if line == "" {
			continue
		}
		eq, hd := strings.Index(line, "="), strings.Index(line, "<<")
		switch {
		case hd >= 0 && (eq < 0 || hd < eq):
			name, delim := line[:hd], line[hd+2:]
			if !fileCommandName.MatchString(name) || delim == "" {
				return nil, fmt.Errorf("line %d: malformed heredoc %q", i+1, line)
			}
			var val []string
			closed := false
			for i++; i < len(lines); i++ {
				if lines[i] == delim {
					closed = true
					break
				}
				val = append(val, lines[i])
			}
			if !closed {
				return nil, fmt.Errorf("line %d: heredoc for %s is not closed by its delimiter", i+1, name)
			}
			out = append(out, KV{name, strings.Join(val, "\n")})
		case eq > 0:
			name := line[:eq]
			if !fileCommandName.MatchString(name) {
				return nil, fmt.Errorf("line %d: invalid name %q", i+1, name)
			}
			out = append(out, KV{name, line[eq+1:]})
		default:
			return nil, fmt.Errorf("line %d: neither NAME=value nor NAME<<DELIMITER", i+1)
		}
	}
	return out, nil
}

// exprContext evaluates the expression forms action.yml uses.
type exprContext struct {
	inputs     map[string]string
	actionPath string
	runner     *Runner
	steps      map[string]*StepResult
}

var exprRE = regexp.MustCompile(`\$\{\{\s*(.*?)\s*\}\}`)

// expand substitutes every ${{ expr }} in s.
func (c *exprContext) expand(s string) (string, error) {
	var errs []error
	out := exprRE.ReplaceAllStringFunc(s, func(m string) string {
		v, err := c.value(exprRE.FindStringSubmatch(m)[1])
		if err != nil {
			errs = append(errs, err)
		}
		return v
	})
	return out, errors.Join(errs...)
}

func (c *exprContext) value(expr string) (string, error) {
	parts := strings.Split(expr, ".")
	switch {
	case len(parts) == 2 && parts[0] == "inputs":
		v, ok := c.inputs[parts[1]]
		if !ok {
			return "", fmt.Errorf("expression %q: no input %q", expr, parts[1])
		}
		return v, nil
	case expr == "github.action_path":
		return c.actionPath, nil
	case expr == "github.action_ref", expr == "github.action_repository":
		// Empty for an action run from a local path, as GitHub's runner
		// (and act) have it for `uses: ./`.
		return "", nil
	case expr == "github.workspace":
		return c.runner.Workspace, nil
	case expr == "runner.temp":
		return c.runner.Temp, nil
	case expr == "runner.os":
		return "Linux", nil
	case len(parts) == 2 && parts[0] == "env":
		c.runner.mu.Lock()
		defer c.runner.mu.Unlock()
		return c.runner.Env[parts[1]], nil
	case len(parts) == 4 && parts[0] == "steps" && parts[2] == "outputs":
		s, ok := c.steps[parts[1]]
		if !ok {
			return "", nil // a step that did not run has no outputs
		}
		return s.Outputs[parts[3]], nil
	}
	return "", fmt.Errorf("expression %q is not modelled by the test runner", expr)
}

// condition evaluates a step's `if:`: empty or success() runs only while
// nothing failed, always() always, failure() only after a failure, and
// VALUE == 'literal' (VALUE an expression value() models) while nothing
// failed.
func (c *exprContext) condition(cond string, failed bool) (bool, error) {
	cond = strings.TrimSpace(cond)
	if m := exprRE.FindStringSubmatch(cond); m != nil && m[0] == cond {
		cond = m[1]
	}
	switch cond {
	case "", "success()":
		return !failed, nil
	case "always()", "!cancelled()":
		return true, nil
	case "failure()":
		return failed, nil
	}
	// VALUE == 'literal', with an implied success(), as GitHub has it.
	if lhs, rhs, ok := strings.Cut(cond, "=="); ok {
		lhs, rhs = strings.TrimSpace(lhs), strings.TrimSpace(rhs)
		if len(rhs) >= 2 && rhs[0] == '\'' && rhs[len(rhs)-1] == '\'' && !strings.ContainsAny(lhs, " '()") {
			v, err := c.value(lhs)
			if err != nil {
				return false, err
			}
			return !failed && v == rhs[1:len(rhs)-1], nil
		}
	}
	return false, fmt.Errorf("condition %q is not modelled by the test runner", cond)
}
