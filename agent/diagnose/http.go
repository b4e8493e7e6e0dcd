package diagnose

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/module"

	"github.com/goproxy-setup/goproxy-setup/internal/humanize"
	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// The http layer: GET <module>/@v/list, time to first byte, throughput.

// httpResult is what the http step saw.
type httpResult struct {
	check Check
	resp  *http.Response
	body  string // the first bytes of an error body
	alert string // a TLS alert received instead of a response
	date  time.Time
	at    time.Time
}

const sampleBytes = 1 << 20

// httpStep is the http layer: GET <module>/@v/list (or the base URL), time
// to first byte, a sampled throughput.
func (tr *targetRun) httpStep(ctx context.Context, conn net.Conn, addr string, pm *proxyMode) httpResult {
	u := *tr.t.URL
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	probe := "/"
	if tr.t.Module != "" {
		path, _, _ := strings.Cut(tr.t.Module, "@")
		esc, err := module.EscapePath(path)
		if err != nil {
			esc = path
		}
		u.Path = strings.TrimSuffix(u.Path, "/") + "/" + esc + "/@v/list"
		u.RawPath = ""
		probe = esc + "/@v/list"
	} else if u.Path == "" {
		u.Path = "/"
	}
	sctx, cancel := tr.stepCtx(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return httpResult{check: tr.check(LayerHTTP, StatusFail, addr, "", "build request: "+describeErr(err), "check --upstream", 0)}
	}
	req.Header.Set("User-Agent", "goproxy-setup-diagnose")
	req.Close = true
	dl, _ := sctx.Deadline()
	_ = conn.SetDeadline(dl)
	stop := context.AfterFunc(sctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	start := time.Now()
	if pm != nil && pm.plain {
		if pm.auth != "" {
			req.Header.Set("Proxy-Authorization", pm.auth)
		}
		err = req.WriteProxy(conn)
	} else {
		err = req.Write(conn)
	}
	br := bufio.NewReader(conn)
	if err == nil {
		_, err = br.Peek(1)
	}
	ttfb := time.Since(start)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(br, req)
	}
	if err != nil {
		d := time.Since(start)
		if a := remoteAlert(err); a != "" {
			return httpResult{alert: a, check: tr.check(LayerHTTP, StatusSkip, addr, "", "skipped: the server sent TLS alert \""+a+"\"", "", d)}
		}
		if isTimeout(err) {
			return httpResult{check: tr.check(LayerHTTP, StatusFail, addr, "timeout", fmt.Sprintf("GET %s: no response within %s", probe, tr.o.Step),
				"the upstream accepts the request but does not answer: check its health and logs (and any proxy in between)", d)}
		}
		return httpResult{check: tr.check(LayerHTTP, StatusFail, addr, "error", fmt.Sprintf("GET %s: %s", probe, describeErr(err)),
			"the upstream closed the connection without an HTTP response: check its logs", d)}
	}
	at := tr.o.Now()
	res := httpResult{resp: resp, at: at}
	if ds := resp.Header.Get("Date"); ds != "" {
		if t, err := http.ParseTime(ds); err == nil {
			res.date = t
		}
	}
	bodyStart := time.Now()
	var n int64
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		res.body = string(b)
		n = int64(len(b))
	} else {
		n, err = io.Copy(io.Discard, io.LimitReader(resp.Body, sampleBytes))
	}
	bodyDur := time.Since(bodyStart)
	resp.Body.Close()
	d := time.Since(start)
	status := strconv.Itoa(resp.StatusCode)
	if err != nil && resp.StatusCode < 300 {
		why := describeErr(err)
		if isTimeout(err) {
			why = fmt.Sprintf("stalled: no data for %s", tr.o.Step)
		}
		res.check = tr.check(LayerHTTP, StatusFail, addr, "stalled", fmt.Sprintf("GET %s: %s, then the body stopped after %d bytes: %s", probe, resp.Status, n, why),
			"the upstream (or a proxy in between) stops sending mid-response: check its logs, buffering and timeouts; cmd/go reports this as 'unexpected EOF' or a timeout", d)
		return res
	}
	rate := ""
	if n > 0 && bodyDur > 0 {
		rate = fmt.Sprintf(", %s/s over %d bytes", humanize.Bytes(int64(float64(n)/bodyDur.Seconds())), n)
	}
	detail := fmt.Sprintf("GET %s: %s; first byte %s%s", probe, resp.Status, round(ttfb), rate)
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		res.check = tr.check(LayerHTTP, StatusOK, addr, status, detail, "", d)
	case (c == 404 || c == 410) && tr.t.Module != "":
		res.check = tr.check(LayerHTTP, StatusWarn, addr, status, detail+": module not found at this upstream",
			"not a failure: the module path is not served here (cmd/go tries the next entry after ','); check the module path and version, or the route that sends it to this upstream", d)
	case c == 404 || c == 410:
		res.check = tr.check(LayerHTTP, StatusOK, addr, status, detail+" (the base URL need not serve anything)", "", d)
	case c >= 300 && c < 400:
		res.check = tr.check(LayerHTTP, StatusWarn, addr, status, detail+" → "+redact.URLString(resp.Header.Get("Location")),
			"the upstream redirects; the client certificate is not presented to another host: use the final URL in --upstream", d)
	case c == 401:
		res.check = tr.check(LayerHTTP, StatusFail, addr, status, detail, "the upstream wants credentials beyond the client certificate: configure them for goproxy-setup's upstream (GOAUTH/.netrc are not sent upstream)", d)
	case c == 403:
		res.check = tr.check(LayerHTTP, StatusFail, addr, status, detail, "the upstream knows us but refuses this path: check the certificate's authorisation (subject, groups) on the server and the module route", d)
	case c == 400:
		res.check = tr.check(LayerHTTP, StatusFail, addr, status, detail+": "+answerLine(res.body), "the upstream rejects the request: check --upstream's path (it must be the GOPROXY base URL)", d)
	case c >= 500:
		res.check = tr.check(LayerHTTP, StatusFail, addr, status, detail, "the upstream itself fails (server error): check its logs and health, and what it proxies to; retry later", d)
	default:
		res.check = tr.check(LayerHTTP, StatusFail, addr, status, detail, "unexpected status: check --upstream's path and the server's logs", d)
	}
	return res
}

// answerLine is an upstream's answer on one line for a report: its text
// as the agent relays it (redact.Answer: an HTML page's text, secrets
// redacted), clipped on a rune boundary.
func answerLine(body string) string {
	return redact.Clip(strings.ReplaceAll(redact.Answer(body), "\n", " / "), 160)
}
