package podsidecar

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/goproxy-setup/goproxy-setup/internal/procmem"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/podman"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// examplePort is the sidecar's loopback port in the manifests; each pod of
// the test gets a free one instead (see overlay).
const examplePort = "127.0.0.1:7079"

// secretPath is where the manifests mount the client key's Secret in the
// sidecar.
const secretPath = "/run/secrets/goproxy"

// mod is the module the jobs fetch and build through the agent.
var mod = testenv.Module{Path: "example.com/hello", Version: "v1.0.0", Files: map[string]string{
	"go.mod":  "module example.com/hello\n\ngo 1.21\n",
	"main.go": "package main\n\nfunc main() { println(\"hello through the sidecar\") }\n",
}}

// TestSidecarPods runs the three manifests of examples/kubernetes under
// podman kube play, each as a pod whose job container (a non-root uid in
// no passwd file) gets its GOPROXY from the sidecar and fetches (the plain
// Pod: builds, with the real go command) a module from the mTLS stack
// through it, while two more containers of the pod, one under another uid
// and one root, are refused the job's environment and find neither the
// key nor the agent's processes. Then the pod is stopped and the sidecar
// must exit 0 (SIGTERM is a clean shutdown).
//
// The overlay, and why: the images are local (no registry); the pod uses
// the host's network (hostNetwork: true) because the test's upstream
// listens on the host's loopback, which keeps every byte on loopback, and
// the sidecar's port is a free one; podman 4.3 runs initContainers to
// completion and ignores restartPolicy: Always, so the native sidecar
// becomes a regular container (the job's wait for the agent's answer
// orders the start, as on Kubernetes < 1.29); the upstream is the stack's,
// its CA comes with the Secret; the Secret is created as podman 4.3 reads
// it (a Kubernetes Secret YAML whose data it does not base64-decode).
func TestSidecarPods(t *testing.T) {
	t.Parallel()
	podman.Path(t)
	images := podman.JobImages(t)
	stack := testenv.StartMTLSStack(t, []testenv.Module{mod})
	scope := podman.NewScope(t, "gpspod")
	sidecarImage := buildSidecarImage(t, scope)
	root := testenv.RepoRoot(t)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, "examples", "kubernetes", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	for _, test := range []struct {
		name string
		// pod returns the example's pod object and the name of its job
		// container.
		pod func(t *testing.T) (map[string]any, string)
	}{
		{"pod", func(t *testing.T) (map[string]any, string) {
			var pod map[string]any
			decode(t, read("pod.yaml"), &pod)
			job := container(t, pod, "build")
			setEnv(job, "PACKAGE", mod.Path+"@"+mod.Version)
			setEnv(job, "GOSUMDB", "off") // the test module is in no checksum database
			job["image"] = images.Alpine
			return pod, "build"
		}},
		{"arc", func(t *testing.T) (map[string]any, string) {
			// The runner pod of the scale set: its template.spec, with
			// the runner container running what the workflow's steps run
			// (the values file's own step script) in a golang:bookworm-
			// shaped image, which has curl as the runner image does.
			values := read("arc-values.yaml")
			var v struct {
				Template struct {
					Spec map[string]any `yaml:"spec"`
				} `yaml:"template"`
			}
			decode(t, values, &v)
			pod := map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{}, "spec": v.Template.Spec}
			spec := v.Template.Spec
			spec["restartPolicy"] = "Never"
			step := commentBlock(t, values, "#     run: |", "#   - run:", "#       ")
			runner := container(t, pod, "runner")
			runner["image"] = images.Bookworm
			runner["command"] = []any{"/bin/bash", "-c", "set -eu\nGITHUB_ENV=/work/github_env\n" + step +
				"set -a; . \"$GITHUB_ENV\"; set +a\n" + jobChecks + "go mod download -json " + mod.Path + "@" + mod.Version + "\n"}
			workDir(spec, runner)
			return pod, "runner"
		}},
		{"gitlab", func(t *testing.T) (map[string]any, string) {
			// What the Kubernetes executor makes of a job: the build
			// container under config.toml's build uid, a helper under
			// another, and the pod_spec patch merged in (a strategic
			// merge adds the named init container and volume).
			conf := read("gitlab-runner-config.toml")
			for _, want := range []string{`patch_path = "goproxy-setup-sidecar.yaml"`, `patch_type = "strategic"`, "FF_USE_ADVANCED_POD_SPEC_CONFIGURATION=true", "run_as_user = 1001"} {
				if !strings.Contains(conf, want) {
					t.Fatalf("gitlab-runner-config.toml does not say %s", want)
				}
			}
			var patch map[string]any
			decode(t, read("goproxy-setup-sidecar.yaml"), &patch)
			before := commentBlock(t, conf, "#     before_script:", "#     script:", "#       - ")
			build := map[string]any{
				"name":  "build",
				"image": images.Alpine,
				"securityContext": map[string]any{
					"runAsUser": 1001, "runAsGroup": 1001, "runAsNonRoot": true, "allowPrivilegeEscalation": false,
					"readOnlyRootFilesystem": true, "capabilities": map[string]any{"drop": []any{"ALL"}},
				},
				"command": []any{"/bin/sh", "-c", "set -eu\n" + before + jobChecks + "go mod download -json " + mod.Path + "@" + mod.Version + "\n"},
			}
			helper := map[string]any{
				"name": "helper", "image": images.Alpine,
				"securityContext": map[string]any{"runAsUser": 1002, "runAsGroup": 1001},
				"command":         []any{"/bin/sh", "-c", intruderScript},
			}
			spec := map[string]any{"restartPolicy": "Never", "containers": []any{build, helper}, "volumes": []any{}}
			for _, k := range []string{"initContainers", "volumes"} {
				list, _ := spec[k].([]any)
				add, _ := patch[k].([]any)
				spec[k] = append(list, add...)
			}
			pod := map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{}, "spec": spec}
			workDir(spec, build)
			return pod, "build"
		}},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			pod, jobName := test.pod(t)
			checkOnlySidecarMountsKey(t, pod)
			name := scope.Token + "-" + test.name
			secret := createSecret(t, scope, name, stack)
			sidecar := overlay(t, pod, name, secret, sidecarImage, stack.URL, images.Alpine)
			port := strconv.Itoa(testenv.FreePort(t))
			manifest := strings.ReplaceAll(encode(t, pod), examplePort, "127.0.0.1:"+port)
			file := filepath.Join(t.TempDir(), "pod.yaml")
			if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			start := time.Now()
			if _, err := scope.Run(ctx, "kube", "play", file); err != nil {
				t.Fatalf("kube play: %v\n%s", err, manifest)
			}
			ctr := func(c string) string { return name + "-" + c }
			logs := func(c string) string {
				out, _ := scope.Run(context.Background(), "logs", ctr(c))
				return out
			}
			waitFor := []string{jobName, "intruder", "rootintruder"}
			if test.name == "gitlab" {
				waitFor = append(waitFor, "helper")
			}
			for _, c := range waitFor {
				out, err := scope.Run(ctx, "wait", ctr(c))
				if err != nil || strings.TrimSpace(out) != "0" {
					t.Errorf("container %s exited %q (%v):\n%s\nsidecar log:\n%s", c, strings.TrimSpace(out), err, logs(c), logs(sidecar))
				}
			}
			jobLog := logs(jobName)
			if test.name == "pod" && !strings.Contains(jobLog, "built: hello") {
				t.Errorf("the job did not build %s:\n%s", mod.Path, jobLog)
			}
			if test.name != "pod" && !strings.Contains(jobLog, `"Version": "`+mod.Version+`"`) {
				t.Errorf("the job did not download %s@%s:\n%s", mod.Path, mod.Version, jobLog)
			}
			for _, c := range waitFor {
				l := logs(c)
				for _, bad := range []string{"KEY-VISIBLE", "AGENT-VISIBLE", "PRIVATE KEY"} {
					if strings.Contains(l, bad) {
						t.Errorf("container %s: %s:\n%s", c, bad, l)
					}
				}
				if c != jobName && (!strings.Contains(l, "403 Forbidden") || strings.Contains(l, "GOPROXY=")) {
					t.Errorf("container %s (another uid) was not refused the job's environment:\n%s", c, l)
				}
			}
			// The probes, as the manifest writes them, run in the sidecar.
			probe := probeCommand(t, pod)
			if out, err := scope.Run(ctx, append([]string{"exec", ctr(sidecar)}, probe...)...); err != nil {
				t.Errorf("exec probe %v: %v\n%s", probe, err, out)
			}
			pidText, _ := scope.Run(ctx, "inspect", "--format", "{{.State.Pid}}", ctr(sidecar))
			pid, _ := strconv.Atoi(strings.TrimSpace(pidText))
			hwm, rss := procmem.Of(pid)

			if out, err := scope.Run(ctx, "pod", "stop", "-t", "10", name); err != nil {
				t.Fatalf("pod stop: %v\n%s", err, out)
			}
			code, _ := scope.Run(ctx, "inspect", "--format", "{{.State.ExitCode}}", ctr(sidecar))
			sideLog := logs(sidecar)
			if strings.TrimSpace(code) != "0" || !strings.Contains(sideLog, "agent stopped") {
				t.Errorf("sidecar after SIGTERM: exit code %q, want 0 and \"agent stopped\" in its log:\n%s", strings.TrimSpace(code), sideLog)
			}
			serving, first := logTimes(sideLog, mod.Path)
			if first.IsZero() {
				t.Errorf("the sidecar's log has no fetch of %s:\n%s", mod.Path, sideLog)
			}
			t.Logf("%s: pod start -> agent serving %.2fs, -> job's first fetch %.2fs; sidecar RSS %s (peak %s)",
				test.name, serving.Sub(start).Seconds(), first.Sub(start).Seconds(), rss, hwm)
		})
	}
}

// jobChecks are the job container's own checks, added to the scripts the
// test writes: the key's mount and the agent's processes are not there.
const jobChecks = `[ ! -e ` + secretPath + ` ] || echo KEY-VISIBLE
for p in /proc/[0-9]*; do tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q '^/goproxy-setup sidecar' && echo AGENT-VISIBLE; done
`

// intruderScript runs in the containers that are not the job, once the
// agent answers its probe: the job's environment is refused them, and
// they find neither the key nor the agent's processes.
const intruderScript = `for i in $(seq 60); do wget -qO- http://` + examplePort + `/.goproxy-setup/probe && break; sleep 1; done
id
wget -qO- http://` + examplePort + `/.goproxy-setup/env 2>&1 || true
` + jobChecks + `echo checks-done
`

// overlay makes pod runnable here (see TestSidecarPods) and returns the
// sidecar's container name.
func overlay(t *testing.T, pod map[string]any, name, secret, sidecarImage, upstream, jobImage string) string {
	t.Helper()
	pod["metadata"] = map[string]any{"name": name}
	spec := pod["spec"].(map[string]any)
	spec["hostNetwork"] = true
	// Native sidecars become regular containers (podman 4.3 runs init
	// containers to completion before the others).
	var sidecar map[string]any
	var inits []any
	for _, c := range list(spec["initContainers"]) {
		c := c.(map[string]any)
		if c["restartPolicy"] == "Always" {
			delete(c, "restartPolicy")
			sidecar = c
			continue
		}
		inits = append(inits, c)
	}
	if sidecar == nil {
		t.Fatalf("no native sidecar (init container with restartPolicy: Always) in the manifest")
	}
	spec["initContainers"] = inits
	if len(inits) == 0 {
		delete(spec, "initContainers")
	}
	sidecar["image"] = sidecarImage
	setEnv(sidecar, "GOPROXY_SETUP_UPSTREAM", upstream)
	setEnv(sidecar, "GOPROXY_SETUP_LOG_LEVEL", "debug")
	setEnv(sidecar, "GOPROXY_SETUP_LOG_FORMAT", "json")
	intruder := func(cname string, uid int) map[string]any {
		return map[string]any{"name": cname, "image": jobImage,
			"securityContext": map[string]any{"runAsUser": uid},
			"command":         []any{"/bin/sh", "-c", intruderScript}}
	}
	spec["containers"] = append([]any{sidecar}, append(list(spec["containers"]), intruder("intruder", 2000), intruder("rootintruder", 0))...)
	// podman 4.3 makes an emptyDir a volume named as the pod's volume is,
	// shared by every pod that has one of that name: the names get the
	// pod's.
	for _, v := range list(spec["volumes"]) {
		v := v.(map[string]any)
		if s, ok := v["secret"].(map[string]any); ok {
			s["secretName"] = secret
		}
		v["name"] = name + "-" + v["name"].(string)
	}
	for _, c := range list(spec["containers"]) {
		for _, m := range list(c.(map[string]any)["volumeMounts"]) {
			m.(map[string]any)["name"] = name + "-" + m.(map[string]any)["name"].(string)
		}
	}
	return sidecar["name"].(string)
}

// checkOnlySidecarMountsKey: in the manifest as written there is one
// Secret volume (the client key), the sidecar mounts it, and no other
// container mounts any volume the sidecar mounts (the key, its token) or
// takes an environment variable from elsewhere (a Secret).
func checkOnlySidecarMountsKey(t *testing.T, pod map[string]any) {
	t.Helper()
	spec := pod["spec"].(map[string]any)
	secrets := 0
	for _, v := range list(spec["volumes"]) {
		if _, ok := v.(map[string]any)["secret"]; ok {
			secrets++
		}
	}
	if secrets != 1 {
		t.Fatalf("the manifest has %d Secret volumes, want 1 (the client key's)", secrets)
	}
	sidecarVols := map[string]bool{}
	var others []map[string]any
	for _, c := range append(list(spec["initContainers"]), list(spec["containers"])...) {
		c := c.(map[string]any)
		if c["restartPolicy"] != "Always" {
			others = append(others, c)
			continue
		}
		for _, m := range list(c["volumeMounts"]) {
			sidecarVols[m.(map[string]any)["name"].(string)] = true
		}
	}
	for _, v := range list(spec["volumes"]) {
		if _, ok := v.(map[string]any)["secret"]; ok && !sidecarVols[v.(map[string]any)["name"].(string)] {
			t.Errorf("the sidecar does not mount the client key's Secret")
		}
	}
	for _, c := range others {
		for _, m := range list(c["volumeMounts"]) {
			if n := m.(map[string]any)["name"].(string); sidecarVols[n] {
				t.Errorf("container %s mounts the sidecar's volume %s: only the sidecar may", c["name"], n)
			}
		}
		for _, e := range list(c["env"]) {
			if _, ok := e.(map[string]any)["valueFrom"]; ok {
				t.Errorf("container %s takes an environment variable from elsewhere (a Secret?): the key never travels in the environment", c["name"])
			}
		}
	}
}

// probeCommand returns the sidecar's startup probe command as written.
func probeCommand(t *testing.T, pod map[string]any) []string {
	t.Helper()
	for _, c := range list(pod["spec"].(map[string]any)["containers"]) {
		p, ok := c.(map[string]any)["startupProbe"].(map[string]any)
		if !ok {
			continue
		}
		var cmd []string
		for _, a := range list(p["exec"].(map[string]any)["command"]) {
			cmd = append(cmd, a.(string))
		}
		return cmd
	}
	t.Fatal("the sidecar has no startup probe")
	return nil
}

// buildSidecarImage builds examples/kubernetes/Containerfile as its
// comment says, from the binary under test.
func buildSidecarImage(t *testing.T, scope *podman.Scope) string {
	t.Helper()
	dir := t.TempDir()
	copyFile(t, filepath.Join(testenv.RepoRoot(t), "examples", "kubernetes", "Containerfile"), filepath.Join(dir, "Containerfile"), 0o644)
	copyFile(t, "/etc/ssl/certs/ca-certificates.crt", filepath.Join(dir, "ca-certificates.crt"), 0o644)
	copyFile(t, testenv.Binary(t), filepath.Join(dir, "goproxy-setup"), 0o755)
	ref := "localhost/goproxy-setup-sidecar-" + scope.Token + ":test"
	if out, err := scope.Run(context.Background(), "build", "-q", "-t", ref, "-f", filepath.Join(dir, "Containerfile"), dir); err != nil {
		t.Fatalf("build the sidecar image: %v\n%s", err, out)
	}
	return ref
}

// createSecret makes the client key's Secret (tls.crt, tls.key, ca.crt)
// as a podman secret, removed when the test ends.
func createSecret(t *testing.T, scope *podman.Scope, name string, stack *testenv.Stack) string {
	t.Helper()
	read := func(f string) string {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// podman 4.3 puts data values into the files as they are (no base64).
	secret := map[string]any{"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": name},
		"data": map[string]any{"tls.crt": read(stack.CertFile), "tls.key": read(stack.KeyFile), "ca.crt": read(stack.CAFile)}}
	file := filepath.Join(t.TempDir(), "secret.yaml")
	if err := os.WriteFile(file, []byte(encode(t, secret)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := scope.Run(context.Background(), "secret", "create", name, file); err != nil {
		t.Fatalf("podman secret create: %v\n%s", err, out)
	}
	t.Cleanup(func() { scope.Run(context.Background(), "secret", "rm", name) })
	return name
}

// commentBlock returns the lines of text's comment between the line
// starting with from and the next line starting with to, each without
// prefix: the job steps the examples give in their comments.
func commentBlock(t *testing.T, text, from, to, prefix string) string {
	t.Helper()
	var b strings.Builder
	in := false
	for _, l := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(l, from):
			in = true
			continue
		case in && strings.HasPrefix(l, to):
			return b.String()
		case in:
			b.WriteString(strings.TrimPrefix(l, prefix) + "\n")
		}
	}
	t.Fatalf("no comment block from %q to %q", from, to)
	return ""
}

// logTimes returns when the sidecar's JSON log says it served, and when
// it first fetched something of module for the job (its upstream's 200 or
// its own "served", whichever the log has first).
func logTimes(log, module string) (serving, first time.Time) {
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var e struct {
			Msg    string `json:"@message"`
			Time   string `json:"@timestamp"`
			Module string `json:"module"`
			URL    string `json:"url"`
			Status int    `json:"status"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		ts, err := time.Parse("2006-01-02T15:04:05.000000Z07:00", e.Time)
		if err != nil {
			continue
		}
		switch {
		case e.Msg == "agent serving" && serving.IsZero():
			serving = ts
		case first.IsZero() && (e.Msg == "served" && e.Module == module || e.Msg == "upstream response" && e.Status == 200 && strings.Contains(e.URL, "/"+module+"/@v/")):
			first = ts
		}
	}
	return serving, first
}

func workDir(spec, c map[string]any) {
	spec["volumes"] = append(list(spec["volumes"]), map[string]any{"name": "work", "emptyDir": map[string]any{}})
	c["volumeMounts"] = append(list(c["volumeMounts"]), map[string]any{"name": "work", "mountPath": "/work"})
	c["workingDir"] = "/work"
	for k, v := range map[string]string{"HOME": "/work/home", "GOPATH": "/work/go", "GOCACHE": "/work/cache", "GOSUMDB": "off"} {
		setEnv(c, k, v)
	}
}

func container(t *testing.T, pod map[string]any, name string) map[string]any {
	t.Helper()
	for _, c := range list(pod["spec"].(map[string]any)["containers"]) {
		if c.(map[string]any)["name"] == name {
			return c.(map[string]any)
		}
	}
	t.Fatalf("no container %q in the manifest", name)
	return nil
}

func setEnv(c map[string]any, name, value string) {
	env := list(c["env"])
	for _, e := range env {
		if e.(map[string]any)["name"] == name {
			e.(map[string]any)["value"] = value
			return
		}
	}
	c["env"] = append(env, map[string]any{"name": name, "value": value})
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func decode(t *testing.T, text string, v any) {
	t.Helper()
	if err := yaml.Unmarshal([]byte(text), v); err != nil {
		t.Fatalf("YAML: %v", err)
	}
}

func encode(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}
