package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

func TestPolicyCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, src string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.hcl", "upstream \"internal\" {\n  url = \"https://i.example\"\n  token = \"CANARY-cmd-policy\"\n}\nroute {\n  modules = [\"corp.example/*\"]\n  upstreams = [\"internal\"]\n}\n")
	bad := write("bad.hcl", "retry {\n  atempts = 3\n}\nupstream \"a\" {\n  url = \"http://a.example\"\n}\n")

	for _, tc := range []struct {
		name       string
		args       []string
		wantKind   errkind.Kind
		wantErr    bool
		wantStdout []string
		wantStderr []string
	}{
		{name: "check ok", args: []string{"policy", "check", good}, wantStdout: []string{good + ": ok\n"}},
		{name: "check example", args: []string{"policy", "check", "../../policies/strict.hcl"}, wantStdout: []string{"../../policies/strict.hcl: ok\n"}},
		{name: "check bad", args: []string{"policy", "check", bad}, wantErr: true, wantKind: errkind.BadInput,
			wantStderr: []string{bad + `:2:3: Unsupported argument: An argument named "atempts" is not expected here. Did you mean "attempts"?`, "  2 |   atempts = 3\n", bad + `:5:9: Invalid upstream URL: "http://a.example" uses http`}},
		{name: "check missing", args: []string{"policy", "check", filepath.Join(dir, "nope.hcl")}, wantErr: true, wantKind: errkind.BadInput},
		{name: "check no file", args: []string{"policy", "check"}, wantErr: true, wantKind: errkind.BadInput},
		{name: "show default", args: []string{"policy", "show"}, wantStdout: []string{`url             = "https://proxy.golang.org"`, "attempts    = 3"}},
		{name: "show file", args: []string{"policy", "show", good}, wantStdout: []string{`token           = "(redacted)"`, `upstreams = ["internal"]`, "# never looked up (GONOSUMDB): corp.example/*"}},
		{name: "show upstream", args: []string{"policy", "show", "--upstream", "https://m.example|public"}, wantStdout: []string{`upstreams = ["flag-1", "public"]`, `fallthrough     = "any"`}},
		{name: "show bad upstream", args: []string{"policy", "show", "--upstream", "off"}, wantErr: true, wantKind: errkind.BadInput},
		{name: "unknown sub", args: []string{"policy", "lint"}, wantErr: true, wantKind: errkind.BadInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tc.args, &stdout, &stderr)
			if (err != nil) != tc.wantErr {
				t.Fatalf("run(%q) = %v, want error %v; stderr:\n%s", tc.args, err, tc.wantErr, stderr.String())
			}
			if err != nil && errkind.Of(err) != tc.wantKind {
				t.Errorf("error kind = %v, want %v", errkind.Of(err), tc.wantKind)
			}
			for _, w := range tc.wantStdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tc.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			if all := stdout.String() + stderr.String() + errString(err); strings.Contains(all, "CANARY") {
				t.Errorf("output leaked the canary token:\n%s", all)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
