package tlsauth

import "testing"

func TestRefusedBy(t *testing.T) {
	t.Parallel()
	page := func(s string) string {
		return "<html><center><h1>400 Bad Request</h1></center><center>" + s + "</center><hr><center>nginx</center></html>"
	}
	for _, tc := range []struct {
		status int
		body   string
		ok     bool
		noCert bool
	}{
		{400, page("No required SSL certificate was sent"), true, true},
		{400, page("The SSL certificate error"), true, false},
		{496, "", true, true},
		{495, "", true, false},
		{400, "bad module path", false, false},
		{400, "SSL certificate renewal is scheduled for Sunday", false, false},
		{403, page("No required SSL certificate was sent"), false, false},
		{404, "", false, false},
	} {
		r, ok := RefusedBy(tc.status, tc.body)
		if ok != tc.ok || r.NoCert != tc.noCert || ok && r.Reason == "" {
			t.Errorf("RefusedBy(%d, %q) = %+v, %v; want refused %v, no cert %v, a reason", tc.status, tc.body, r, ok, tc.ok, tc.noCert)
		}
	}
}
