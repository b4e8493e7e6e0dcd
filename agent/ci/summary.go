package ci

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
	"github.com/goproxy-setup/goproxy-setup/internal/humanize"
)

// WriteSetupSummary writes the Markdown job summary of a setup: on success
// what was configured, the exported variables, the warm-up figures and the
// upstream latency; on failure the verdict first, then the diagnosis. Every
// secret red knows is replaced by "***" before anything is written.
func WriteSetupSummary(w io.Writer, o *Outcome, red *Redactor) error {
	var b bytes.Buffer
	if o.Err != nil {
		writeFailure(&b, o)
	} else {
		writeSuccess(&b, o)
	}
	if len(o.Warnings) > 0 {
		b.WriteString("\n### Warnings\n\n")
		for _, m := range o.Warnings {
			fmt.Fprintf(&b, "- :warning: %s\n", oneLine(m))
		}
	}
	_, err := io.WriteString(w, red.String(b.String()))
	return err
}

func writeSuccess(b *bytes.Buffer, o *Outcome) {
	b.WriteString("## goproxy-setup\n\n")
	fmt.Fprintf(b, ":white_check_mark: Go modules come through the agent at %s; `GOPROXY` and the policy's variables are exported to the following steps.\n\n", code(o.Addr))
	b.WriteString("| Setting | Value |\n| --- | --- |\n")
	fmt.Fprintf(b, "| Upstream | %s |\n", code(o.Upstream))
	fmt.Fprintf(b, "| Agent | %s |\n", code(o.Addr))
	fmt.Fprintf(b, "| State directory | %s |\n", code(o.StateDir))
	if len(o.Endpoints) > 0 {
		eps := make([]string, len(o.Endpoints))
		for i, e := range o.Endpoints {
			eps[i] = code(e)
		}
		fmt.Fprintf(b, "| Egress | %s |\n", strings.Join(eps, ", "))
	}
	b.WriteString("\n### Environment\n\n| Variable | Value |\n| --- | --- |\n")
	for _, v := range o.Env {
		fmt.Fprintf(b, "| %s | %s |\n", code(v.Name), code(v.Value))
	}
	b.WriteString("\n### Module cache\n\n")
	if o.Warm == nil {
		b.WriteString("Not warmed.\n")
	} else {
		b.WriteString("| Modules | Already cached | Downloaded | Bytes | Time |\n| --- | --- | --- | --- | --- |\n")
		fmt.Fprintf(b, "| %d | %d | %d | %s | %s |\n", o.Warm.Modules, o.Warm.Hits, o.Warm.Fetched, humanize.Bytes(o.Warm.Bytes), HumanDuration(o.Warm.Duration))
	}
	if o.Latency != nil {
		b.WriteString("\n### Upstream latency\n\n| p50 | p90 | p99 |\n| --- | --- | --- |\n")
		fmt.Fprintf(b, "| %s | %s | %s |\n", HumanDuration(o.Latency.P50), HumanDuration(o.Latency.P90), HumanDuration(o.Latency.P99))
	}
}

func writeFailure(b *bytes.Buffer, o *Outcome) {
	f := o.failure()
	fmt.Fprintf(b, "## goproxy-setup failed: %s\n\n", f.name)
	fmt.Fprintf(b, ":x: **%s** — %s.\n\n", capitalize(f.name), f.headline)
	if f.ladder {
		if f.layer != "" {
			fmt.Fprintf(b, "**Failing layer: %s** — %s\n\n", code(f.layer), f.summary)
		} else {
			fmt.Fprintf(b, "The diagnosis found no failing layer (%s): the upstream failed while warming; see the full report.\n\n", f.summary)
		}
	}
	fmt.Fprintf(b, "```text\n%s\n```\n", strings.ReplaceAll(o.Err.Error(), "```", "'''"))
	if f.ladder {
		b.WriteString("\n")
		var d bytes.Buffer
		if err := o.Diagnosis.WriteMarkdown(&d); err != nil {
			fmt.Fprintf(&d, "\n(the diagnosis could not be rendered: %v)\n", err)
		}
		b.Write(d.Bytes())
		if d.Len() > 0 && !bytes.HasSuffix(d.Bytes(), []byte("\n")) {
			b.WriteString("\n")
		}
	}
	if o.ReportPath != "" {
		fmt.Fprintf(b, "\nFull report: %s\n", code(o.ReportPath))
	}
}

// capitalize upper-cases the first letter of an ASCII phrase.
func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// UpstreamLine says what one upstream's network did over the job — its
// retries, resumes and the bytes resuming saved, bodies that could not be
// resumed, failures counted as part of one event — or "" when it did
// none of it: a flaky network shows even when the job is green.
func UpstreamLine(h upstream.Health) string {
	c := h.Counters
	if !c.Any() && h.Opens == 0 {
		return ""
	}
	parts := []string{fmt.Sprintf("%d retries", c.Retries), fmt.Sprintf("%d resumed bodies (%s not fetched again)", c.Resumes, humanize.Bytes(c.ResumedBytes))}
	if c.ResumeFailures > 0 {
		parts = append(parts, fmt.Sprintf("%d bodies not resumable", c.ResumeFailures))
	}
	if c.CoalescedFailures > 0 {
		parts = append(parts, fmt.Sprintf("%d failures counted as part of one network event", c.CoalescedFailures))
	}
	if h.Opens > 0 {
		parts = append(parts, fmt.Sprintf("circuit opened %d times (now %s)", h.Opens, h.State))
	}
	return h.Upstream + ": " + strings.Join(parts, ", ")
}

// upstreamLines are the UpstreamLines of s that say something.
func upstreamLines(s *Stats) []string {
	var out []string
	for _, h := range s.Upstreams {
		if l := UpstreamLine(h); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// setupFailures is how many upstream fetches failed while the setup ran.
func setupFailures(s *Stats) int64 {
	if n := s.Failures - int64(s.FailedAfterSetup); n > 0 {
		return n
	}
	return 0
}

// failedAfterSetupMessage is the error of a job whose fetches failed after
// setup.
func failedAfterSetupMessage(s *Stats) string {
	return fmt.Sprintf("%d module fetches failed after setup; the agent log in the state directory names each one", s.FailedAfterSetup)
}

// noAgentMessage is what a report step says when it finds no agent.
func noAgentMessage(stateDir string) string {
	return fmt.Sprintf("no agent to report on in %s: the setup step did not start one (its own log says why)", stateDir)
}

// statsHeadline is the one verdict of a stop report, the same in the log and
// the summary: failures after setup fail the job; failures during setup were
// the setup step's (which reported them); only a job without any says
// nothing failed. head is the verdict, tail its explanation.
func statsHeadline(s *Stats) (icon, head, tail string) {
	during := setupFailures(s)
	switch {
	case s.FailedAfterSetup > 0:
		tail = "later steps asked for modules the agent could not get"
		if during > 0 {
			tail = fmt.Sprintf("%s (and %d failed during setup)", tail, during)
		}
		return ":x:", fmt.Sprintf("%d fetches failed after setup", s.FailedAfterSetup), tail
	case during > 0:
		return ":warning:", fmt.Sprintf("%d fetches failed during setup, none after it", during), "the setup step reported them with its diagnosis"
	}
	return ":white_check_mark:", "No fetch failed after setup.", ""
}

// WriteStopSummary writes the Markdown summary of the agent's final stats.
// Its headline and its table of errors by layer always agree: errors are
// counted for the whole job and the headline says when they happened.
func WriteStopSummary(w io.Writer, s *Stats, red *Redactor) error {
	var b bytes.Buffer
	b.WriteString("## goproxy-setup report\n\n")
	icon, head, tail := statsHeadline(s)
	switch {
	case s.FailedAfterSetup > 0:
		fmt.Fprintf(&b, "%s **%s**: %s; see the errors by layer below and the agent log in the state directory.\n\n", icon, head, tail)
	case tail != "":
		fmt.Fprintf(&b, "%s **%s**: %s.\n\n", icon, head, tail)
	default:
		fmt.Fprintf(&b, "%s %s\n\n", icon, head)
	}
	if s.Ended != "" {
		fmt.Fprintf(&b, "Note: %s.\n\n", s.Ended)
	}
	b.WriteString("| Requests | Served | Upstream p50 | p90 | p99 |\n| --- | --- | --- | --- | --- |\n")
	fmt.Fprintf(&b, "| %d | %s | %s | %s | %s |\n", s.Requests, humanize.Bytes(s.Bytes), HumanDuration(s.Latency.P50), HumanDuration(s.Latency.P90), HumanDuration(s.Latency.P99))
	if len(s.ErrorsByLayer) > 0 {
		b.WriteString("\n### Upstream errors by layer (whole job, setup included)\n\n| Layer | Errors |\n| --- | --- |\n")
		for _, l := range sortedLayers(s.ErrorsByLayer) {
			fmt.Fprintf(&b, "| %s | %d |\n", code(l), s.ErrorsByLayer[l])
		}
	}
	if ls := upstreamLines(s); len(ls) > 0 {
		b.WriteString("\n### Network (retries and resumes, whole job)\n\n")
		for _, l := range ls {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	if len(s.Diagnoses) > 0 {
		b.WriteString("\n### Diagnosis\n\n")
		for _, d := range s.Diagnoses {
			fmt.Fprintf(&b, "- %s\n", oneLine(d))
		}
	}
	_, err := io.WriteString(w, red.String(b.String()))
	return err
}

func sortedLayers(m map[string]int64) []string {
	layers := make([]string, 0, len(m))
	for l := range m {
		layers = append(layers, l)
	}
	sort.Strings(layers)
	return layers
}

// code renders s as a Markdown code span that is safe inside a table cell.
func code(s string) string {
	if s == "" {
		return "—"
	}
	s = strings.ReplaceAll(oneLine(s), "|", `\|`)
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + s + fence
}

// oneLine folds line breaks so a value cannot break a table or a list.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\r", " ")), " ")
}

// HumanDuration formats d for a summary: milliseconds below a second,
// tenths of a second above.
func HumanDuration(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}
