package policies

import (
	"crypto/tls"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Show writes the effective policy, every default filled in, as HCL that
// Parse accepts. Inline secrets print as "(redacted)"; file paths and
// environment variable names print as they are.
func (p *Policy) Show(w io.Writer) error {
	body := &hclBody{}
	body.attr("upstreams", names(p.DefaultRoute.Upstreams))
	for _, u := range p.Upstreams {
		b := body.block("upstream", u.Name)
		b.attr("url", quote(u.URL))
		setStr(b, "client_cert", u.ClientCert)
		setStr(b, "client_key", u.ClientKey)
		setStr(b, "ca_cert", u.CACert)
		if len(u.SPKIPins) > 0 {
			b.attr("spki_pins", strList(u.SPKIPins))
		}
		if u.Token != "" {
			b.attr("token", quote(Redacted))
		}
		setStr(b, "token_env", u.TokenEnv)
		if u.BasicAuth() {
			b.comment("basic authentication from --upstream: user " + strconv.Quote(u.Username) + ", password " + Redacted)
		}
		b.attr("timeout", dur(u.Timeout))
		b.attr("connect_timeout", dur(u.ConnectTimeout))
		b.attr("fallthrough", quote(u.Fallthrough.String()))
		tv := "1.2"
		if u.MinTLSVersion >= tls.VersionTLS13 {
			tv = "1.3"
		}
		b.attr("tls_min_version", quote(tv))
	}
	for _, r := range p.Routes {
		b := body.block("route", "")
		b.attr("modules", strList(r.Modules))
		b.attr("upstreams", names(r.Upstreams))
		b.attr("private", boolean(r.Private))
	}
	for _, r := range p.Rules {
		typ := "deny"
		if r.Allow {
			typ = "allow"
		}
		b := body.block(typ, "")
		b.attr("modules", strList(r.Modules))
		if !r.Allow {
			b.attr("reason", quote(r.Reason))
		}
	}

	b := body.block("sumdb", "")
	b.attr("enabled", boolean(p.SumDB.Enabled))
	b.attr("name", quote(p.SumDB.Name))
	setStr(b, "key", p.SumDB.Key)
	setStr(b, "url", p.SumDB.URL)
	if len(p.SumDB.Private) > 0 {
		b.attr("private", strList(p.SumDB.Private))
	}
	if priv := p.PrivatePatterns(); len(priv) > 0 {
		b.comment("never looked up (GONOSUMDB): " + strings.Join(priv, ","))
	}

	body.block("direct", "").attr("allowed", boolean(p.Direct.Allowed))

	b = body.block("retry", "")
	b.attr("attempts", strconv.Itoa(p.Retry.Attempts))
	b.attr("backoff", dur(p.Retry.Backoff))
	b.attr("max_backoff", dur(p.Retry.MaxBackoff))

	b = body.block("circuit_breaker", "")
	b.attr("failures", strconv.Itoa(p.CircuitBreaker.Failures))
	b.attr("cooldown", dur(p.CircuitBreaker.Cooldown))

	b = body.block("privilege", "")
	b.attr("require_separation", boolean(p.Privilege.RequireSeparation))
	b.attr("user", quote(p.Privilege.User))
	b.attr("uid", strconv.Itoa(p.Privilege.UID))

	b = body.block("warm", "")
	b.attr("enabled", boolean(p.Warm.Enabled))
	b.attr("concurrency", strconv.Itoa(p.Warm.Concurrency))
	b.attr("extract", boolean(p.Warm.Extract))

	b = body.block("env", "")
	b.attr("goflags", quote(p.Env.GOFLAGS))
	b.attr("goprivate", boolean(p.Env.GOPRIVATE))

	src := strings.NewReplacer("\n", " ", "\r", " ").Replace(p.Source)
	if _, err := fmt.Fprintf(w, "# Effective policy from %s, defaults applied, secrets redacted.\n", src); err != nil {
		return fmt.Errorf("write policy: %w", err)
	}
	if _, err := io.WriteString(w, body.String()); err != nil {
		return fmt.Errorf("write policy: %w", err)
	}
	return nil
}

func setStr(b *hclBody, name, v string) {
	if v != "" {
		b.attr(name, quote(v))
	}
}

func strList(ss []string) string {
	qs := make([]string, len(ss))
	for i, s := range ss {
		qs[i] = quote(s)
	}
	return "[" + strings.Join(qs, ", ") + "]"
}

func names(us []*Upstream) string {
	ns := make([]string, len(us))
	for i, u := range us {
		ns[i] = u.Name
	}
	return strList(ns)
}

func dur(d time.Duration) string { return quote(d.String()) }

func boolean(b bool) string { return strconv.FormatBool(b) }

// quote returns s as an HCL quoted string: escapes for quotes,
// backslashes and control characters, and "$${" / "%%{" so that no
// template sequence is interpreted.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case (r == '$' || r == '%') && strings.HasPrefix(s[i+1:], "{"):
			b.WriteRune(r)
			b.WriteRune(r)
		case r == utf8.RuneError && size == 1:
			b.WriteString(`\ufffd`)
		case !unicode.IsPrint(r):
			if r > 0xffff {
				fmt.Fprintf(&b, `\U%08x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteRune(r)
		}
		i += size
	}
	b.WriteByte('"')
	return b.String()
}

// hclBody is a minimal HCL writer: top-level attributes and blocks of
// attributes, with the "=" aligned within each body as hclwrite formats it.
type hclBody struct {
	names, vals []string
	blocks      []*hclBlock
}

type hclBlock struct {
	typ, label string
	body       *hclBody
}

func (b *hclBody) attr(name, val string) *hclBody {
	b.names = append(b.names, name)
	b.vals = append(b.vals, val)
	return b
}

// comment adds a comment line; line breaks in text become spaces.
func (b *hclBody) comment(text string) {
	b.names = append(b.names, "")
	b.vals = append(b.vals, strings.NewReplacer("\n", " ", "\r", " ").Replace(text))
}

func (b *hclBody) block(typ, label string) *hclBody {
	nb := &hclBlock{typ: typ, label: label, body: &hclBody{}}
	b.blocks = append(b.blocks, nb)
	return nb.body
}

func (b *hclBody) write(sb *strings.Builder, indent string) {
	width := 0
	for _, n := range b.names {
		width = max(width, len(n))
	}
	for i, n := range b.names {
		if n == "" {
			fmt.Fprintf(sb, "%s# %s\n", indent, b.vals[i])
			continue
		}
		fmt.Fprintf(sb, "%s%-*s = %s\n", indent, width, n, b.vals[i])
	}
	for _, bl := range b.blocks {
		sb.WriteByte('\n')
		sb.WriteString(indent + bl.typ)
		if bl.label != "" {
			sb.WriteString(" " + quote(bl.label))
		}
		sb.WriteString(" {\n")
		bl.body.write(sb, indent+"  ")
		sb.WriteString(indent + "}\n")
	}
}

// String renders the body.
func (b *hclBody) String() string {
	var sb strings.Builder
	b.write(&sb, "")
	return sb.String()
}
