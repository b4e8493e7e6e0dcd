package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/proxy"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
	"github.com/goproxy-setup/goproxy-setup/policies"
)

// TestShutdownCutsStalledRequest: a stop (SIGTERM cancels Serve's
// context) while a request is held open by an upstream that never
// answers ends Serve without an error once the grace period is over
// (the sidecar and the agent exit 0), the request is cut, and the log
// names it without the token.
func TestShutdownCutsStalledRequest(t *testing.T) {
	t.Parallel()
	const path = "example.com/m/@v/v1.0.0.zip"
	asked := make(chan struct{}, 1)
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(up.Close)
	t.Cleanup(func() { close(release) })
	pol, err := policies.Resolve("", up.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := proxy.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	var logs testenv.SyncBuffer
	ctx, sigterm := context.WithCancel(t.Context())
	defer sigterm()
	base := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ServeConfig{
			Policy:        pol,
			Token:         tok,
			Timeout:       time.Hour, // the upstream holds the request: only the stop ends it
			ShutdownGrace: 100 * time.Millisecond,
			Ready:         func(b string) { base <- b },
			Logger:        hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info}),
		})
	}()
	var url string
	select {
	case url = <-base:
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		resp, err := http.Get(url + "/" + path)
		if err == nil {
			resp.Body.Close()
		}
		got <- err
	}()
	<-asked // the request is in flight, held by the upstream
	sigterm()
	if err := <-done; err != nil {
		t.Fatalf("Serve after a stop with a request in flight: %v, want nil (a clean stop exits 0)", err)
	}
	if err := <-got; err == nil {
		t.Errorf("the in-flight request was answered; want it cut by the stop")
	}
	log := logs.String()
	if !strings.Contains(log, "were cut") || !strings.Contains(log, path) {
		t.Errorf("log does not name the cut request %s:\n%s", path, log)
	}
	if strings.Contains(log, tok) {
		t.Errorf("log holds the capability token:\n%s", log)
	}
}
