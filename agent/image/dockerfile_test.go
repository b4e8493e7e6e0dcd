package image

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfileMatchesLayer keeps the repository's Dockerfile (which cannot
// be built here: no Docker engine) in step with the layer Build writes: the
// same paths, the same entrypoint script, the same environment, a static
// build and a non-root final user.
func TestDockerfileMatchesLayer(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{
		"FROM golang:1.26 AS build",
		"CGO_ENABLED=0 go build -trimpath",
		"/out/goproxy-setup " + BinaryPath,
		"agent/image/entrypoint.sh " + EntrypointPath,
		"policy.hcl " + PolicyPath,
		"GOPROXY_SETUP_POLICY=" + PolicyPath,
		"GOPROXY_SETUP_STATE_DIR=" + StateDir,
		"GOPROXY_SETUP_AGENT_DIR=" + AgentDir,
		"GOPROXY_SETUP_AGENT_USER=" + DefaultAgentUser,
		"install -d -m 0700 -o " + DefaultAgentUser + " -g " + DefaultAgentUser + " " + AgentDir,
		`ENTRYPOINT ["` + EntrypointPath + `"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	users := regexp.MustCompile(`(?m)^USER (\S+)`).FindAllStringSubmatch(df, -1)
	if len(users) == 0 || users[len(users)-1][1] == "root" {
		t.Errorf("Dockerfile's final USER: got %v, want a non-root user", users)
	}
}

func TestEntrypointScriptSyntax(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("sh", "-n", "entrypoint.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("sh -n entrypoint.sh: %v: %s", err, out)
	}
	if !strings.HasPrefix(string(entrypointScript), "#!/bin/sh\n") {
		t.Errorf("entrypoint script: want a #!/bin/sh first line")
	}
}
