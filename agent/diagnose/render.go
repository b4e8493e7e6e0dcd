package diagnose

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/junit"
)

// Brief returns the short text/plain body the agent sends with a 502 or
// 504: the first line names the upstream, the failing layer and the cause,
// the second the fix; then other failures while lines last. maxLines <= 0
// means 8, which is what cmd/go prints of a server response.
func (r *Report) Brief(maxLines int) string {
	if maxLines <= 0 {
		maxLines = 8
	}
	v := r.Verdict
	where := v.Target
	if where == "" && len(r.Targets) > 0 {
		where = strings.Join(r.Targets, ", ")
	}
	if v.Address != "" {
		where += " (" + v.Address + ")"
	}
	var lines []string
	switch v.Status {
	case StatusOK:
		lines = append(lines, fmt.Sprintf("goproxy-setup: upstream %s: every diagnostic check passed (%s); the failure may be intermittent", where, v.Summary))
	default:
		verb := "failed at"
		if v.Status == StatusWarn {
			verb = "warning at"
		}
		lines = append(lines, fmt.Sprintf("goproxy-setup: upstream %s %s %s: %s", where, verb, v.Layer, detailOf(r, v)))
		if v.Remedy != "" {
			lines = append(lines, "fix: "+v.Remedy)
		}
	}
	first := true
	for _, c := range r.Checks {
		if c.Status != StatusFail {
			continue
		}
		if first && c.Layer == v.Layer && c.Target == v.Target && c.Address == v.Address {
			first = false
			continue
		}
		if len(lines) >= maxLines-1 {
			break
		}
		at := c.Layer
		if c.Address != "" {
			at += " (" + c.Address + ")"
		}
		lines = append(lines, "also: "+at+": "+c.Detail)
	}
	if len(lines) < maxLines {
		lines = append(lines, "run 'goproxy-setup diagnose' for the full report")
	}
	if len(lines) > maxLines {
		lines = lines[:maxLines]
	}
	return strings.Join(lines, "\n") + "\n"
}

func detailOf(r *Report, v Verdict) string {
	for _, c := range r.Checks {
		if c.Layer == v.Layer && c.Target == v.Target && c.Address == v.Address && c.Status == v.Status {
			return c.Detail
		}
	}
	return v.Summary
}

const (
	ansiReset = "\x1b[0m"
	ansiBold  = "\x1b[1m"
	ansiDim   = "\x1b[2m"
	ansiRed   = "\x1b[31m"
	ansiGreen = "\x1b[32m"
	ansiYel   = "\x1b[33m"
)

func statusWord(s Status) string {
	switch s {
	case StatusFail:
		return "FAIL"
	case StatusWarn:
		return "warn"
	}
	return string(s)
}

func statusColor(s Status) string {
	switch s {
	case StatusOK:
		return ansiGreen
	case StatusWarn:
		return ansiYel
	case StatusFail:
		return ansiRed + ansiBold
	}
	return ansiDim
}

// WriteText writes the report for a terminal: checks grouped by target,
// columns aligned, the remedy under each failure or warning, the verdict
// last. color adds ANSI colours (callers pass true only for a TTY).
func WriteText(w io.Writer, r *Report, color bool) error {
	paint := func(code, s string) string {
		if !color || code == "" {
			return s
		}
		return code + s + ansiReset
	}
	var b strings.Builder
	fmt.Fprintf(&b, "goproxy-setup diagnose: %s, %s, %s\n", r.Started.UTC().Format(time.RFC3339), plural(len(r.Targets), "upstream"), round(r.Duration))
	layerW, addrW := 5, 0
	for _, c := range r.Checks {
		layerW = max(layerW, len(c.Layer))
		addrW = max(addrW, len(c.Address))
	}
	group := "\x00"
	for _, c := range r.Checks {
		g := c.Target
		if g != group {
			group = g
			title := g
			if title == "" {
				title = "environment"
				if c.Layer == LayerSumDB {
					title = "checksum database"
				}
			}
			fmt.Fprintf(&b, "\n%s\n", paint(ansiBold, title))
		}
		dur := ""
		if c.Duration > 0 {
			dur = round(c.Duration)
		}
		row := fmt.Sprintf("  %s  %-*s  %-*s  %8s  ", paint(statusColor(c.Status), fmt.Sprintf("%-4s", statusWord(c.Status))), layerW, c.Layer, addrW, c.Address, dur)
		fmt.Fprintf(&b, "%s%s\n", row, c.Detail)
		if c.Remedy != "" && (c.Status == StatusFail || c.Status == StatusWarn) {
			fmt.Fprintf(&b, "  %s  %s\n", strings.Repeat(" ", 4+2+layerW+2+addrW+2+8), paint(ansiDim, "fix: ")+c.Remedy)
		}
	}
	v := r.Verdict
	b.WriteString("\n")
	switch v.Status {
	case StatusOK:
		fmt.Fprintf(&b, "%s %s\n", paint(ansiGreen+ansiBold, "verdict: ok:"), v.Summary)
	default:
		fmt.Fprintf(&b, "%s %s\n", paint(statusColor(v.Status), "verdict: "+statusWord(v.Status)+" at "+v.Layer+":"), v.Summary)
		if v.Remedy != "" {
			fmt.Fprintf(&b, "fix: %s\n", v.Remedy)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mdEscape(s string) string {
	r := strings.NewReplacer("|", `\|`, "\n", " ", "<", "&lt;", ">", "&gt;", "`", "'")
	return r.Replace(s)
}

var statusIcon = map[Status]string{StatusOK: "✅", StatusWarn: "⚠️", StatusFail: "❌", StatusSkip: "⏭️"}

// WriteMarkdown writes the report for a GitHub job summary: the verdict and
// the failing (then warning) checks first, every check folded below.
func WriteMarkdown(w io.Writer, r *Report) error {
	var b strings.Builder
	v := r.Verdict
	switch v.Status {
	case StatusOK:
		fmt.Fprintf(&b, "### %s goproxy-setup diagnose: all ok\n\n%s across %s.\n", statusIcon[StatusOK], v.Summary, plural(len(r.Targets), "upstream"))
	default:
		word := "failed"
		if v.Status == StatusWarn {
			word = "warning"
		}
		fmt.Fprintf(&b, "### %s goproxy-setup diagnose: %s %s\n\n", statusIcon[v.Status], v.Layer, word)
		fmt.Fprintf(&b, "%s\n", mdEscape(v.Summary))
		if v.Remedy != "" {
			fmt.Fprintf(&b, "\n**Fix:** %s\n", mdEscape(v.Remedy))
		}
		var bad []Check
		for _, st := range []Status{StatusFail, StatusWarn} {
			for _, c := range r.Checks {
				if c.Status == st {
					bad = append(bad, c)
				}
			}
		}
		b.WriteString("\n| | layer | upstream | address | detail | fix |\n|---|---|---|---|---|---|\n")
		for _, c := range bad {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", statusIcon[c.Status], c.Layer, mdEscape(c.Target), mdEscape(c.Address), mdEscape(c.Detail), mdEscape(c.Remedy))
		}
	}
	fmt.Fprintf(&b, "\n<details><summary>All %s (%s, started %s)</summary>\n\n", plural(len(r.Checks), "check"), round(r.Duration), r.Started.UTC().Format(time.RFC3339))
	b.WriteString("| | layer | upstream | address | time | detail |\n|---|---|---|---|---|---|\n")
	for _, c := range r.Checks {
		dur := ""
		if c.Duration > 0 {
			dur = round(c.Duration)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", statusIcon[c.Status], c.Layer, mdEscape(c.Target), mdEscape(c.Address), dur, mdEscape(c.Detail))
	}
	b.WriteString("\n</details>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report in the Contract's JSON shape: checks (layer,
// status, detail, remedy, duration_ms, ...) and verdict (layer, summary,
// ...), indented.
func WriteJSON(w io.Writer, r *Report) error {
	out := struct {
		Started    time.Time `json:"started"`
		DurationMS float64   `json:"duration_ms"`
		Targets    []string  `json:"targets"`
		Checks     []Check   `json:"checks"`
		Verdict    Verdict   `json:"verdict"`
	}{r.Started.UTC(), ms(r.Duration), r.Targets, r.Checks, r.Verdict}
	if out.Targets == nil {
		out.Targets = []string{}
	}
	if out.Checks == nil {
		out.Checks = []Check{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// WriteJUnit writes the report as JUnit XML (GitLab's test report): one
// testcase per check, a failure per failed check, warnings in system-out.
func WriteJUnit(w io.Writer, r *Report) error {
	s := junit.Suite{Name: "goproxy-setup diagnose", Time: junit.Seconds(r.Duration), Timestamp: r.Started.UTC().Format(time.RFC3339)}
	for _, c := range r.Checks {
		name := c.Layer
		if c.Target != "" {
			name += " " + c.Target
		}
		if c.Address != "" {
			name += " (" + c.Address + ")"
		}
		jc := junit.Case{Classname: "diagnose." + c.Layer, Name: name, Time: junit.Seconds(c.Duration)}
		switch c.Status {
		case StatusFail:
			jc.Failure = &junit.Message{Message: c.Detail, Type: c.Layer, Text: c.Detail + "\nfix: " + c.Remedy + "\n"}
		case StatusSkip:
			jc.Skipped = &junit.Message{Message: c.Detail}
		case StatusWarn:
			jc.SystemOut = "warning: " + c.Detail + "\nfix: " + c.Remedy + "\n"
		default:
			jc.SystemOut = c.Detail + "\n"
		}
		s.Cases = append(s.Cases, jc)
	}
	return junit.Write(w, &junit.Suites{Name: "goproxy-setup", Time: s.Time, Suites: []junit.Suite{s}})
}

func ghData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

func ghProp(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

// WriteGitHubAnnotations writes GitHub workflow commands: ::error for each
// failed check, ::warning for each warning, and one ::notice when all is ok.
func WriteGitHubAnnotations(w io.Writer, r *Report) error {
	var b strings.Builder
	n := 0
	for _, c := range r.Checks {
		kind := ""
		switch c.Status {
		case StatusFail:
			kind = "error"
		case StatusWarn:
			kind = "warning"
		default:
			continue
		}
		n++
		title := "goproxy-setup diagnose: " + c.Layer
		if c.Target != "" {
			title += " " + c.Target
		}
		if c.Address != "" {
			title += " (" + c.Address + ")"
		}
		msg := c.Detail
		if c.Remedy != "" {
			msg += "\nfix: " + c.Remedy
		}
		fmt.Fprintf(&b, "::%s title=%s::%s\n", kind, ghProp(title), ghData(msg))
	}
	if n == 0 {
		fmt.Fprintf(&b, "::notice title=%s::%s\n", ghProp("goproxy-setup diagnose"), ghData(r.Verdict.Summary))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
