package diagnose

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/mod/module"

	"github.com/goproxy-setup/goproxy-setup/internal/redact"
)

// envChecks is the env layer: what the go command and the HTTP stack will
// read from the environment, and where those settings contradict each
// other or the upstream list.
func envChecks(o Options, targets []Target) []Check {
	get := o.Env
	var set []string
	show := func(name, v string) {
		if v != "" {
			set = append(set, name+"="+v)
		}
	}
	goproxy := get("GOPROXY")
	show("GOPROXY", redact.List(goproxy))
	for _, n := range []string{"GONOPROXY", "GOPRIVATE", "GONOSUMDB", "GOSUMDB", "GOINSECURE"} {
		show(n, sumdbShown(n, get(n)))
	}
	show("GOFLAGS", flagNames(get("GOFLAGS")))
	show("GOAUTH", authKinds(get("GOAUTH")))
	for _, n := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} {
		show(n, redact.URLString(get(n)))
	}
	show("NO_PROXY", firstEnv(get, "NO_PROXY", "no_proxy"))

	var checks []Check
	warn := func(target, detail, remedy string) {
		checks = append(checks, Check{Target: target, Layer: LayerEnv, Status: StatusWarn, Detail: detail, Remedy: remedy})
	}
	switch strings.TrimSpace(goproxy) {
	case "off":
		warn("", "GOPROXY=off: the go command will not download any module", "set GOPROXY to the agent's URL (the first line 'goproxy-setup run' prints), or run 'goproxy-setup warm' first")
	case "direct":
		warn("", "GOPROXY=direct: the go command bypasses every proxy and fetches from version control", "set GOPROXY to the agent's URL (the first line 'goproxy-setup run' prints)")
	}
	if v := get("GOINSECURE"); v != "" {
		warn("", "GOINSECURE="+v+": the go command fetches matching modules without verifying TLS", "unset GOINSECURE: goproxy-setup verifies the upstream and serves go over loopback")
	}
	if strings.Contains(get("GOFLAGS"), "-insecure") {
		warn("", "GOFLAGS contains -insecure", "remove -insecure from GOFLAGS")
	}
	if strings.TrimSpace(get("GOSUMDB")) == "off" {
		warn("", "GOSUMDB=off: downloads are checked only against go.sum, never against the checksum database", "set GONOSUMDB to the private module patterns instead of turning the checksum database off")
	}
	noproxy := firstEnv(get, "GONOPROXY", "GOPRIVATE")
	nosumdb := firstEnv(get, "GONOSUMDB", "GOPRIVATE")
	seen := map[string]bool{}
	for _, t := range targets {
		name := redact.URL(t.URL)
		if t.Module != "" && !seen[t.Module] {
			seen[t.Module] = true
			path, _, _ := strings.Cut(t.Module, "@")
			if noproxy != "" && module.MatchPrefixPatterns(noproxy, path) {
				warn("", fmt.Sprintf("GONOPROXY/GOPRIVATE (%s) covers %s: the go command fetches it directly from version control, not through the proxy", noproxy, path),
					"remove the pattern from GONOPROXY (set GONOPROXY=none to keep GOPRIVATE for the checksum database only)")
			}
			if nosumdb != "" && module.MatchPrefixPatterns(nosumdb, path) {
				checks = append(checks, Check{Layer: LayerEnv, Status: StatusOK, Detail: fmt.Sprintf("GONOSUMDB/GOPRIVATE (%s) covers %s: the checksum database is not consulted for it", nosumdb, path)})
			}
		}
		if t.URL == nil {
			continue
		}
		pu, err := o.Proxy(&http.Request{Method: http.MethodGet, URL: t.URL, Header: http.Header{}})
		switch {
		case err != nil:
			checks = append(checks, Check{Target: name, Layer: LayerEnv, Status: StatusFail, Detail: "the proxy setting for " + t.URL.Hostname() + " is not a valid URL",
				Remedy: "fix HTTPS_PROXY/HTTP_PROXY: scheme://[user:password@]host:port"})
		case pu != nil:
			checks = append(checks, Check{Target: name, Layer: LayerEnv, Status: StatusOK, Detail: fmt.Sprintf("requests to %s go through the proxy %s (NO_PROXY does not exempt it)", t.URL.Hostname(), redact.URL(pu))})
		case firstEnv(get, "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy") != "":
			checks = append(checks, Check{Target: name, Layer: LayerEnv, Status: StatusOK, Detail: fmt.Sprintf("requests to %s go direct (exempt from the proxy by NO_PROXY or as loopback)", t.URL.Hostname())})
		}
	}
	summary := "no Go or proxy variables set"
	if len(set) > 0 {
		summary = strings.Join(set, " ")
	}
	return append([]Check{{Layer: LayerEnv, Status: StatusOK, Detail: summary}}, checks...)
}

func sumdbShown(name, v string) string {
	if name != "GOSUMDB" || v == "" {
		return v
	}
	f := strings.Fields(v)
	if len(f) == 2 {
		return f[0] + " " + redact.URLString(f[1])
	}
	return v
}

// flagNames keeps only the flag names of GOFLAGS: values may carry secrets.
func flagNames(v string) string {
	var out []string
	for _, f := range strings.Fields(v) {
		n, _, _ := strings.Cut(f, "=")
		out = append(out, n)
	}
	return strings.Join(out, " ")
}

// authKinds keeps only the kind of each GOAUTH entry (netrc, git, a
// command's name): arguments may carry secrets.
func authKinds(v string) string {
	var out []string
	for _, e := range strings.Split(v, ";") {
		if f := strings.Fields(e); len(f) > 0 {
			out = append(out, f[0])
		}
	}
	return strings.Join(out, ";")
}

// sumdbCheck is the sumdb layer: does the upstream proxy the checksum
// database, or can it be reached directly, or does GONOSUMDB cover the
// module anyway. ok is false when no checksum database is configured.
func sumdbCheck(ctx context.Context, o Options, res *recordingResolver, targets []Target, results []targetResult) (Check, bool) {
	spec := o.SumDB
	if spec == "" {
		spec = o.Env("GOSUMDB")
	}
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return Check{}, false
	}
	if spec == "off" {
		return Check{Layer: LayerSumDB, Status: StatusSkip, Detail: "skipped: GOSUMDB=off"}, true
	}
	f := strings.Fields(spec)
	name, _, _ := strings.Cut(f[0], "+")
	direct := "https://" + name
	if len(f) > 1 {
		direct = f[1]
	}
	nosumdb := firstEnv(o.Env, "GONOSUMDB", "GOPRIVATE")
	covered := true
	anyModule := false
	for _, t := range targets {
		if t.Module == "" {
			continue
		}
		anyModule = true
		path, _, _ := strings.Cut(t.Module, "@")
		if nosumdb == "" || !module.MatchPrefixPatterns(nosumdb, path) {
			covered = false
		}
	}
	if anyModule && covered {
		return Check{Layer: LayerSumDB, Status: StatusOK, Value: "not consulted", Detail: "GONOSUMDB/GOPRIVATE covers the module: " + name + " is not consulted"}, true
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, o.Step)
	defer cancel()
	var reasons []string
	for i, t := range targets {
		if !results[i].reached {
			continue
		}
		u := *t.URL
		u.User, u.RawQuery = nil, ""
		u.Path = strings.TrimSuffix(u.Path, "/") + "/sumdb/" + name + "/supported"
		code, err := get(ctx, o, res, t, u.String())
		if err == nil && code == http.StatusOK {
			d := time.Since(start)
			return Check{Target: redact.URL(t.URL), Layer: LayerSumDB, Status: StatusOK, Value: "proxied", Detail: fmt.Sprintf("%s is proxied by %s (%s)", name, redact.URL(t.URL), round(d)), Duration: d}, true
		}
		if err != nil {
			reasons = append(reasons, redact.URL(t.URL)+": "+describeErr(err))
		} else {
			reasons = append(reasons, fmt.Sprintf("%s does not proxy it (%d)", redact.URL(t.URL), code))
		}
	}
	du, err := url.Parse(direct)
	if err != nil {
		return Check{Layer: LayerSumDB, Status: StatusFail, Detail: "GOSUMDB URL is not valid", Remedy: "fix GOSUMDB: \"name+key https://url\""}, true
	}
	u := *du
	u.Path = strings.TrimSuffix(u.Path, "/") + "/latest"
	code, err := get(ctx, o, res, Target{URL: du}, u.String())
	d := time.Since(start)
	if err == nil && code == http.StatusOK {
		return Check{Layer: LayerSumDB, Status: StatusOK, Value: "direct", Detail: fmt.Sprintf("%s reachable directly at %s (%s)", name, redact.URL(du), round(d)), Duration: d}, true
	}
	why := ""
	if err != nil {
		layer, _ := Classify(err)
		why = layer + ": " + describeErr(err)
	} else {
		why = fmt.Sprintf("status %d", code)
	}
	reasons = append(reasons, redact.URL(du)+": "+why)
	return Check{Layer: LayerSumDB, Status: StatusFail, Value: "unreachable", Detail: name + " unreachable: " + strings.Join(reasons, "; "),
		Remedy: "set GONOSUMDB (or GOPRIVATE) to the private module patterns, have the upstream proxy /sumdb/" + name + "/, or allow this runner to reach " + redact.URL(du), Duration: d}, true
}

func get(ctx context.Context, o Options, res *recordingResolver, t Target, u string) (int, error) {
	d := *o.Dialer
	if d.Resolver == nil {
		d.Resolver = res.resolver()
	}
	tr := &http.Transport{
		Proxy:             o.Proxy,
		DialContext:       d.DialContext,
		TLSClientConfig:   &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: t.Roots, GetClientCertificate: t.GetClientCertificate},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
