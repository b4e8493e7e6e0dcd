package diagnose

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// TestNginxClientCert runs the client-certificate faults against the real
// nginx mTLS front (examples/nginx-mtls): nginx completes the handshake and
// answers 400 with its own page, which is what users meet.
func TestNginxClientCert(t *testing.T) {
	t.Parallel()
	stack := testenv.StartMTLSStack(t, []testenv.Module{{Path: "example.com/m", Version: "v1.0.0"}})
	for _, tc := range nginxCases(stack) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tg := target(stack.URL+"/", stack.CA, tc.client(t))
			r := Run(context.Background(), []Target{tg}, Options{Env: envMap(nil), Step: 2 * time.Second, Total: 8 * time.Second})
			var text strings.Builder
			_ = WriteText(&text, r, false)
			v := r.Verdict
			if v.Layer != tc.wantLayer || v.Status != tc.wantStatus {
				t.Fatalf("verdict = %s at %q, want %s at %q\n%s", v.Status, v.Layer, tc.wantStatus, tc.wantLayer, text.String())
			}
			if !strings.Contains(v.Remedy, tc.wantRemedy) {
				t.Errorf("verdict remedy = %q, want it to mention %q", v.Remedy, tc.wantRemedy)
			}
			if !strings.Contains(v.Summary, tc.wantDetail) {
				t.Errorf("verdict summary = %q, want it to mention %q", v.Summary, tc.wantDetail)
			}
			if tc.wantStatus == StatusOK {
				for _, c := range r.Checks {
					if c.Status != StatusOK {
						t.Errorf("check %s %s = %s, want ok: %s", c.Layer, c.Address, c.Status, c.Detail)
					}
				}
			}
			t.Logf("\n%s", text.String())
		})
	}
}

type nginxCase struct {
	name       string
	client     func(t *testing.T) *testenv.Leaf
	wantLayer  string
	wantStatus Status
	wantRemedy string
	wantDetail string
}

func nginxCases(stack *testenv.Stack) []nginxCase {
	return []nginxCase{
		{
			name:       "healthy",
			client:     func(*testing.T) *testenv.Leaf { return stack.Client },
			wantStatus: StatusOK,
		},
		{
			name:      "client certificate not sent",
			client:    func(*testing.T) *testenv.Leaf { return nil },
			wantLayer: LayerClientCert, wantStatus: StatusFail,
			wantRemedy: "--client-cert", wantDetail: "No required SSL certificate was sent",
		},
		{
			name: "client certificate from another CA",
			client: func(t *testing.T) *testenv.Leaf {
				return testenv.NewCA(t).Issue(t, testenv.CertSpec{Client: true, CommonName: "ci-client"})
			},
			wantLayer: LayerClientCert, wantStatus: StatusFail,
			wantRemedy: "issued by a CA the server accepts", wantDetail: "not issued by a CA the server accepts",
		},
		{
			name: "client certificate expired",
			client: func(t *testing.T) *testenv.Leaf {
				return stack.ClientCA.Issue(t, testenv.CertSpec{Client: true, CommonName: "ci-client",
					NotBefore: time.Now().Add(-3 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
			},
			wantLayer: LayerClientCert, wantStatus: StatusFail,
			wantRemedy: "renew", wantDetail: "The SSL certificate error",
		},
	}
}
