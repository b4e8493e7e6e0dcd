package diagnose

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"
)

type targetResult struct {
	checks []Check
	// reached is true when some address got an HTTP response.
	reached bool
}

type targetRun struct {
	t    Target
	o    Options
	res  *recordingResolver
	name string
}

func (tr *targetRun) check(layer string, st Status, addr, value, detail, remedy string, d time.Duration) Check {
	return Check{Target: tr.name, Address: addr, Layer: layer, Status: st, Value: value, Detail: detail, Remedy: remedy, Duration: d}
}

func (tr *targetRun) skips(addr, reason string, layers ...string) []Check {
	var cs []Check
	for _, l := range layers {
		cs = append(cs, tr.check(l, StatusSkip, addr, "", "skipped: "+reason, "", 0))
	}
	return cs
}

func (tr *targetRun) stepCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, tr.o.Step)
}

func (tr *targetRun) port() string {
	if p := tr.t.URL.Port(); p != "" {
		return p
	}
	if tr.t.URL.Scheme == "http" {
		return "80"
	}
	return "443"
}

func (tr *targetRun) run(ctx context.Context) targetResult {
	u := tr.t.URL
	if u == nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return targetResult{checks: []Check{tr.check(LayerEnv, StatusFail, "", "", fmt.Sprintf("upstream %q is not an http(s) URL with a host", tr.name),
			"give --upstream as https://host[:port][/path] entries separated by ',' or '|'", 0)}}
	}
	proxyURL, err := tr.o.Proxy(&http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}})
	if err != nil {
		return targetResult{checks: append([]Check{tr.check(LayerProxy, StatusFail, "", "", "proxy setting is not a valid URL: "+describeErr(err),
			"fix or unset HTTPS_PROXY/HTTP_PROXY (scheme://host:port)", 0)},
			tr.skips("", "no usable proxy setting", LayerTLS, LayerClientCert, LayerClock, LayerHTTP)...)}
	}
	if proxyURL != nil {
		return tr.viaProxy(ctx, proxyURL)
	}
	addrs, c := tr.resolve(ctx)
	checks := []Check{c}
	if c.Status == StatusFail {
		checks = append(checks, tr.skips("", "the name did not resolve", LayerTCP, LayerTLS, LayerClientCert, LayerClock, LayerHTTP)...)
		return targetResult{checks: checks}
	}
	per := make([][]Check, len(addrs))
	reached := make([]bool, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hp := net.JoinHostPort(a.String(), tr.port())
			per[i], reached[i] = tr.direct(ctx, hp)
		}()
	}
	wg.Wait()
	anyReached := false
	for _, r := range reached {
		anyReached = anyReached || r
	}
	for i, cs := range per {
		if anyReached && !reached[i] {
			cs = downgrade(cs, addrs[i], addrs)
		}
		checks = append(checks, cs...)
	}
	return targetResult{checks: checks, reached: anyReached}
}

// downgrade turns the failures of an address into warnings when another
// address of the same name works: cmd/go's dialer falls back to it, slower.
func downgrade(cs []Check, bad netip.Addr, all []netip.Addr) []Check {
	fam, other, rec := "IPv6", "IPv4", "AAAA"
	if bad.Is4() {
		fam, other, rec = "IPv4", "IPv6", "A"
	}
	out := make([]Check, len(cs))
	for i, c := range cs {
		if c.Status == StatusFail {
			c.Status = StatusWarn
			c.Detail += fmt.Sprintf(" (%s works; clients fall back to it after a delay)", other)
			c.Remedy = fmt.Sprintf("the %s path to this host fails while %s works: fix %s on the server side (listener, firewall, route) or remove the name's %s record; then: %s", fam, other, fam, rec, c.Remedy)
		}
		out[i] = c
	}
	return out
}

func round(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

func plural(n int, s string) string {
	if n == 1 {
		return "1 " + s
	}
	return strconv.Itoa(n) + " " + s + "s"
}

// describeErr is err's message without any URL a *url.Error would add.
func describeErr(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}
