package diagnose

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

const canary = "CANARYs3cr3t"

// TestNoSecretInReport puts a canary into every place a secret can hide
// (URL user info, a capability token path, the query, the proxy's
// password, GOFLAGS and GOAUTH values) and checks no renderer prints it.
func TestNoSecretInReport(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	client := goodClient(t, ca)
	var sawToken atomic.Bool // handlers run concurrently
	port := startUpstream(t, upstreamSpec{serverLeaf: serverLeaf(t, ca, nil), clientAuth: tls.RequireAndVerifyClientCert, clientCAs: ca.Pool(),
		handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, canary) {
				sawToken.Store(true)
			}
			http.Error(w, "boom "+canary, http.StatusInternalServerError)
		})})
	dns := startDNS(t, false, map[string][]netip.Addr{"proxy.test": {loopback4}})
	targets := []Target{
		target("https://user:"+canary+"@proxy.test:"+port+"/"+canary+"0123456789/?token="+canary, ca, client),
		target("https://proxy.test:"+port+"/x/"+canary+"00000000000000000000000000", ca, client),
	}
	o := baseOptions(dns)
	o.SumDB = "sum.test+" + canary + " https://u:" + canary + "@127.0.0.1:" + closedPort(t) + "/?k=" + canary
	o.Env = envMap(map[string]string{
		"GOPROXY":     "http://127.0.0.1:1/" + canary + "0123456789abcdef,direct",
		"GOFLAGS":     "-mod=mod -ldflags=-X=main.key=" + canary,
		"GOAUTH":      "netrc;/usr/bin/helper --token " + canary,
		"NO_PROXY":    "proxy.test",
		"HTTPS_PROXY": "http://u:" + canary + "@127.0.0.1:1",
	})
	r := Run(context.Background(), targets, o)
	if !sawToken.Load() {
		t.Errorf("the upstream never saw the path token: the probe must use the real URL")
	}
	var all bytes.Buffer
	for _, w := range []func(io.Writer, *Report) error{
		func(w io.Writer, r *Report) error { return WriteText(w, r, true) },
		WriteMarkdown, WriteJSON, WriteJUnit, WriteGitHubAnnotations,
	} {
		if err := w(&all, r); err != nil {
			t.Fatal(err)
		}
	}
	all.WriteString(r.Brief(8))
	if bytes.Contains(all.Bytes(), []byte(canary)) {
		t.Errorf("a renderer printed the canary secret:\n%s", all.String())
	}
	if !strings.Contains(all.String(), "REDACTED") {
		t.Errorf("want the token path shown as REDACTED:\n%s", all.String())
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	other := testenv.NewCA(t)
	dns := startDNS(t, false, nil)
	silent := startDNS(t, true, nil)
	okServer := startUpstream(t, upstreamSpec{serverLeaf: serverLeaf(t, ca, nil), clientAuth: tls.RequireAndVerifyClientCert, clientCAs: ca.Pool()})
	expired := startUpstream(t, upstreamSpec{serverLeaf: serverLeaf(t, ca, func(s *testenv.CertSpec) {
		s.NotBefore, s.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	})})
	plain := httptest.NewServer(moduleHandler(t))
	t.Cleanup(plain.Close)
	_, plainPort, _ := net.SplitHostPort(plain.Listener.Addr().String())

	get := func(t *testing.T, u string, roots *x509.CertPool, res *net.Resolver, proxy string) error {
		d := &net.Dialer{Resolver: res, Timeout: time.Second}
		tr := &http.Transport{DialContext: d.DialContext, TLSClientConfig: &tls.Config{RootCAs: roots}}
		if proxy != "" {
			pu, _ := url.Parse(proxy)
			tr.Proxy = http.ProxyURL(pu)
		}
		defer tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Fatalf("GET %s succeeded, want an error", u)
		}
		return err
	}
	for _, tc := range []struct {
		name       string
		err        func(t *testing.T) error
		wantLayer  string
		wantRemedy string
	}{
		{"nxdomain", func(t *testing.T) error { return get(t, "https://nope.test/", nil, dns.resolver(), "") }, LayerDNS, "NXDOMAIN"},
		{"dns timeout", func(t *testing.T) error { return get(t, "https://nope.test/", nil, silent.resolver(), "") }, LayerDNS, "does not answer"},
		{"refused", func(t *testing.T) error { return get(t, "https://127.0.0.1:"+closedPort(t)+"/", nil, nil, "") }, LayerTCP, "refused"},
		{"connect timeout", func(t *testing.T) error { return get(t, "https://127.0.0.1:"+blackholePort(t)+"/", nil, nil, "") }, LayerTCP, "timed out"},
		{"proxy down", func(t *testing.T) error {
			return get(t, "https://proxy.test:"+okServer+"/", nil, nil, "http://127.0.0.1:"+closedPort(t))
		}, LayerProxy, "NO_PROXY"},
		{"unknown authority", func(t *testing.T) error { return get(t, "https://127.0.0.1:"+okServer+"/", other.Pool(), nil, "") }, LayerTLS, "--ca-cert"},
		{"expired", func(t *testing.T) error { return get(t, "https://127.0.0.1:"+expired+"/", ca.Pool(), nil, "") }, LayerTLS, "renew"},
		{"not TLS", func(t *testing.T) error { return get(t, "https://127.0.0.1:"+plainPort+"/", ca.Pool(), nil, "") }, LayerTLS, "does not speak TLS"},
		{"no client cert", func(t *testing.T) error { return get(t, "https://127.0.0.1:"+okServer+"/", ca.Pool(), nil, "") }, LayerClientCert, "--client-cert"},
		{"deadline", func(*testing.T) error { return fmt.Errorf("fetch: %w", context.DeadlineExceeded) }, LayerTimeout, "--timeout"},
		{"eof", func(*testing.T) error { return fmt.Errorf("read body: %w", io.ErrUnexpectedEOF) }, LayerHTTP, "mid-response"},
		{"nil", func(*testing.T) error { return nil }, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.err(t)
			layer, remedy := Classify(err)
			if layer != tc.wantLayer || !strings.Contains(remedy, tc.wantRemedy) {
				t.Errorf("Classify(%v) = %q, %q; want %q and a remedy mentioning %q", err, layer, remedy, tc.wantLayer, tc.wantRemedy)
			}
		})
	}
}

func TestEnvChecks(t *testing.T) {
	t.Parallel()
	u, _ := url.Parse("https://proxy.corp.test/")
	for _, tc := range []struct {
		name    string
		env     map[string]string
		module  string
		want    Status
		wantSub string
	}{
		{"clean", nil, "", StatusOK, "no Go or proxy variables set"},
		{"off", map[string]string{"GOPROXY": "off"}, "", StatusWarn, "GOPROXY=off"},
		{"insecure", map[string]string{"GOINSECURE": "corp.test"}, "", StatusWarn, "without verifying TLS"},
		{"sumdb off", map[string]string{"GOSUMDB": "off"}, "", StatusWarn, "GOSUMDB=off"},
		{"private bypasses proxy", map[string]string{"GOPRIVATE": "corp.test/*"}, "corp.test/lib@v1.0.0", StatusWarn, "not through the proxy"},
		{"noproxy none keeps it proxied", map[string]string{"GOPRIVATE": "corp.test/*", "GONOPROXY": "none"}, "corp.test/lib@v1.0.0", StatusOK, "checksum database is not consulted"},
		{"proxy applies", map[string]string{"HTTPS_PROXY": "http://10.0.0.1:3128"}, "", StatusOK, "through the proxy http://10.0.0.1:3128"},
		{"no_proxy exempts", map[string]string{"HTTPS_PROXY": "http://10.0.0.1:3128", "NO_PROXY": ".corp.test"}, "", StatusOK, "go direct"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := Options{Env: envMap(tc.env)}.withDefaults()
			cs := envChecks(o, []Target{{URL: u, Module: tc.module}})
			v := verdictOf(cs)
			var details []string
			for _, c := range cs {
				details = append(details, c.Detail)
			}
			all := strings.Join(details, "\n")
			if v.Status != tc.want || !strings.Contains(all, tc.wantSub) {
				t.Errorf("env checks = %s with\n%s\nwant %s mentioning %q", v.Status, all, tc.want, tc.wantSub)
			}
		})
	}
}

func TestSumDB(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	client := goodClient(t, ca)
	proxied := startUpstream(t, upstreamSpec{serverLeaf: serverLeaf(t, ca, nil), clientAuth: tls.RequireAndVerifyClientCert, clientCAs: ca.Pool(),
		handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/sumdb/sum.golang.org/supported" {
				return
			}
			fmt.Fprintln(w, "v1.0.0")
		})})
	notProxied := startUpstream(t, upstreamSpec{serverLeaf: serverLeaf(t, ca, nil)})
	direct := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/latest" {
			fmt.Fprintln(w, "go.sum database tree")
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(direct.Close)
	dead := "http://127.0.0.1:" + closedPort(t)
	for _, tc := range []struct {
		name, port, sumdb, module string
		env                       map[string]string
		want                      Status
		wantSub                   string
	}{
		{"proxied by the upstream", proxied, "sum.golang.org", testModule, nil, StatusOK, "proxied by"},
		{"reachable directly", notProxied, "sum.test+key " + direct.URL, testModule, nil, StatusOK, "reachable directly"},
		{"unreachable", notProxied, "sum.test+key " + dead, testModule, nil, StatusFail, "unreachable"},
		{"covered by GONOSUMDB", notProxied, "sum.test+key " + dead, testModule, map[string]string{"GONOSUMDB": "example.com"}, StatusOK, "not consulted"},
		{"off", notProxied, "", testModule, map[string]string{"GOSUMDB": "off"}, StatusSkip, "GOSUMDB=off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := baseOptions(nil)
			o.SumDB = tc.sumdb
			o.Env = envMap(tc.env)
			r := Run(context.Background(), []Target{target("https://127.0.0.1:"+tc.port+"/", ca, client)}, o)
			var got *Check
			for i := range r.Checks {
				if r.Checks[i].Layer == LayerSumDB {
					got = &r.Checks[i]
				}
			}
			if got == nil {
				t.Fatalf("no sumdb check in %+v", r.Checks)
			}
			if got.Status != tc.want || !strings.Contains(got.Detail, tc.wantSub) {
				t.Errorf("sumdb check = %s %q, want %s mentioning %q", got.Status, got.Detail, tc.want, tc.wantSub)
			}
			if tc.want == StatusFail && !strings.Contains(got.Remedy, "GONOSUMDB") {
				t.Errorf("sumdb remedy = %q, want it to mention GONOSUMDB", got.Remedy)
			}
		})
	}
}

func TestRunHonoursTotalDeadline(t *testing.T) {
	t.Parallel()
	// A silent DNS server and a blackholed port with a step deadline far
	// longer than the total one: the total must cut both steps short.
	silent := startDNS(t, true, nil)
	o := Options{Env: envMap(nil), Resolver: silent.resolver(), Step: time.Minute, Total: time.Second}
	targets := []Target{
		target("https://proxy.test/", nil, nil),
		target("https://127.0.0.1:"+blackholePort(t)+"/", nil, nil),
	}
	r := Run(context.Background(), targets, o)
	if !r.Failed() {
		t.Errorf("verdict = %+v, want a failure", r.Verdict)
	}
	for _, c := range r.Checks {
		if c.Duration >= o.Step/2 {
			t.Errorf("check %s %s took %s, want it cut by the total deadline %s (step %s)", c.Layer, c.Address, c.Duration, o.Total, o.Step)
		}
		if c.Status == StatusFail && !strings.Contains(c.Detail, "timeout") {
			t.Errorf("check %s failed with %q, want a timeout", c.Layer, c.Detail)
		}
	}
}
