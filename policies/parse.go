package policies

import (
	"crypto/tls"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"golang.org/x/mod/sumdb/note"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// maxPolicySize bounds a policy file; real ones are a few kilobytes.
const maxPolicySize = 1 << 20

// Load reads and parses the policy file at path. Errors are bad input
// (errkind.BadInput); parse and validation errors are an *Error whose
// diagnostics carry file:line:col.
func Load(path string) (*Policy, error) {
	fi, err := os.Stat(path)
	if err == nil && fi.Size() > maxPolicySize {
		err = fmt.Errorf("larger than %d bytes", maxPolicySize)
	}
	var src []byte
	if err == nil {
		src, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("read policy %s: %w: check the --policy path", path, err))
	}
	return Parse(src, path)
}

// Parse parses and validates a policy from src; filename names it in
// diagnostics, and relative certificate paths are resolved against its
// directory. Settings the file leaves out take the values of Default.
// Errors are an *Error marked errkind.BadInput.
func Parse(src []byte, filename string) (*Policy, error) {
	if len(src) > maxPolicySize {
		return nil, errkind.Mark(errkind.BadInput, fmt.Errorf("policy %s: larger than %d bytes", filename, maxPolicySize))
	}
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, newError(diags, filename, src)
	}
	d := &decoder{dir: filepath.Dir(filename)}
	p := d.policy(file.Body, filename)
	if d.diags.HasErrors() {
		return nil, newError(d.diags, filename, src)
	}
	return p, nil
}

var (
	topSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "upstreams"}},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "upstream", LabelNames: []string{"name"}},
			{Type: "route"}, {Type: "allow"}, {Type: "deny"},
			{Type: "sumdb"}, {Type: "direct"}, {Type: "retry"}, {Type: "circuit_breaker"},
			{Type: "privilege"}, {Type: "warm"}, {Type: "env"},
		},
	}
	upstreamSchema = attrs("url!", "client_cert", "client_key", "ca_cert", "spki_pins", "token", "token_env",
		"timeout", "connect_timeout", "fallthrough", "tls_min_version")
	routeSchema     = attrs("modules!", "upstreams!", "private")
	allowSchema     = attrs("modules!")
	denySchema      = attrs("modules!", "reason")
	sumdbSchema     = attrs("enabled", "name", "key", "url", "private")
	directSchema    = attrs("allowed")
	retrySchema     = attrs("attempts", "backoff", "max_backoff")
	breakerSchema   = attrs("failures", "cooldown")
	privilegeSchema = attrs("require_separation", "user", "uid")
	warmSchema      = attrs("enabled", "concurrency", "extract")
	envSchema       = attrs("goflags", "goprivate")
)

// attrs builds a block schema of attributes only; a trailing "!" marks a
// required one.
func attrs(names ...string) *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, n := range names {
		req := false
		if n[len(n)-1] == '!' {
			n, req = n[:len(n)-1], true
		}
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: n, Required: req})
	}
	return s
}

// decoder turns the HCL body into a Policy, collecting every diagnostic
// rather than stopping at the first.
type decoder struct {
	diags hcl.Diagnostics
	dir   string
}

func (d *decoder) errorf(rng hcl.Range, summary, format string, args ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  rng.Ptr(),
	})
}

func (d *decoder) content(body hcl.Body, schema *hcl.BodySchema) hcl.Attributes {
	c, diags := body.Content(schema)
	d.diags = append(d.diags, diags...)
	if c == nil {
		return hcl.Attributes{}
	}
	return c.Attributes
}

// value evaluates an attribute (no variables, no functions) and converts
// it to ty. ok is false when the attribute is absent, null or wrong.
func (d *decoder) value(a *hcl.Attribute, ty cty.Type, want string) (cty.Value, bool) {
	if a == nil {
		return cty.NilVal, false
	}
	v, diags := a.Expr.Value(nil)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() || v.IsNull() {
		return cty.NilVal, false
	}
	cv, err := convert.Convert(v, ty)
	if err != nil || !cv.IsWhollyKnown() || cv.IsNull() {
		d.errorf(a.Expr.Range(), "Incorrect attribute value type", "%s must be %s.", a.Name, want)
		return cty.NilVal, false
	}
	return cv, true
}

func (d *decoder) str(a *hcl.Attribute, dst *string) bool {
	v, ok := d.value(a, cty.String, "a string")
	if ok {
		*dst = v.AsString()
	}
	return ok
}

func (d *decoder) boolean(a *hcl.Attribute, dst *bool) {
	if v, ok := d.value(a, cty.Bool, "true or false"); ok {
		*dst = v.True()
	}
}

func (d *decoder) integer(a *hcl.Attribute, dst *int, lo, hi int64) {
	v, ok := d.value(a, cty.Number, "a whole number")
	if !ok {
		return
	}
	bf := v.AsBigFloat()
	n, acc := bf.Int64()
	if !bf.IsInt() || acc != big.Exact || n < lo || n > hi {
		d.errorf(a.Expr.Range(), "Invalid value", "%s must be a whole number from %d to %d.", a.Name, lo, hi)
		return
	}
	*dst = int(n)
}

// duration decodes a Go duration string ("200ms", "1m30s"); negative
// durations are errors, and so is zero unless zeroOK.
func (d *decoder) duration(a *hcl.Attribute, dst *time.Duration, zeroOK bool) {
	var s string
	if !d.str(a, &s) {
		return
	}
	v, err := time.ParseDuration(s)
	switch {
	case err != nil:
		d.errorf(a.Expr.Range(), "Invalid duration", "%s = %q is not a duration: write it like \"200ms\", \"30s\" or \"1m30s\".", a.Name, s)
	case v < 0:
		d.errorf(a.Expr.Range(), "Invalid duration", "%s = %q is negative: durations must be zero or more.", a.Name, s)
	case v == 0 && !zeroOK:
		d.errorf(a.Expr.Range(), "Invalid duration", "%s must be more than zero.", a.Name)
	default:
		*dst = v
	}
}

// listItem is one string of a list attribute with its source range.
type listItem struct {
	val string
	rng hcl.Range
}

// strList decodes a static list of strings, keeping each element's range
// for later diagnostics.
func (d *decoder) strList(a *hcl.Attribute) ([]listItem, bool) {
	if a == nil {
		return nil, false
	}
	exprs, diags := hcl.ExprList(a.Expr)
	if diags.HasErrors() {
		d.errorf(a.Expr.Range(), "Incorrect attribute value type", "%s must be a list of strings, like [\"a\", \"b\"].", a.Name)
		return nil, false
	}
	out := make([]listItem, 0, len(exprs))
	ok := true
	for _, e := range exprs {
		v, diags := e.Value(nil)
		d.diags = append(d.diags, diags...)
		if diags.HasErrors() {
			ok = false
			continue
		}
		cv, err := convert.Convert(v, cty.String)
		if err != nil || cv.IsNull() || !cv.IsWhollyKnown() {
			d.errorf(e.Range(), "Incorrect attribute value type", "Each element of %s must be a string.", a.Name)
			ok = false
			continue
		}
		out = append(out, listItem{cv.AsString(), e.Range()})
	}
	return out, ok
}

// patterns decodes a non-empty list of module path patterns.
func (d *decoder) patterns(a *hcl.Attribute) []string {
	items, ok := d.strList(a)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		d.errorf(a.Expr.Range(), "Empty module list", "%s must name at least one module path pattern, like [\"corp.example.com/*\"].", a.Name)
		return nil
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		if err := checkPattern(it.val); err != nil {
			d.errorf(it.rng, "Invalid module pattern", "%v.", err)
			continue
		}
		out = append(out, it.val)
	}
	return out
}

func (d *decoder) path(a *hcl.Attribute, dst *string) {
	var s string
	if !d.str(a, &s) {
		return
	}
	if s == "" {
		d.errorf(a.Expr.Range(), "Empty path", "%s is empty: name a PEM file or remove the attribute.", a.Name)
		return
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(d.dir, s)
	}
	*dst = s
}

// single returns the only block of a type, reporting duplicates.
func (d *decoder) single(blocks hcl.Blocks, typ string) *hcl.Block {
	bs := blocks.OfType(typ)
	for _, b := range bs[min(1, len(bs)):] {
		d.errorf(b.DefRange, "Duplicate "+typ+" block", "Only one %s block is allowed; the first is at %s: merge them.", typ, bs[0].DefRange)
	}
	if len(bs) == 0 {
		return nil
	}
	return bs[0]
}

func (d *decoder) policy(body hcl.Body, filename string) *Policy {
	p := Default()
	p.Source = filename
	p.Upstreams = nil
	c, diags := body.Content(topSchema)
	d.diags = append(d.diags, diags...)
	if c == nil {
		return p
	}

	// Upstreams first: routes refer to them by name.
	for _, b := range c.Blocks.OfType("upstream") {
		u := d.upstream(b)
		if u == nil {
			continue
		}
		if prev := p.upstream(u.Name); prev != nil {
			d.errorf(b.LabelRanges[0], "Duplicate upstream", "An upstream named %q is already declared: rename one of them.", u.Name)
			continue
		}
		p.Upstreams = append(p.Upstreams, u)
	}

	if b := d.single(c.Blocks, "direct"); b != nil {
		a := d.content(b.Body, directSchema)
		d.boolean(a["allowed"], &p.Direct.Allowed)
	}

	if a := c.Attributes["upstreams"]; a != nil {
		p.DefaultRoute.Upstreams = d.upstreamList(p, a)
	} else {
		p.DefaultRoute.Upstreams = []*Upstream{d.resolve(p, BuiltinUpstream)}
	}

	for _, b := range c.Blocks {
		switch b.Type {
		case "route":
			a := d.content(b.Body, routeSchema)
			r := Route{Private: true, Modules: d.patterns(a["modules"])}
			if a["upstreams"] != nil {
				r.Upstreams = d.upstreamList(p, a["upstreams"])
			}
			d.boolean(a["private"], &r.Private)
			if r.Modules == nil {
				r.Modules = []string{} // keep it distinct from the default route
			}
			p.Routes = append(p.Routes, r)
		case "allow":
			a := d.content(b.Body, allowSchema)
			p.Rules = append(p.Rules, Rule{Allow: true, Modules: d.patterns(a["modules"])})
		case "deny":
			a := d.content(b.Body, denySchema)
			r := Rule{Modules: d.patterns(a["modules"]), Reason: defaultDenyReason}
			if d.str(a["reason"], &r.Reason) && r.Reason == "" {
				d.errorf(a["reason"].Expr.Range(), "Empty reason", "reason is empty: say why the modules are denied, or remove the attribute.")
			}
			p.Rules = append(p.Rules, r)
		}
	}

	if b := d.single(c.Blocks, "sumdb"); b != nil {
		d.sumdb(b, &p.SumDB)
	}
	if b := d.single(c.Blocks, "retry"); b != nil {
		a := d.content(b.Body, retrySchema)
		d.integer(a["attempts"], &p.Retry.Attempts, 1, 10)
		d.duration(a["backoff"], &p.Retry.Backoff, true)
		d.duration(a["max_backoff"], &p.Retry.MaxBackoff, true)
		if p.Retry.MaxBackoff < p.Retry.Backoff {
			rng := b.DefRange
			if a["max_backoff"] != nil {
				rng = a["max_backoff"].Expr.Range()
			}
			d.errorf(rng, "Invalid duration", "max_backoff (%s) is less than backoff (%s): raise max_backoff or lower backoff.", p.Retry.MaxBackoff, p.Retry.Backoff)
		}
	}
	if b := d.single(c.Blocks, "circuit_breaker"); b != nil {
		a := d.content(b.Body, breakerSchema)
		d.integer(a["failures"], &p.CircuitBreaker.Failures, 0, 1000)
		d.duration(a["cooldown"], &p.CircuitBreaker.Cooldown, false)
	}
	if b := d.single(c.Blocks, "privilege"); b != nil {
		a := d.content(b.Body, privilegeSchema)
		d.boolean(a["require_separation"], &p.Privilege.RequireSeparation)
		if d.str(a["user"], &p.Privilege.User) && !userRE.MatchString(p.Privilege.User) {
			d.errorf(a["user"].Expr.Range(), "Invalid user name", "user %q is not a valid user name: use lower-case letters, digits, '-' and '_', starting with a letter or '_', at most 32 characters.", p.Privilege.User)
		}
		d.integer(a["uid"], &p.Privilege.UID, 0, 1<<31-2)
	}
	if b := d.single(c.Blocks, "warm"); b != nil {
		a := d.content(b.Body, warmSchema)
		d.boolean(a["enabled"], &p.Warm.Enabled)
		d.integer(a["concurrency"], &p.Warm.Concurrency, 0, 1024)
		d.boolean(a["extract"], &p.Warm.Extract)
	}
	if b := d.single(c.Blocks, "env"); b != nil {
		a := d.content(b.Body, envSchema)
		if d.str(a["goflags"], &p.Env.GOFLAGS) {
			if err := checkGOFLAGS(p.Env.GOFLAGS); err != nil {
				d.errorf(a["goflags"].Expr.Range(), "Invalid GOFLAGS", "%v.", err)
			}
		}
		d.boolean(a["goprivate"], &p.Env.GOPRIVATE)
	}
	return p
}

func (d *decoder) upstream(b *hcl.Block) *Upstream {
	name := b.Labels[0]
	if err := checkName(name); err != nil {
		d.errorf(b.LabelRanges[0], "Invalid upstream name", "%v.", err)
	}
	u := newUpstream(name)
	a := d.content(b.Body, upstreamSchema)
	var raw string
	if d.str(a["url"], &raw) {
		norm, err := normalizeURL(raw)
		if err != nil {
			d.errorf(a["url"].Expr.Range(), "Invalid upstream URL", "%v.", err)
		}
		u.URL = norm
	}
	d.path(a["client_cert"], &u.ClientCert)
	d.path(a["client_key"], &u.ClientKey)
	d.path(a["ca_cert"], &u.CACert)
	if (a["client_cert"] == nil) != (a["client_key"] == nil) {
		d.errorf(b.DefRange, "Incomplete client identity", "upstream %q sets only one of client_cert and client_key: set both, or neither.", name)
	}
	if a["spki_pins"] != nil {
		items, _ := d.strList(a["spki_pins"])
		for _, it := range items {
			if err := checkPin(it.val); err != nil {
				d.errorf(it.rng, "Invalid SPKI pin", "%v.", err)
				continue
			}
			u.SPKIPins = append(u.SPKIPins, it.val)
		}
	}
	var tok string
	if d.str(a["token"], &tok) {
		u.Token = Secret(tok)
	}
	if d.str(a["token_env"], &u.TokenEnv) && !envNameRE.MatchString(u.TokenEnv) {
		d.errorf(a["token_env"].Expr.Range(), "Invalid environment variable name", "token_env %q is not an environment variable name: use letters, digits and '_'.", u.TokenEnv)
	}
	if a["token"] != nil && a["token_env"] != nil {
		d.errorf(a["token_env"].NameRange, "Conflicting token settings", "upstream %q sets both token and token_env: keep token_env and remove the inline token.", name)
	}
	d.duration(a["timeout"], &u.Timeout, false)
	d.duration(a["connect_timeout"], &u.ConnectTimeout, false)
	var ft string
	if d.str(a["fallthrough"], &ft) {
		switch ft {
		case "404":
			u.Fallthrough = FallthroughNotFound
		case "any":
			u.Fallthrough = FallthroughAny
		default:
			d.errorf(a["fallthrough"].Expr.Range(), "Invalid fallthrough", "fallthrough = %q is not known: use \"404\" (next upstream only on 404/410, cmd/go's ',') or \"any\" (on any error, cmd/go's '|').", ft)
		}
	}
	var tv string
	if d.str(a["tls_min_version"], &tv) {
		switch tv {
		case "1.2":
			u.MinTLSVersion = tls.VersionTLS12
		case "1.3":
			u.MinTLSVersion = tls.VersionTLS13
		default:
			d.errorf(a["tls_min_version"].Expr.Range(), "Invalid TLS version", "tls_min_version = %q is not allowed: use \"1.2\" or \"1.3\" (versions below 1.2 cannot be enabled).", tv)
		}
	}
	return u
}

// resolve returns the declared upstream called name, or the built-in one,
// adding the built-in one to the policy on first use.
func (d *decoder) resolve(p *Policy, name string) *Upstream {
	if u := p.upstream(name); u != nil {
		return u
	}
	if name == BuiltinUpstream {
		u := builtinUpstream()
		p.Upstreams = append([]*Upstream{u}, p.Upstreams...)
		return u
	}
	return nil
}

// upstreamList decodes a non-empty list of upstream names.
func (d *decoder) upstreamList(p *Policy, a *hcl.Attribute) []*Upstream {
	items, ok := d.strList(a)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		d.errorf(a.Expr.Range(), "Empty upstream list", "%s must name at least one upstream.", a.Name)
		return nil
	}
	var out []*Upstream
	for _, it := range items {
		if it.val == "direct" {
			d.errorf(it.rng, "Unknown upstream", "\"direct\" is not an upstream: to let cmd/go fetch from version control what the upstreams do not have, set direct { allowed = true }.")
			continue
		}
		u := d.resolve(p, it.val)
		if u == nil {
			d.errorf(it.rng, "Unknown upstream", "No upstream named %q is declared: declare upstream %q { url = \"...\" } or use one of %s.", it.val, it.val, upstreamNames(p))
			continue
		}
		if containsUpstream(out, u) {
			d.errorf(it.rng, "Duplicate upstream", "Upstream %q is already in this list: remove the repetition.", it.val)
			continue
		}
		out = append(out, u)
	}
	return out
}

func containsUpstream(list []*Upstream, u *Upstream) bool {
	for _, x := range list {
		if x == u {
			return true
		}
	}
	return false
}

func upstreamNames(p *Policy) string {
	names := fmt.Sprintf("%q", BuiltinUpstream)
	for _, u := range p.Upstreams {
		if u.Name != BuiltinUpstream {
			names += fmt.Sprintf(", %q", u.Name)
		}
	}
	return names
}

func (d *decoder) sumdb(b *hcl.Block, s *SumDB) {
	a := d.content(b.Body, sumdbSchema)
	d.boolean(a["enabled"], &s.Enabled)
	if d.str(a["name"], &s.Name) && (s.Name == "" || !hostRE.MatchString(s.Name)) {
		d.errorf(a["name"].Expr.Range(), "Invalid checksum database name", "name %q is not a host name like sum.golang.org.", s.Name)
	}
	if d.str(a["key"], &s.Key) {
		v, err := note.NewVerifier(s.Key)
		switch {
		case err != nil:
			d.errorf(a["key"].Expr.Range(), "Invalid checksum database key", "key is not a verifier key (%v): copy it from the database's operator, in the form name+hash+base64.", err)
		case v.Name() != s.Name:
			d.errorf(a["key"].Expr.Range(), "Invalid checksum database key", "key is for %q but name is %q: make them agree.", v.Name(), s.Name)
		}
	} else if s.Name != DefaultSumDB && s.Name != "sum.golang.google.cn" {
		rng := b.DefRange
		if a["name"] != nil {
			rng = a["name"].Expr.Range()
		}
		d.errorf(rng, "Missing checksum database key", "cmd/go does not know the key of %q: set key = \"%s+<hash>+<key>\".", s.Name, s.Name)
	}
	var raw string
	if d.str(a["url"], &raw) {
		norm, err := normalizeURL(raw)
		if err != nil {
			d.errorf(a["url"].Expr.Range(), "Invalid checksum database URL", "%v.", err)
		}
		s.URL = norm
	}
	if a["private"] != nil {
		s.Private = d.patterns(a["private"])
	}
}
