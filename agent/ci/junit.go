package ci

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"
)

// JUnitSuites is the root of a JUnit XML report in the widely used
// Jenkins/Surefire shape that GitLab's `reports: junit` reads.
type JUnitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr,omitempty"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr,omitempty"`
	Suites   []JUnitSuite `xml:"testsuite"`
}

// JUnitSuite is one <testsuite>.
type JUnitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Skipped   int         `xml:"skipped,attr"`
	Time      string      `xml:"time,attr,omitempty"`
	Timestamp string      `xml:"timestamp,attr,omitempty"`
	Cases     []JUnitCase `xml:"testcase"`
	SystemOut string      `xml:"system-out,omitempty"`
}

// JUnitCase is one <testcase>.
type JUnitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr,omitempty"`
	Skipped   *JUnitMessage `xml:"skipped"`
	Failure   *JUnitMessage `xml:"failure"`
	SystemOut string        `xml:"system-out,omitempty"`
}

// JUnitMessage is a <failure> or <skipped> element.
type JUnitMessage struct {
	Message string `xml:"message,attr,omitempty"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// seconds formats d as JUnit's time attribute.
func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// count fills in the totals from the cases.
func (s *JUnitSuites) count() {
	s.Tests, s.Failures, s.Errors = 0, 0, 0
	for i := range s.Suites {
		su := &s.Suites[i]
		su.Tests, su.Failures, su.Skipped = len(su.Cases), 0, 0
		for _, c := range su.Cases {
			if c.Failure != nil {
				su.Failures++
			}
			if c.Skipped != nil {
				su.Skipped++
			}
		}
		s.Tests += su.Tests
		s.Failures += su.Failures
		s.Errors += su.Errors
	}
}

// WriteJUnit writes s as an XML document with the totals filled in.
func WriteJUnit(w io.Writer, s *JUnitSuites) error {
	s.count()
	var b bytes.Buffer
	b.WriteString(xml.Header)
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("encode JUnit report: %w", err)
	}
	b.WriteString("\n")
	_, err := w.Write(b.Bytes())
	return err
}

// SetupJUnit returns the JUnit report of a setup: one case for the agent
// and one for the warm-up. A failure is a <failure> of the step it happened
// in (the warm-up when the agent was serving, the agent otherwise), typed
// and named with its kind ("local fault: ...", "upstream answered: ..."),
// and the other case is skipped. When a transport failure has a diagnosis
// that names a failing layer, WriteSetupJUnit writes the diagnosis's own
// report instead, which has one case per layer.
func SetupJUnit(o *Outcome, now time.Time) *JUnitSuites {
	const class = "goproxy-setup"
	agent := JUnitCase{Name: "agent", Classname: class}
	warm := JUnitCase{Name: "warm", Classname: class}
	switch {
	case o.Err != nil:
		f := o.failure()
		msg := &JUnitMessage{Message: f.name + ": " + oneLine(firstLine(o.Err.Error())), Type: f.slug, Text: f.headline + "\n\n" + o.Err.Error()}
		if f.ladder {
			msg.Text += "\n\n" + f.verdictLine()
		}
		if f.inWarm {
			agent.SystemOut = fmt.Sprintf("GOPROXY served by the agent at %s (upstream %s)", o.Addr, o.Upstream)
			warm.Failure = msg
		} else {
			agent.Failure = msg
			warm.Skipped = &JUnitMessage{Message: "setup failed before the warm-up"}
		}
	case o.Warm != nil:
		agent.SystemOut = fmt.Sprintf("GOPROXY served by the agent at %s (upstream %s)", o.Addr, o.Upstream)
		warm.Time = seconds(o.Warm.Duration)
		warm.SystemOut = fmt.Sprintf("%d modules, %d already cached, %d downloaded (%s)", o.Warm.Modules, o.Warm.Hits, o.Warm.Fetched, HumanBytes(o.Warm.Bytes))
	default:
		agent.SystemOut = fmt.Sprintf("GOPROXY served by the agent at %s (upstream %s)", o.Addr, o.Upstream)
		warm.Skipped = &JUnitMessage{Message: "not warmed"}
	}
	suite := JUnitSuite{
		Name:      "goproxy-setup",
		Timestamp: now.UTC().Format("2006-01-02T15:04:05"),
		Cases:     []JUnitCase{agent, warm},
		SystemOut: strings.Join(o.Warnings, "\n"),
	}
	return &JUnitSuites{Name: "goproxy-setup", Suites: []JUnitSuite{suite}}
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
	} else if err := WriteJUnit(&b, SetupJUnit(o, now)); err != nil {
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
