package ci

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/humanize"
	"github.com/goproxy-setup/goproxy-setup/internal/junit"
)

// SetupJUnit returns the JUnit report of a setup: one case for the agent
// and one for the warm-up. A failure is a <failure> of the step it happened
// in (the warm-up when the agent was serving, the agent otherwise), typed
// and named with its kind ("local fault: ...", "upstream answered: ..."),
// and the other case is skipped. When a transport failure has a diagnosis
// that names a failing layer, WriteSetupJUnit writes the diagnosis's own
// report instead, which has one case per layer.
func SetupJUnit(o *Outcome, now time.Time) *junit.Suites {
	const class = "goproxy-setup"
	agent := junit.Case{Name: "agent", Classname: class}
	warm := junit.Case{Name: "warm", Classname: class}
	switch {
	case o.Err != nil:
		f := o.failure()
		msg := &junit.Message{Message: f.name + ": " + oneLine(firstLine(o.Err.Error())), Type: f.slug, Text: f.headline + "\n\n" + o.Err.Error()}
		if f.ladder {
			msg.Text += "\n\n" + f.verdictLine()
		}
		if f.inWarm {
			agent.SystemOut = fmt.Sprintf("GOPROXY served by the agent at %s (upstream %s)", o.Addr, o.Upstream)
			warm.Failure = msg
		} else {
			agent.Failure = msg
			warm.Skipped = &junit.Message{Message: "setup failed before the warm-up"}
		}
	case o.Warm != nil:
		agent.SystemOut = fmt.Sprintf("GOPROXY served by the agent at %s (upstream %s)", o.Addr, o.Upstream)
		warm.Time = junit.Seconds(o.Warm.Duration)
		warm.SystemOut = fmt.Sprintf("%d modules, %d already cached, %d downloaded (%s)", o.Warm.Modules, o.Warm.Hits, o.Warm.Fetched, humanize.Bytes(o.Warm.Bytes))
	default:
		agent.SystemOut = fmt.Sprintf("GOPROXY served by the agent at %s (upstream %s)", o.Addr, o.Upstream)
		warm.Skipped = &junit.Message{Message: "not warmed"}
	}
	suite := junit.Suite{
		Name:      "goproxy-setup",
		Timestamp: now.UTC().Format("2006-01-02T15:04:05"),
		Cases:     []junit.Case{agent, warm},
		SystemOut: strings.Join(o.Warnings, "\n"),
	}
	return &junit.Suites{Name: "goproxy-setup", Suites: []junit.Suite{suite}}
}

// WriteSetupJUnit writes the setup's JUnit report, redacted: the
// diagnosis's report for a transport failure whose diagnosis names a
// failing layer, SetupJUnit's otherwise, so a failed setup always has a
// failing case.
func WriteSetupJUnit(w io.Writer, o *Outcome, now time.Time, red *Redactor) error {
	var b bytes.Buffer
	if f := o.failure(); o.Err != nil && f.ladder && f.layer != "" {
		if err := o.Diagnosis.WriteJUnit(&b); err != nil {
			return fmt.Errorf("render the diagnosis as JUnit: %w", err)
		}
	} else if err := junit.Write(&b, SetupJUnit(o, now)); err != nil {
		return err
	}
	_, err := io.WriteString(w, red.String(b.String()))
	return err
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
