package diagnose

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/junit"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// sampleReport is a fixed report: one upstream whose IPv4 address fails
// the client certificate and whose IPv6 address is refused, plus warnings
// and skips, so every renderer shows every status.
func sampleReport() *Report {
	tg := "https://proxy.example.test:8443/"
	checks := []Check{
		{Layer: LayerEnv, Status: StatusOK, Detail: "GOPROXY=http://127.0.0.1:41234/REDACTED GONOSUMDB=corp.example/*"},
		{Layer: LayerEnv, Status: StatusWarn, Detail: "GOINSECURE=corp.example/*: the go command fetches matching modules without verifying TLS", Remedy: "unset GOINSECURE"},
		{Target: tg, Layer: LayerDNS, Status: StatusOK, Value: "1.2ms", Detail: "proxy.example.test → 192.0.2.10, 2001:db8::10 (resolver 127.0.0.53:53)", Duration: 1200 * time.Microsecond},
		{Target: tg, Address: "192.0.2.10:8443", Layer: LayerTCP, Status: StatusOK, Value: "3ms", Detail: "connected to 192.0.2.10:8443", Duration: 3 * time.Millisecond},
		{Target: tg, Address: "192.0.2.10:8443", Layer: LayerTLS, Status: StatusOK, Value: "TLS 1.3", Detail: `TLS 1.3, TLS_AES_128_GCM_SHA256; chain "proxy.example.test" ← "Corp Intermediate" ← "Corp Root"; expires in 60d`, Duration: 11 * time.Millisecond},
		{Target: tg, Address: "192.0.2.10:8443", Layer: LayerClientCert, Status: StatusFail, Value: "rejected", Detail: `rejected with HTTP 400 "The SSL certificate error"; ours "ci-job" (issuer "Old CA"): not issued by a CA the server accepts; server accepts "Corp Root"`, Remedy: `use a client certificate issued by a CA the server accepts ("Corp Root"), or add our issuer to the server's client CA list (nginx: ssl_client_certificate)`},
		{Target: tg, Address: "192.0.2.10:8443", Layer: LayerClock, Status: StatusSkip, Detail: "skipped: the client certificate was rejected"},
		{Target: tg, Address: "192.0.2.10:8443", Layer: LayerHTTP, Status: StatusSkip, Detail: "skipped: the client certificate was rejected"},
		{Target: tg, Address: "[2001:db8::10]:8443", Layer: LayerTCP, Status: StatusFail, Value: "refused", Detail: "connect to [2001:db8::10]:8443: refused after 0.4ms", Remedy: "nothing listens on [2001:db8::10]:8443: check the port in --upstream and that the proxy server runs there", Duration: 400 * time.Microsecond},
		{Target: tg, Address: "[2001:db8::10]:8443", Layer: LayerTLS, Status: StatusSkip, Detail: "skipped: TCP connect failed"},
		{Target: tg, Address: "[2001:db8::10]:8443", Layer: LayerClientCert, Status: StatusSkip, Detail: "skipped: TCP connect failed"},
		{Target: tg, Address: "[2001:db8::10]:8443", Layer: LayerClock, Status: StatusSkip, Detail: "skipped: TCP connect failed"},
		{Target: tg, Address: "[2001:db8::10]:8443", Layer: LayerHTTP, Status: StatusSkip, Detail: "skipped: TCP connect failed"},
		{Layer: LayerSumDB, Status: StatusOK, Value: "not consulted", Detail: "GONOSUMDB/GOPRIVATE covers the module: sum.golang.org is not consulted"},
	}
	return &Report{
		Started:  time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC),
		Duration: 123 * time.Millisecond,
		Targets:  []string{tg},
		Checks:   checks,
		Verdict:  verdictOf(checks),
	}
}

func okReport() *Report {
	tg := "https://127.0.0.1:8443/"
	checks := []Check{
		{Layer: LayerEnv, Status: StatusOK, Detail: "no Go or proxy variables set"},
		{Target: tg, Layer: LayerDNS, Status: StatusOK, Value: "127.0.0.1", Detail: "IP address 127.0.0.1: no lookup"},
		{Target: tg, Address: "127.0.0.1:8443", Layer: LayerTCP, Status: StatusOK, Detail: "connected to 127.0.0.1:8443", Duration: 100 * time.Microsecond},
		{Target: tg, Address: "127.0.0.1:8443", Layer: LayerHTTP, Status: StatusOK, Value: "200", Detail: "GET example.com/m/@v/list: 200 OK; first byte 2ms", Duration: 2 * time.Millisecond},
	}
	return &Report{Started: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC), Duration: 5 * time.Millisecond, Targets: []string{tg}, Checks: checks, Verdict: verdictOf(checks)}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestRenderGolden(t *testing.T) {
	t.Parallel()
	for _, rep := range []struct {
		name string
		r    *Report
	}{{"fail", sampleReport()}, {"ok", okReport()}} {
		for _, f := range []struct {
			ext   string
			write func(*bytes.Buffer, *Report) error
		}{
			{"txt", func(b *bytes.Buffer, r *Report) error { return WriteText(b, r, false) }},
			{"color.txt", func(b *bytes.Buffer, r *Report) error { return WriteText(b, r, true) }},
			{"md", func(b *bytes.Buffer, r *Report) error { return WriteMarkdown(b, r) }},
			{"json", func(b *bytes.Buffer, r *Report) error { return WriteJSON(b, r) }},
			{"junit.xml", func(b *bytes.Buffer, r *Report) error { return WriteJUnit(b, r) }},
			{"annotations.txt", func(b *bytes.Buffer, r *Report) error { return WriteGitHubAnnotations(b, r) }},
			{"brief.txt", func(b *bytes.Buffer, r *Report) error { _, err := b.WriteString(r.Brief(8)); return err }},
		} {
			t.Run(rep.name+"."+f.ext, func(t *testing.T) {
				t.Parallel()
				var b bytes.Buffer
				if err := f.write(&b, rep.r); err != nil {
					t.Fatal(err)
				}
				golden(t, rep.name+"."+f.ext, b.Bytes())
			})
		}
	}
}

func TestVerdictOrder(t *testing.T) {
	t.Parallel()
	r := sampleReport()
	if r.Verdict.Status != StatusFail || r.Verdict.Layer != LayerClientCert || r.Verdict.Address != "192.0.2.10:8443" {
		t.Errorf("verdict = %+v, want the first failure (client-cert at 192.0.2.10:8443)", r.Verdict)
	}
	if ok := okReport().Verdict; ok.Status != StatusOK || ok.Layer != "" {
		t.Errorf("ok verdict = %+v, want status ok and no layer", ok)
	}
	envOnly := verdictOf([]Check{{Layer: LayerEnv, Status: StatusWarn, Detail: "e"}, {Layer: LayerHTTP, Status: StatusWarn, Detail: "h"}})
	if envOnly.Layer != LayerHTTP {
		t.Errorf("verdict layer = %q, want http (a ladder warning before an environment warning)", envOnly.Layer)
	}
}

func TestJSONContract(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := WriteJSON(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Checks  []map[string]any `json:"checks"`
		Verdict map[string]any   `json:"verdict"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	layers := map[string]bool{}
	for _, l := range []string{"env", "dns", "tcp", "proxy", "tls", "client-cert", "clock", "http", "sumdb"} {
		layers[l] = true
	}
	for i, c := range doc.Checks {
		for _, k := range []string{"layer", "status", "detail", "remedy", "duration_ms"} {
			if _, ok := c[k]; !ok {
				t.Errorf("checks[%d] has no %q", i, k)
			}
		}
		if !layers[c["layer"].(string)] {
			t.Errorf("checks[%d].layer = %v, want one of the Contract's layers", i, c["layer"])
		}
	}
	for _, k := range []string{"layer", "summary"} {
		if _, ok := doc.Verdict[k]; !ok {
			t.Errorf("verdict has no %q", k)
		}
	}
	// Round trip.
	var back struct {
		Checks []Check `json:"checks"`
	}
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if got, want := back.Checks[2].Duration, 1200*time.Microsecond; got != want {
		t.Errorf("round-tripped duration = %s, want %s", got, want)
	}
}

func TestJUnitWellFormed(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := WriteJUnit(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	var s junit.Suites
	if err := xml.Unmarshal(b.Bytes(), &s); err != nil {
		t.Fatalf("JUnit output does not parse: %v", err)
	}
	if s.Tests != len(sampleReport().Checks) || s.Failures != 2 || s.Disabled != 6 {
		t.Errorf("tests/failures/skipped = %d/%d/%d, want %d/2/6", s.Tests, s.Failures, s.Disabled, len(sampleReport().Checks))
	}
}

func TestBriefLines(t *testing.T) {
	t.Parallel()
	r := sampleReport()
	for _, n := range []int{1, 2, 3, 8, 0} {
		b := r.Brief(n)
		max := n
		if max <= 0 {
			max = 8
		}
		if got := strings.Count(b, "\n"); got > max || got == 0 {
			t.Errorf("Brief(%d) has %d lines, want 1..%d:\n%s", n, got, max, b)
		}
		if !strings.HasPrefix(b, "goproxy-setup: upstream https://proxy.example.test:8443/ (192.0.2.10:8443) failed at client-cert: ") {
			t.Errorf("Brief(%d) first line = %q, want upstream, address and layer", n, strings.SplitN(b, "\n", 2)[0])
		}
	}
}
