package upstream

import (
	"net/url"
	"strings"
	"testing"
)

func TestParseList(t *testing.T) {
	t.Parallel()
	for _, test := range []struct {
		in      string
		want    string // entries as "<entry><sep>" joined
		wantErr string
	}{
		{in: "https://proxy.golang.org", want: "https://proxy.golang.org"},
		{in: "https://a.example,https://b.example", want: "https://a.example,https://b.example"},
		{in: "https://a.example|https://b.example,direct", want: "https://a.example|https://b.example,direct"},
		{in: "https://a.example|direct", want: "https://a.example|direct"},
		{in: " https://a.example/ ", want: "https://a.example"},
		{in: "https://a.example/base/", want: "https://a.example/base"},
		{in: "http://127.0.0.1:8080", want: "http://127.0.0.1:8080"},
		{in: "off", wantErr: `"off" would refuse every module`},
		{in: "", wantErr: "empty"},
		{in: "https://a.example,", wantErr: "trailing"},
		{in: "https://a.example,,https://b.example", wantErr: "doubled separator"},
		{in: "direct,https://a.example", wantErr: "last element"},
		{in: "ftp://a.example", wantErr: "use https://"},
		{in: "http://a.example", wantErr: "non-loopback"},
		{in: "https://", wantErr: "no host"},
		{in: "https://a.example/?x=1", wantErr: "query"},
		{in: "a.example", want: "https://a.example"},
	} {
		t.Run(test.in, func(t *testing.T) {
			t.Parallel()
			entries, err := ParseList(test.in)
			if test.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), test.wantErr) {
					t.Fatalf("ParseList(%q) error = %v, want one containing %q", test.in, err, test.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseList(%q): %v", test.in, err)
			}
			var b strings.Builder
			for i, e := range entries {
				b.WriteString(e.String())
				if i < len(entries)-1 {
					if e.AnyError {
						b.WriteByte('|')
					} else {
						b.WriteByte(',')
					}
				}
			}
			if got := b.String(); got != test.want {
				t.Errorf("ParseList(%q) = %q, want %q", test.in, got, test.want)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	const canary = "Zx81CANARYtok3nAbCdEf0123"
	for _, test := range []struct{ in, want string }{
		{"https://proxy.golang.org", "https://proxy.golang.org"},
		{"https://user:" + canary + "@corp.example/goproxy", "https://REDACTED@corp.example/goproxy"},
		{"http://127.0.0.1:5000/" + canary + "/golang.org/x/mod/@v/list", "http://127.0.0.1:5000/REDACTED/golang.org/x/mod/@v/list"},
		{"https://corp.example/p?token=" + canary, "https://corp.example/p"},
	} {
		u, err := url.Parse(test.in)
		if err != nil {
			t.Fatal(err)
		}
		got := Redact(u)
		if got != test.want {
			t.Errorf("Redact(%q) = %q, want %q", test.in, got, test.want)
		}
		if strings.Contains(got, canary) {
			t.Errorf("Redact(%q) leaks the canary", test.in)
		}
	}
	if _, err := ParseList("https://a.example/%zz" + canary); err == nil || strings.Contains(err.Error(), canary) {
		t.Errorf("ParseList error %v: want an error without the canary", err)
	}
}
