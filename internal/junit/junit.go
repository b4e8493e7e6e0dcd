// Package junit owns the JUnit XML report: the model, in the
// Jenkins/Surefire shape that GitLab's `reports: junit` reads (and the
// schema agent/ci's tests validate against), and its writer, which fills
// in the totals from the cases. The diagnosis's report and the CI setup's
// report are both written with it.
package junit

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"time"
)

// Suites is the root, <testsuites>.
type Suites struct {
	XMLName  xml.Name `xml:"testsuites"`
	Name     string   `xml:"name,attr,omitempty"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	// Disabled is the Jenkins schema's name for the total of skipped
	// tests; <testsuites> has no "skipped" attribute there.
	Disabled int     `xml:"disabled,attr"`
	Time     string  `xml:"time,attr,omitempty"`
	Suites   []Suite `xml:"testsuite"`
}

// Suite is one <testsuite>.
type Suite struct {
	Name      string `xml:"name,attr"`
	Tests     int    `xml:"tests,attr"`
	Failures  int    `xml:"failures,attr"`
	Errors    int    `xml:"errors,attr"`
	Skipped   int    `xml:"skipped,attr"`
	Time      string `xml:"time,attr,omitempty"`
	Timestamp string `xml:"timestamp,attr,omitempty"`
	Cases     []Case `xml:"testcase"`
	SystemOut string `xml:"system-out,omitempty"`
}

// Case is one <testcase>: passed, or with a Failure, or Skipped.
type Case struct {
	Classname string   `xml:"classname,attr"`
	Name      string   `xml:"name,attr"`
	Time      string   `xml:"time,attr,omitempty"`
	Skipped   *Message `xml:"skipped,omitempty"`
	Failure   *Message `xml:"failure,omitempty"`
	SystemOut string   `xml:"system-out,omitempty"`
}

// Message is a <failure> or <skipped> element.
type Message struct {
	Message string `xml:"message,attr,omitempty"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// Seconds formats d as a time attribute.
func Seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// count fills in the totals from the cases.
func (s *Suites) count() {
	s.Tests, s.Failures, s.Errors, s.Disabled = 0, 0, 0, 0
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
		s.Disabled += su.Skipped
	}
}

// Write writes s as an XML document, with the totals filled in from the
// cases.
func Write(w io.Writer, s *Suites) error {
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
