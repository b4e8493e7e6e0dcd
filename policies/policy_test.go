package policies

import (
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src), "p.hcl")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

// sameEffect compares two policies, ignoring Source.
func sameEffect(t *testing.T, got, want *Policy) {
	t.Helper()
	g, w := *got, *want
	g.Source, w.Source = "", ""
	if !reflect.DeepEqual(g, w) {
		var gb, wb bytes.Buffer
		_ = g.Show(&gb)
		_ = w.Show(&wb)
		t.Errorf("policies differ:\ngot:\n%s\nwant:\n%s", gb.String(), wb.String())
	}
}

func TestExamples(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"default.hcl", "private-modules.hcl", "strict.hcl"}; !slices.Equal(files, want) {
		t.Fatalf("example policies = %v, want %v", files, want)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			t.Parallel()
			p, err := Load(f)
			if err != nil {
				t.Fatalf("Load(%s): %v", f, err)
			}
			if p.Source != f {
				t.Errorf("Source = %q, want %q", p.Source, f)
			}
			// Every example survives Show → Parse unchanged.
			var buf bytes.Buffer
			if err := p.Show(&buf); err != nil {
				t.Fatal(err)
			}
			again, err := Parse(buf.Bytes(), "shown.hcl")
			if err != nil {
				t.Fatalf("Parse(Show(%s)): %v\n%s", f, err, buf.String())
			}
			sameEffect(t, again, p)
		})
	}
}

func TestDefaultFileEqualsDefault(t *testing.T) {
	t.Parallel()
	p, err := Load("default.hcl")
	if err != nil {
		t.Fatal(err)
	}
	sameEffect(t, p, Default())
	// An empty file is the default too.
	sameEffect(t, mustParse(t, ""), Default())
}

func TestDefault(t *testing.T) {
	t.Parallel()
	p := Default()
	if got, want := p.DefaultRoute.List(), "https://proxy.golang.org"; got != want {
		t.Errorf("default route = %q, want %q", got, want)
	}
	if p.Direct.Allowed {
		t.Errorf("Direct.Allowed = true, want false")
	}
	if p.Retry.Attempts != 3 || p.Retry.Backoff != 200*time.Millisecond || p.Retry.MaxBackoff != 5*time.Second {
		t.Errorf("Retry = %+v, want 3 attempts, 200ms..5s", p.Retry)
	}
	if got, want := p.GoEnv("http://127.0.0.1:1/t"), []EnvVar{{"GOPROXY", "http://127.0.0.1:1/t"}}; !slices.Equal(got, want) {
		t.Errorf("GoEnv = %v, want %v", got, want)
	}
	if got, want := p.Endpoints(), []string{"proxy.golang.org:443"}; !slices.Equal(got, want) {
		t.Errorf("Endpoints = %v, want %v", got, want)
	}
	if u := p.DefaultRoute.Upstreams[0]; u.MinTLSVersion != tls.VersionTLS12 || u.Timeout != 60*time.Second {
		t.Errorf("default upstream = %+v, want TLS 1.2 minimum and 60s timeout", u)
	}
}

func TestExampleSemantics(t *testing.T) {
	t.Parallel()
	priv, err := Load("private-modules.hcl")
	if err != nil {
		t.Fatal(err)
	}
	strict, err := Load("strict.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := priv.Route("corp.example.com/platform/log").List(), "https://goproxy.corp.example.com"; got != want {
		t.Errorf("private-modules: route(corp.example.com/platform/log) = %q, want %q", got, want)
	}
	if got := priv.Route("corp.example.com/x").Upstreams[0].ClientKey; got != "/run/goproxy-setup/client.key" {
		t.Errorf("private-modules: internal client_key = %q", got)
	}
	if got, want := priv.GoEnv("http://a/t"), []EnvVar{{"GOPROXY", "http://a/t"}, {"GONOSUMDB", "corp.example.com/*,*.corp.example.com"}}; !slices.Equal(got, want) {
		t.Errorf("private-modules: GoEnv = %v, want %v", got, want)
	}
	if !strict.Privilege.RequireSeparation || strict.Direct.Allowed {
		t.Errorf("strict: privilege %+v direct %+v, want separation required and no direct", strict.Privilege, strict.Direct)
	}
	if got, want := strict.DefaultRoute.List(), "https://goproxy.corp.example.com|https://proxy.golang.org"; got != want {
		t.Errorf("strict: default route = %q, want %q", got, want)
	}
	if _, denied := strict.Denied("github.com/sirupsen/logrus"); !denied {
		t.Errorf("strict: github.com/sirupsen/logrus allowed, want denied (not on the allow list)")
	}
	if r, denied := strict.Denied("github.com/evil-example/x"); !denied || !strings.Contains(r, "incident") {
		t.Errorf("strict: Denied(github.com/evil-example/x) = %q, %v, want the incident reason", r, denied)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, src string
		want      []string // the diagnostics' first lines, in order
		snippet   string   // a line the first snippet holds
	}{
		{
			name: "syntax",
			src:  "upstream \"a\" {\n  url = \n}\n",
			want: []string{`p.hcl:2:9: Invalid expression: Expected the start of an expression, but found an invalid expression token.`},
		},
		{
			name:    "unknown attribute",
			src:     "retry {\n  atempts = 3\n}\n",
			want:    []string{`p.hcl:2:3: Unsupported argument: An argument named "atempts" is not expected here. Did you mean "attempts"?`},
			snippet: "    |   ^^^^^^^",
		},
		{
			name: "unknown block",
			src:  "\nproxy {\n}\n",
			want: []string{`p.hcl:2:1: Unsupported block type: Blocks of type "proxy" are not expected here.`},
		},
		{
			name: "bad URL scheme",
			src:  "upstream \"a\" {\n  url = \"ftp://x.example\"\n}\n",
			want: []string{`p.hcl:2:9: Invalid upstream URL: "ftp://x.example" has scheme "ftp": use https://.`},
		},
		{
			name: "plain http off loopback",
			src:  "upstream \"a\" {\n  url = \"http://x.example\"\n}\n",
			want: []string{`p.hcl:2:9: Invalid upstream URL: "http://x.example" uses http to a non-loopback host: use https (plain http is accepted for 127.0.0.1, ::1 and localhost only).`},
		},
		{
			name: "unknown upstream in route",
			src:  "upstream \"internal\" {\n  url = \"https://i.example\"\n}\nroute {\n  modules   = [\"corp.example.com/*\"]\n  upstreams = [\"internal\", \"intrenal\"]\n}\n",
			want: []string{`p.hcl:6:28: Unknown upstream: No upstream named "intrenal" is declared: declare upstream "intrenal" { url = "..." } or use one of "public", "internal".`},
		},
		{
			name: "unknown default upstream",
			src:  "upstreams = [\"nope\"]\n",
			want: []string{`p.hcl:1:14: Unknown upstream: No upstream named "nope" is declared: declare upstream "nope" { url = "..." } or use one of "public".`},
		},
		{
			name: "direct in a list",
			src:  "upstreams = [\"public\", \"direct\"]\n",
			want: []string{`p.hcl:1:24: Unknown upstream: "direct" is not an upstream: to let cmd/go fetch from version control what the upstreams do not have, set direct { allowed = true }.`},
		},
		{
			name: "bad pattern",
			src:  "deny {\n  modules = [\"ok.example/*\", \"bad.example/[x\"]\n}\n",
			want: []string{`p.hcl:2:30: Invalid module pattern: module pattern "bad.example/[x" is not a valid glob (syntax error in pattern): check its brackets and escapes.`},
		},
		{
			name: "pattern with comma",
			src:  "route {\n  modules = [\"a.example,b.example\"]\n  upstreams = [\"public\"]\n}\n",
			want: []string{`p.hcl:2:14: Invalid module pattern: module pattern "a.example,b.example" contains a comma or space: write one pattern per list element.`},
		},
		{
			name: "negative duration",
			src:  "retry {\n  backoff = \"-1s\"\n}\n",
			want: []string{`p.hcl:2:13: Invalid duration: backoff = "-1s" is negative: durations must be zero or more.`},
		},
		{
			name: "zero timeout",
			src:  "upstream \"a\" {\n  url = \"https://a.example\"\n  timeout = \"0s\"\n}\n",
			want: []string{`p.hcl:3:13: Invalid duration: timeout must be more than zero.`},
		},
		{
			name: "bad duration",
			src:  "circuit_breaker {\n  cooldown = \"soon\"\n}\n",
			want: []string{`p.hcl:2:14: Invalid duration: cooldown = "soon" is not a duration: write it like "200ms", "30s" or "1m30s".`},
		},
		{
			name: "TLS 1.1",
			src:  "upstream \"a\" {\n  url = \"https://a.example\"\n  tls_min_version = \"1.1\"\n}\n",
			want: []string{`p.hcl:3:21: Invalid TLS version: tls_min_version = "1.1" is not allowed: use "1.2" or "1.3" (versions below 1.2 cannot be enabled).`},
		},
		{
			name: "bad fallthrough",
			src:  "upstream \"a\" {\n  url = \"https://a.example\"\n  fallthrough = \"410\"\n}\n",
			want: []string{`p.hcl:3:17: Invalid fallthrough: fallthrough = "410" is not known: use "404" (next upstream only on 404/410, cmd/go's ',') or "any" (on any error, cmd/go's '|').`},
		},
		{
			name: "bad pin",
			src:  "upstream \"a\" {\n  url = \"https://a.example\"\n  spki_pins = [\"sha1/abc\"]\n}\n",
			want: []string{`p.hcl:3:16: Invalid SPKI pin: SPKI pin "sha1/abc" must start with "sha256/": write sha256/<base64 of the SHA-256 of the SubjectPublicKeyInfo>.`},
		},
		{
			name: "attempts out of range",
			src:  "retry {\n  attempts = 0\n}\n",
			want: []string{`p.hcl:2:14: Invalid value: attempts must be a whole number from 1 to 10.`},
		},
		{
			name: "wrong type",
			src:  "direct {\n  allowed = \"maybe\"\n}\n",
			want: []string{`p.hcl:2:13: Incorrect attribute value type: allowed must be true or false.`},
		},
		{
			name: "duplicate block",
			src:  "retry {\n}\nretry {\n}\n",
			want: []string{`p.hcl:3:1: Duplicate retry block: Only one retry block is allowed; the first is at p.hcl:1,1-6: merge them.`},
		},
		{
			name: "duplicate upstream",
			src:  "upstream \"a\" {\n  url = \"https://a.example\"\n}\nupstream \"a\" {\n  url = \"https://b.example\"\n}\n",
			want: []string{`p.hcl:4:10: Duplicate upstream: An upstream named "a" is already declared: rename one of them.`},
		},
		{
			name: "reserved name",
			src:  "upstream \"direct\" {\n  url = \"https://a.example\"\n}\n",
			want: []string{`p.hcl:1:10: Invalid upstream name: "direct" is a cmd/go GOPROXY keyword, not an upstream name: choose another name.`},
		},
		{
			name: "half identity",
			src:  "upstream \"a\" {\n  url = \"https://a.example\"\n  client_cert = \"c.pem\"\n}\n",
			want: []string{`p.hcl:1:1: Incomplete client identity: upstream "a" sets only one of client_cert and client_key: set both, or neither.`},
		},
		{
			name: "missing url",
			src:  "upstream \"a\" {\n}\n",
			want: []string{`p.hcl:1:14: Missing required argument: The argument "url" is required, but no definition was found.`},
		},
		{
			name: "variables",
			src:  "env {\n  goflags = var.flags\n}\n",
			want: []string{`p.hcl:2:13: Variables not allowed: Variables may not be used here.`},
		},
		{
			name: "goflags",
			src:  "env {\n  goflags = \"-mod=readonly mod=mod\"\n}\n",
			want: []string{`p.hcl:2:13: Invalid GOFLAGS: GOFLAGS element "mod=mod" is not a flag: cmd/go accepts only space-separated -flag or -flag=value.`},
		},
		{
			name: "sumdb without key",
			src:  "sumdb {\n  name = \"sum.example.com\"\n}\n",
			want: []string{`p.hcl:2:10: Missing checksum database key: cmd/go does not know the key of "sum.example.com": set key = "sum.example.com+<hash>+<key>".`},
		},
		{
			name: "max_backoff below backoff",
			src:  "retry {\n  backoff = \"2s\"\n  max_backoff = \"1s\"\n}\n",
			want: []string{`p.hcl:3:17: Invalid duration: max_backoff (1s) is less than backoff (2s): raise max_backoff or lower backoff.`},
		},
		{
			name: "several errors in source order",
			src:  "warm {\n  concurrency = -1\n}\nretry {\n  attempts = 1.5\n}\n",
			want: []string{
				`p.hcl:2:17: Invalid value: concurrency must be a whole number from 0 to 1024.`,
				`p.hcl:5:14: Invalid value: attempts must be a whole number from 1 to 10.`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.src), "p.hcl")
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("Parse error = %v, want an *Error", err)
			}
			if k := errkind.Of(err); k != errkind.BadInput {
				t.Errorf("error kind = %v, want bad input", k)
			}
			var got []string
			for _, d := range perr.Diagnostics {
				got = append(got, d.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("diagnostics:\ngot  %q\nwant %q", got, tc.want)
			}
			if tc.snippet != "" && !strings.Contains(perr.Diagnostics[0].Snippet, tc.snippet) {
				t.Errorf("snippet = %q, want it to contain %q", perr.Diagnostics[0].Snippet, tc.snippet)
			}
			if !strings.HasPrefix(err.Error(), tc.want[0]+"\n") {
				t.Errorf("Error() = %q, want it to start with %q and a snippet", err.Error(), tc.want[0])
			}
		})
	}
}

func TestParseRelativePaths(t *testing.T) {
	t.Parallel()
	src := "upstream \"i\" {\n  url = \"https://i.example\"\n  client_cert = \"certs/c.pem\"\n  client_key = \"/abs/k.pem\"\n  ca_cert = \"ca.pem\"\n}\n"
	p, err := Parse([]byte(src), filepath.Join("conf", "p.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	u := p.upstream("i")
	for _, c := range []struct{ got, want string }{
		{u.ClientCert, filepath.Join("conf", "certs", "c.pem")},
		{u.ClientKey, "/abs/k.pem"},
		{u.CACert, filepath.Join("conf", "ca.pem")},
	} {
		if c.got != c.want {
			t.Errorf("path = %q, want %q", c.got, c.want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Parallel()
	_, err := Load(filepath.Join(t.TempDir(), "nope.hcl"))
	if err == nil || errkind.Of(err) != errkind.BadInput || !strings.Contains(err.Error(), "--policy") {
		t.Errorf("Load(missing) = %v, want a bad-input error naming --policy", err)
	}
}

const canary = "CANARY-7f3a9c1e-do-not-print"

func TestSecretsNeverShown(t *testing.T) {
	t.Parallel()
	src := `upstream "internal" {
  url   = "https://i.example"
  token = "` + canary + `"
}
upstreams = ["internal"]
`
	p := mustParse(t, src)
	if got := p.upstream("internal").Token.Reveal(); got != canary {
		t.Fatalf("Token.Reveal() = %q, want the canary", got)
	}
	var buf bytes.Buffer
	if err := p.Show(&buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), canary) {
		t.Errorf("Show printed the token:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), `token           = "(redacted)"`) {
		t.Errorf("Show output lacks the redacted token line:\n%s", buf.String())
	}
	for _, s := range []string{
		fmt.Sprintf("%v", p), fmt.Sprintf("%+v", *p.Upstreams[0]), fmt.Sprintf("%#v", *p.Upstreams[0]),
		fmt.Sprintf("%s %q", p.Upstreams[0].Token, p.Upstreams[0].Token), fmt.Sprint(p.GoEnv("http://127.0.0.1:1/t")),
		fmt.Sprint(p.Endpoints()),
	} {
		if strings.Contains(s, canary) {
			t.Errorf("formatting leaked the token: %s", s)
		}
	}

	// Error snippets never echo a secret either.
	for _, bad := range []string{
		"upstream \"a\" {\n  url = \"https://a.example\"\n  token = \"" + canary + "\"\n  token_env = \"X\"\n  tokn = 1\n}\n",
		"upstream \"a\" {\n  url = \"https://a.example\"\n  token = \"" + canary + "\" bogus\n}\n",
		"upstream \"a\" {\n  url = \"https://user:" + canary + "@a.example\"\n}\n",
		"upstream \"a\" {\n  url = \"https://a.example/?t=" + canary + "\"\n}\n",
		"upstream \"a\" {\n  url = \"https://a.example\"\n  token = <<EOT\n" + canary + "\nEOT\n  timeout = 5\n}\n",
	} {
		_, err := Parse([]byte(bad), "p.hcl")
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", bad)
			continue
		}
		if strings.Contains(err.Error(), canary) {
			t.Errorf("error leaked the canary:\n%v", err)
		}
	}
}

func TestRoute(t *testing.T) {
	t.Parallel()
	p := mustParse(t, `
upstream "internal" {
  url = "https://internal.example"
}
upstream "mirror" {
  url         = "https://mirror.example:8443/go/"
  fallthrough = "any"
}
upstreams = ["mirror", "public"]
route {
  modules   = ["corp.example.com/*"]
  upstreams = ["internal"]
}
route {
  modules   = ["corp.example.com", "*.corp.example.com"]
  upstreams = ["internal", "public"]
  private   = false
}
`)
	for _, tc := range []struct {
		mod, want string
		private   bool
	}{
		{"corp.example.com/a", "https://internal.example", true},
		{"corp.example.com/a/b/v2", "https://internal.example", true},
		{"corp.example.com", "https://internal.example,https://proxy.golang.org", false},
		{"git.corp.example.com/x", "https://internal.example,https://proxy.golang.org", false},
		{"corp.example.community/x", "https://mirror.example:8443/go|https://proxy.golang.org", false},
		{"golang.org/x/mod", "https://mirror.example:8443/go|https://proxy.golang.org", false},
	} {
		r := p.Route(tc.mod)
		if got := r.List(); got != tc.want || r.Private != tc.private {
			t.Errorf("Route(%q) = %q private=%v, want %q private=%v", tc.mod, got, r.Private, tc.want, tc.private)
		}
	}
	if got, want := p.Endpoints(), []string{"mirror.example:8443", "proxy.golang.org:443", "internal.example:443"}; !slices.Equal(got, want) {
		t.Errorf("Endpoints() = %v, want %v", got, want)
	}
}

func TestDenied(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, src, mod string
		reason         string
		denied         bool
	}{
		{"no rules", "", "github.com/a/b", "", false},
		{"deny match", "deny {\n  modules = [\"github.com/bad/*\"]\n  reason = \"bad\"\n}\n", "github.com/bad/x/v2", "bad", true},
		{"deny default reason", "deny {\n  modules = [\"github.com/bad\"]\n}\n", "github.com/bad/x", "denied by policy", true},
		{"deny miss", "deny {\n  modules = [\"github.com/bad/*\"]\n}\n", "github.com/badge/x", "", false},
		{"allow list miss", "allow {\n  modules = [\"golang.org/x/*\"]\n}\n", "github.com/a/b", "not on the policy's allow list", true},
		{"allow list hit", "allow {\n  modules = [\"golang.org/x/*\"]\n}\n", "golang.org/x/mod", "", false},
		{"first match wins: allow", "allow {\n  modules = [\"github.com/corp/ok\"]\n}\ndeny {\n  modules = [\"github.com/corp\"]\n  reason = \"r\"\n}\n", "github.com/corp/ok", "", false},
		{"first match wins: deny", "allow {\n  modules = [\"github.com/corp/ok\"]\n}\ndeny {\n  modules = [\"github.com/corp\"]\n  reason = \"r\"\n}\n", "github.com/corp/other", "r", true},
		{"glob element", "deny {\n  modules = [\"*.evil.example\"]\n  reason = \"r\"\n}\n", "x.evil.example/m", "r", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reason, denied := mustParse(t, tc.src).Denied(tc.mod)
			if reason != tc.reason || denied != tc.denied {
				t.Errorf("Denied(%q) = %q, %v, want %q, %v", tc.mod, reason, denied, tc.reason, tc.denied)
			}
		})
	}
}

func TestGoEnv(t *testing.T) {
	t.Parallel()
	const agent = "http://127.0.0.1:4000/tok"
	route := "upstream \"i\" {\n  url = \"https://i.example\"\n}\nroute {\n  modules = [\"corp.example/*\"]\n  upstreams = [\"i\"]\n}\n"
	for _, tc := range []struct {
		name, src string
		want      []EnvVar
	}{
		{"default", "", []EnvVar{{"GOPROXY", agent}}},
		{"direct", "direct {\n  allowed = true\n}\n", []EnvVar{{"GOPROXY", agent + ",direct"}}},
		{"private route", route, []EnvVar{{"GOPROXY", agent}, {"GONOSUMDB", "corp.example/*"}}},
		{"public route", strings.Replace(route, "}\n", "}\n", 1) + "route {\n  modules = [\"fork.example\"]\n  upstreams = [\"i\"]\n  private = false\n}\n",
			[]EnvVar{{"GOPROXY", agent}, {"GONOSUMDB", "corp.example/*"}}},
		{"extra private", route + "sumdb {\n  private = [\"x.example\", \"corp.example/*\"]\n}\n", []EnvVar{{"GOPROXY", agent}, {"GONOSUMDB", "corp.example/*,x.example"}}},
		{"goprivate and goflags", route + "env {\n  goprivate = true\n  goflags = \"-mod=readonly\"\n}\n",
			[]EnvVar{{"GOPROXY", agent}, {"GONOSUMDB", "corp.example/*"}, {"GOPRIVATE", "corp.example/*"}, {"GONOPROXY", "none"}, {"GOFLAGS", "-mod=readonly"}}},
		{"sumdb off", route + "sumdb {\n  enabled = false\n}\n", []EnvVar{{"GOPROXY", agent}, {"GOSUMDB", "off"}}},
		{"sumdb china", "sumdb {\n  name = \"sum.golang.google.cn\"\n}\n", []EnvVar{{"GOPROXY", agent}, {"GOSUMDB", "sum.golang.google.cn"}}},
		{"sumdb own key", "sumdb {\n  name = \"sum.golang.org\"\n  key = \"sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8\"\n}\n",
			[]EnvVar{{"GOPROXY", agent}, {"GOSUMDB", "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := mustParse(t, tc.src).GoEnv(agent); !slices.Equal(got, tc.want) {
				t.Errorf("GoEnv = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWithUpstreamList(t *testing.T) {
	t.Parallel()
	const pol = "upstream \"internal\" {\n  url = \"https://internal.example\"\n  client_cert = \"/c.pem\"\n  client_key = \"/k.pem\"\n}\n"
	for _, tc := range []struct {
		name, src, list string
		want            string // the default route, or the error
		wantErr         bool
	}{
		{"one URL", "", "https://a.example", "https://a.example", false},
		{"separators", "", "https://a.example|https://b.example,https://c.example", "https://a.example|https://b.example,https://c.example", false},
		{"no scheme", "", "a.example/go/", "https://a.example/go", false},
		{"spaces", "", " https://a.example , https://b.example ", "https://a.example,https://b.example", false},
		{"doubled separator", "", " https://a.example ,, https://b.example ", "--upstream: element 2 is empty: remove the doubled separator", true},
		{"trailing separator", "", "https://a.example|", `--upstream: ends with a separator: remove the trailing "|"`, true},
		{"by name", pol, "internal|public", "https://internal.example|https://proxy.golang.org", false},
		{"by declared URL", pol, "https://internal.example", "https://internal.example", false},
		{"direct refused", "", "https://a.example,direct", `--upstream: the policy p.hcl does not allow direct fetches: remove "direct", or set direct { allowed = true } in the policy`, true},
		{"direct allowed", "direct {\n  allowed = true\n}\n", "https://a.example,direct", "https://a.example", false},
		{"direct not last", "direct {\n  allowed = true\n}\n", "direct,https://a.example", `--upstream: "direct" must be the last element: move it to the end`, true},
		{"off", "", "off", `--upstream: "off" would refuse every module: name at least one upstream, and use a deny rule in the policy to refuse modules`, true},
		{"empty", "", "", "--upstream: empty (an empty --upstream or GOPROXY_SETUP_UPSTREAM is never the public default): give at least one proxy URL, like https://proxy.golang.org, or unset it for the policy's default route", true},
		{"blank", "", "  ", "--upstream: empty (an empty --upstream or GOPROXY_SETUP_UPSTREAM is never the public default): give at least one proxy URL, like https://proxy.golang.org, or unset it for the policy's default route", true},
		{"separator only", "", " , ", `--upstream: ends with a separator: remove the trailing ","`, true},
		{"direct alone", "direct {\n  allowed = true\n}\n", "direct", "--upstream: the list names no upstream: give at least one URL, like https://proxy.golang.org", true},
		{"noproxy", "", "noproxy", `--upstream: "noproxy" is not supported: name the upstream URLs`, true},
		{"off last", "", "https://a.example,off", `--upstream: "off" would refuse every module: name at least one upstream, and use a deny rule in the policy to refuse modules`, true},
		{"query", "", "https://a.example/?token=" + canary, "--upstream: https://a.example/ has a query or fragment, which a GOPROXY URL cannot have: remove it", true},
		{"ftp", "", "ftp://a.example", `--upstream: "ftp://a.example" has scheme "ftp": use https://`, true},
		{"no host", "", "https://", `--upstream: "https://" has no host: write it as https://host[:port][/path]`, true},
		{"http off loopback", "", "http://a.example", `--upstream: "http://a.example" uses http to a non-loopback host: use https (plain http is accepted for 127.0.0.1, ::1 and localhost only)`, true},
		{"http loopback", "", "http://127.0.0.1:8080", "http://127.0.0.1:8080", false},
		{"unknown name", "", "corp", `--upstream: "corp" is neither a URL nor an upstream the policy p.hcl declares: write a URL like https://proxy.example.com`, true},
		{"twice", "", "https://a.example,https://a.example/", "--upstream: upstream https://a.example appears twice: remove the repetition", true},
		{"twice with user info", "", "https://u:p@a.example,a.example|https://u:p@a.example", "--upstream: upstream https://a.example appears twice: remove the repetition", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := mustParse(t, tc.src)
			before := p.DefaultRoute.List()
			err := p.WithUpstreamList(tc.list)
			if tc.wantErr {
				if err == nil || err.Error() != tc.want || errkind.Of(err) != errkind.BadInput {
					t.Errorf("WithUpstreamList(%q) = %v, want bad input %q", tc.list, err, tc.want)
				}
				if got := p.DefaultRoute.List(); got != before {
					t.Errorf("after a failed WithUpstreamList the default route = %q, want %q", got, before)
				}
				return
			}
			if err != nil {
				t.Fatalf("WithUpstreamList(%q): %v", tc.list, err)
			}
			if got := p.DefaultRoute.List(); got != tc.want {
				t.Errorf("default route = %q, want %q", got, tc.want)
			}
			// The result is still a policy Show can print and Parse read.
			var buf bytes.Buffer
			if err := p.Show(&buf); err != nil {
				t.Fatal(err)
			}
			again, err := Parse(buf.Bytes(), "shown.hcl")
			if err != nil {
				t.Fatalf("Parse(Show): %v\n%s", err, buf.String())
			}
			sameEffect(t, again, p)
		})
	}
	// New URLs get one upstream each, named flag-N, with the list's
	// separator; a declared upstream the list gives another separator
	// gets a named copy and keeps its own setting for its routes.
	p0 := mustParse(t, pol+"route {\n  modules = [\"corp.example/*\"]\n  upstreams = [\"internal\"]\n}\n")
	if err := p0.WithUpstreamList("https://m.example|internal|public"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range p0.DefaultRoute.Upstreams {
		got = append(got, u.Name+" "+u.Fallthrough.String())
	}
	if want := []string{"flag-1 any", "flag-2 any", "public 404"}; !slices.Equal(got, want) {
		t.Errorf("default route = %q, want %q", got, want)
	}
	if r := p0.Route("corp.example/x"); r.Upstreams[0].Name != "internal" || r.Upstreams[0].Fallthrough != FallthroughNotFound {
		t.Errorf("route upstream = %+v, want internal with fallthrough 404", r.Upstreams[0])
	}
	if c := p0.DefaultRoute.Upstreams[1]; c.ClientKey != "/k.pem" || c.URL != "https://internal.example" {
		t.Errorf("copy of internal = %+v, want its URL and identity", c)
	}

	// User info is basic authentication, kept as a secret: the route, Show
	// and the URL never hold the password.
	pc := Default()
	if err := pc.WithUpstreamList("https://u:" + canary + "@a.example|a.example"); err != nil {
		t.Fatal(err)
	}
	var shown bytes.Buffer
	if err := pc.Show(&shown); err != nil {
		t.Fatal(err)
	}
	u0 := pc.DefaultRoute.Upstreams[0]
	if u0.Username != "u" || u0.Password.Reveal() != canary || u0.URL != "https://a.example" || u0.Fallthrough != FallthroughAny {
		t.Errorf("upstream with user info = %+v, want user u, the password, URL https://a.example, fallthrough any", u0)
	}
	if pc.DefaultRoute.Upstreams[1].BasicAuth() {
		t.Errorf("the same URL without user info got basic authentication")
	}
	for _, s := range []string{shown.String(), pc.DefaultRoute.List(), fmt.Sprintf("%v %+v %#v", pc, *u0, *u0)} {
		if strings.Contains(s, canary) {
			t.Errorf("the password shows: %s", s)
		}
	}

	// A declared upstream keeps its identity when the flag names it.
	p := mustParse(t, pol)
	if err := p.WithUpstreamList("https://internal.example"); err != nil {
		t.Fatal(err)
	}
	if got := p.DefaultRoute.Upstreams[0].ClientKey; got != "/k.pem" {
		t.Errorf("client_key via the flag = %q, want /k.pem", got)
	}
}

func TestShowDefault(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := Default().Show(&buf); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "default.show.golden")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if buf.String() != string(want) {
		t.Errorf("Show(Default()) =\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestQuoteRoundTrip(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"plain", `"q" \ b`, "${x} %{y} $${z} $$${w} $", "tab\tnl\ncr\r", "\x00\x7f\u2028é😀", "\xff"} {
		src := "deny {\n  modules = [\"x\"]\n  reason = " + quote(s) + "\n}\n"
		p, err := Parse([]byte(src), "q.hcl")
		if err != nil {
			t.Errorf("quote(%q) = %s does not parse: %v", s, quote(s), err)
			continue
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if got := p.Rules[0].Reason; got != want {
			t.Errorf("quote(%q) parses back as %q", s, got)
		}
	}
}

// TestDefaultFileBehavesAsDefault: default.hcl says it is exactly what runs
// without --policy. Beyond equal values, every --upstream list gets the
// same answer (direct refused included) and the same exported environment
// through Resolve, the path every subcommand takes.
func TestDefaultFileBehavesAsDefault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		list string
		set  bool
	}{
		{"", false},
		{"", true},
		{"https://a.example", true},
		{"https://a.example,direct", true},
		{"https://a.example|direct", true},
		{"public", true},
		{"off", true},
		{"https://a.example,,https://b.example", true},
	} {
		t.Run(fmt.Sprintf("%q/%v", tc.list, tc.set), func(t *testing.T) {
			t.Parallel()
			builtin, berr := Resolve("", tc.list, tc.set)
			file, ferr := Resolve("default.hcl", tc.list, tc.set)
			if (berr == nil) != (ferr == nil) {
				t.Fatalf("built-in: %v; default.hcl: %v; want the same outcome", berr, ferr)
			}
			if berr != nil {
				b := strings.ReplaceAll(berr.Error(), DefaultSource, "FILE")
				f := strings.ReplaceAll(ferr.Error(), "default.hcl", "FILE")
				if b != f || errkind.Of(berr) != errkind.BadInput || errkind.Of(ferr) != errkind.BadInput {
					t.Errorf("built-in error %q, default.hcl error %q: want the same bad input", berr, ferr)
				}
				return
			}
			sameEffect(t, file, builtin)
			if g, w := file.GoEnv("http://127.0.0.1:1/t"), builtin.GoEnv("http://127.0.0.1:1/t"); !slices.Equal(g, w) {
				t.Errorf("GoEnv: default.hcl %v, built-in %v", g, w)
			}
		})
	}
	// The built-in policy refuses direct, as default.hcl says.
	if _, err := Resolve("", "https://a.example,direct", true); err == nil || !strings.Contains(err.Error(), "does not allow direct") {
		t.Errorf("Resolve(built-in, …,direct) = %v, want direct refused", err)
	}
}

func TestGoEnvDirectSeparator(t *testing.T) {
	t.Parallel()
	const allow = "direct {\n  allowed = true\n}\n"
	for _, tc := range []struct{ list, want string }{
		{"https://a.example", "http://agent/t,direct"},
		{"https://a.example,direct", "http://agent/t,direct"},
		{"https://a.example|direct", "http://agent/t|direct"},
		{"https://a.example,https://b.example|direct", "http://agent/t|direct"},
	} {
		p := mustParse(t, allow)
		if err := p.WithUpstreamList(tc.list); err != nil {
			t.Fatal(err)
		}
		if got := p.GoEnv("http://agent/t")[0].Value; got != tc.want {
			t.Errorf("--upstream %q: GOPROXY = %q, want %q", tc.list, got, tc.want)
		}
	}
}
