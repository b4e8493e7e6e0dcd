package ci

import (
	"strings"
	"testing"
	"time"
)

func TestWriteStopSummary(t *testing.T) {
	t.Parallel()
	const canary = "CANARY-cap-token-1234567890"
	red := &Redactor{}
	red.Add(canary)
	for _, test := range []struct {
		name  string
		stats Stats
		want  []string
		not   []string
	}{
		{
			name:  "clean",
			stats: Stats{Requests: 12, Bytes: 2048, Latency: Latency{P50: 3 * time.Millisecond}},
			want:  []string{":white_check_mark: No fetch failed after setup.", "| 12 | 2.0 KiB |"},
			not:   []string{"Diagnosis", "errors by layer"},
		},
		{
			// The report after a failed setup: the errors in the
			// table happened during setup, and the headline says so
			// instead of "No fetch failed after setup." above
			// "client-cert: 9 errors".
			name:  "failures during setup only",
			stats: Stats{Requests: 9, Failures: 9, ErrorsByLayer: map[string]int64{"client-cert": 9}},
			want:  []string{":warning: **9 fetches failed during setup, none after it**", "### Upstream errors by layer (whole job, setup included)", "| `client-cert` | 9 |"},
			not:   []string{"No fetch failed", ":white_check_mark:", ":x:"},
		},
		{
			name: "failures with a diagnosis",
			stats: Stats{Requests: 5, FailedAfterSetup: 3, ErrorsByLayer: map[string]int64{"client-cert": 3},
				Diagnoses: []string{"diagnosis: upstream https://proxy.corp failed at client-cert:\nrejected " + canary}},
			want: []string{":x: **3 fetches failed after setup**", "| `client-cert` | 3 |", "### Diagnosis", "- diagnosis: upstream https://proxy.corp failed at client-cert: rejected"},
			not:  []string{canary},
		},
	} {
		t.Run(test.name, func(t *testing.T) {
			t.Parallel()
			var b strings.Builder
			if err := WriteStopSummary(&b, &test.stats, red); err != nil {
				t.Fatal(err)
			}
			for _, w := range test.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("summary lacks %q:\n%s", w, b.String())
				}
			}
			for _, n := range test.not {
				if strings.Contains(b.String(), n) {
					t.Errorf("summary holds %q:\n%s", n, b.String())
				}
			}
		})
	}
}
