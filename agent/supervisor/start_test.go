package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/agent/privilege"
	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// TestAgentFailedKind: an agent that exits before serving fails Start
// with the kind its exit code says, whatever its log's text says.
func TestAgentFailedKind(t *testing.T) {
	t.Parallel()
	for _, test := range []struct {
		name string
		log  string
		code int
		want errkind.Kind
	}{
		{"bad input", "refusing the planted private directory", 2, errkind.BadInput},
		{"unreachable", "upstream down", 3, errkind.Unreachable},
		{"other, although the log says bad input", "exit=2 bad input", 1, errkind.Other},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			exe := filepath.Join(dir, "fake-agent")
			script := fmt.Sprintf("#!/bin/sh\necho %q >&2\nexit %d\n", test.log, test.code)
			if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			d, err := OpenStateDir(filepath.Join(dir, "state"))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			_, err = Start(context.Background(), d, StartConfig{Executable: exe, Handoff: privilege.Secrets{Token: "t"}})
			if err == nil {
				t.Fatal("Start of an agent that exits succeeded")
			}
			if got := errkind.Of(err); got != test.want {
				t.Errorf("kind %v, want %v (error: %v)", got, test.want, err)
			}
		})
	}
}

// TestAgentFailedKeepsKind: the kind the agent reports on its readiness
// pipe decides the bootstrap's error kind, whatever its log says.
func TestAgentFailedKeepsKind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ready, log string
		want       errkind.Kind
	}{
		{"fail bad input", "anything", errkind.BadInput},
		{"fail local fault", "bad input mentioned in the log", errkind.Local},
		{"", "bad input mentioned in the log", errkind.Other},
	} {
		if got := errkind.Of(agentFailed(tc.ready, 1, "/x/agent.log", tc.log)); got != tc.want {
			t.Errorf("agentFailed(%q, log %q): kind %v, want %v", tc.ready, tc.log, got, tc.want)
		}
	}
}
