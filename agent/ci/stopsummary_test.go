package ci

import (
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
)

// flaky is the stats of a green job whose upstream needed retries and
// resumes; flakyLine is what every report says of it.
var (
	flaky = Stats{Requests: 20, Upstreams: []upstream.Health{
		{Upstream: "https://proxy.corp", State: "closed", Counters: upstream.Counters{Retries: 2, Resumes: 3, ResumedBytes: 3 << 20, ResumeFailures: 1, CoalescedFailures: 4}},
		{Upstream: "https://quiet.corp", State: "closed"},
	}}
	flakyLine = "https://proxy.corp: 2 retries, 3 resumed bodies (3.0 MiB not fetched again), 1 bodies not resumable, 4 failures counted as part of one network event"
)

// TestStatsTextShowsNetwork: the plain-log report (GitHub's group,
// GitLab's section) says what the network did, as the summary does.
func TestStatsTextShowsNetwork(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	if err := WriteStatsText(&b, &flaky, &Redactor{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "network: "+flakyLine+"\n") || strings.Contains(b.String(), "quiet.corp") {
		t.Errorf("stats text lacks the flaky upstream's line (or lists the quiet one):\n%s", b.String())
	}
}

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
		{
			// A green job on a flaky network: the retries and resumes
			// show; an upstream that saw none is not listed.
			name:  "flaky network, green job",
			stats: flaky,
			want:  []string{":white_check_mark: No fetch failed after setup.", "### Network (retries and resumes, whole job)", "- " + flakyLine},
			not:   []string{"https://quiet.corp"},
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
