package wire

import (
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// TestReadinessLines: what the agent writes, the supervisor reads back.
func TestReadinessLines(t *testing.T) {
	t.Parallel()
	if addr, ok := ParseReady(ReadyLine("127.0.0.1:4711")); !ok || addr != "127.0.0.1:4711" {
		t.Errorf("ParseReady(ReadyLine) = %q, %v; want 127.0.0.1:4711, true", addr, ok)
	}
	for k := errkind.Other; k <= errkind.Canceled; k++ {
		if got, ok := FailKind(FailLine(k)); !ok || got != k {
			t.Errorf("FailKind(FailLine(%v)) = %v, %v; want %v, true", k, got, ok, k)
		}
		if _, ok := ParseReady(FailLine(k)); ok {
			t.Errorf("ParseReady(FailLine(%v)) says ready", k)
		}
	}
	for _, line := range []string{"", "ready", "fail nonsense", "fail"} {
		if k, ok := FailKind(line); ok {
			t.Errorf("FailKind(%q) = %v, true; want false", line, k)
		}
	}
}
