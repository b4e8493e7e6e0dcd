package junit

import (
	"encoding/xml"
	"strings"
	"testing"
)

// TestWriteCounts: the totals are the cases', whatever the caller set.
func TestWriteCounts(t *testing.T) {
	t.Parallel()
	s := &Suites{Tests: 99, Suites: []Suite{
		{Name: "a", Cases: []Case{{Name: "ok"}, {Name: "bad", Failure: &Message{Message: "m"}}, {Name: "skip", Skipped: &Message{}}}},
		{Name: "b", Cases: []Case{{Name: "bad", Failure: &Message{Text: "<&>"}}}},
	}}
	var b strings.Builder
	if err := Write(&b, s); err != nil {
		t.Fatal(err)
	}
	var got Suites
	if err := xml.Unmarshal([]byte(b.String()), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if got.Tests != 4 || got.Failures != 2 || got.Disabled != 1 || got.Suites[0].Tests != 3 || got.Suites[0].Failures != 1 || got.Suites[0].Skipped != 1 || got.Suites[1].Failures != 1 {
		t.Errorf("totals %+v, want 4 tests, 2 failures, 1 skipped (suite a: 3, 1, 1; suite b: 1 failure)\n%s", got, b.String())
	}
	if !strings.HasPrefix(b.String(), xml.Header) || got.Suites[1].Cases[0].Failure.Text != "<&>" {
		t.Errorf("not a well-formed document keeping the failure text:\n%s", b.String())
	}
}
