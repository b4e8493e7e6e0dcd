package upstream

import (
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

// TestParseListRedacts: a bad element's error never repeats it.
func TestParseListRedacts(t *testing.T) {
	t.Parallel()
	const canary = "Zx81CANARYtok3nAbCdEf0123"
	if _, err := ParseList("https://a.example/%zz" + canary); err == nil || strings.Contains(err.Error(), canary) {
		t.Errorf("ParseList error %v: want an error without the canary", err)
	}
}
