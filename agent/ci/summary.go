package ci

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
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
		fmt.Fprintf(b, "| %d | %d | %d | %s | %s |\n", o.Warm.Modules, o.Warm.Hits, o.Warm.Fetched, HumanBytes(o.Warm.Bytes), HumanDuration(o.Warm.Duration))
	}
	if o.Latency != nil {
		b.WriteString("\n### Upstream latency\n\n| p50 | p90 | p99 |\n| --- | --- | --- |\n")
		fmt.Fprintf(b, "| %s | %s | %s |\n", HumanDuration(o.Latency.P50), HumanDuration(o.Latency.P90), HumanDuration(o.Latency.P99))
	}
}

func writeFailure(b *bytes.Buffer, o *Outcome) {
	b.WriteString("## goproxy-setup failed\n\n")
	if o.Diagnosis != nil {
		layer, summary := o.Diagnosis.Verdict()
		fmt.Fprintf(b, ":x: **Failing layer: %s** — %s\n\n", code(layer), oneLine(summary))
	}
	fmt.Fprintf(b, "```text\n%s\n```\n", strings.ReplaceAll(o.Err.Error(), "```", "'''"))
	if o.Diagnosis != nil {
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

// WriteStopSummary writes the Markdown summary of the agent's final stats.
// It says loudly when fetches failed after setup.
func WriteStopSummary(w io.Writer, s *Stats, red *Redactor) error {
	var b bytes.Buffer
	b.WriteString("## goproxy-setup report\n\n")
	if s.FailedAfterSetup > 0 {
		fmt.Fprintf(&b, ":x: **%d fetches failed after setup**: later steps asked for modules the agent could not get; see the errors by layer below and the agent log in the state directory.\n\n", s.FailedAfterSetup)
	} else {
		b.WriteString(":white_check_mark: No fetch failed after setup.\n\n")
	}
	b.WriteString("| Requests | Served | Upstream p50 | p90 | p99 |\n| --- | --- | --- | --- | --- |\n")
	fmt.Fprintf(&b, "| %d | %s | %s | %s | %s |\n", s.Requests, HumanBytes(s.Bytes), HumanDuration(s.Latency.P50), HumanDuration(s.Latency.P90), HumanDuration(s.Latency.P99))
	if len(s.ErrorsByLayer) > 0 {
		b.WriteString("\n### Upstream errors by layer\n\n| Layer | Errors |\n| --- | --- |\n")
		layers := make([]string, 0, len(s.ErrorsByLayer))
		for l := range s.ErrorsByLayer {
			layers = append(layers, l)
		}
		sort.Strings(layers)
		for _, l := range layers {
			fmt.Fprintf(&b, "| %s | %d |\n", code(l), s.ErrorsByLayer[l])
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

// HumanBytes formats n with a binary unit: "512 B", "12.3 KiB".
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// HumanDuration formats d for a summary: milliseconds below a second,
// tenths of a second above.
func HumanDuration(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}
