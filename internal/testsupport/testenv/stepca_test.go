package testenv

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"testing"
)

func TestStartStepCA(t *testing.T) {
	t.Parallel()
	s := StartStepCA(t)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.Pool(), MinVersion: tls.VersionTLS12}}}
	resp, err := c.Get(s.URL + "/provisioners")
	if err != nil {
		t.Fatalf("GET /provisioners: %v", err)
	}
	defer resp.Body.Close()
	var list struct {
		Provisioners []struct {
			Type, Name string
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("decode /provisioners: %v", err)
	}
	got := map[string]string{}
	for _, p := range list.Provisioners {
		got[p.Name] = p.Type
	}
	for name, typ := range map[string]string{
		StepCAJWKProvisioner:      "JWK",
		StepCAOtherJWKProvisioner: "JWK",
		StepCAGitHubProvisioner:   "OIDC",
		StepCAGitLabProvisioner:   "OIDC",
	} {
		if got[name] != typ {
			t.Errorf("provisioner %q has type %q, want %q", name, got[name], typ)
		}
	}
}
