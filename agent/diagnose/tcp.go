package diagnose

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The tcp layer: connect to each address, refused vs timeout.

var errStepTimeout = errors.New("step deadline exceeded")

// direct runs the ladder against one address: tcp, then the session.
func (tr *targetRun) direct(ctx context.Context, hp string) ([]Check, bool) {
	sctx, cancel := tr.stepCtx(ctx)
	start := time.Now()
	conn, err := tr.o.Dialer.DialContext(sctx, "tcp", hp)
	cancel()
	d := time.Since(start)
	rest := []string{LayerTLS, LayerClientCert, LayerClock, LayerHTTP}
	if err != nil {
		kind, remedy := tcpKind(err, hp, tr.o.Step)
		return append([]Check{tr.check(LayerTCP, StatusFail, hp, kind, fmt.Sprintf("connect to %s: %s after %s", hp, kind, round(d)), remedy, d)},
			tr.skips(hp, "TCP connect failed", rest...)...), false
	}
	defer conn.Close()
	checks := []Check{tr.check(LayerTCP, StatusOK, hp, round(d), "connected to "+hp, "", d)}
	cs, ok := tr.session(ctx, conn, hp, nil)
	return append(checks, cs...), ok
}

func tcpKind(err error, hp string, step time.Duration) (kind, remedy string) {
	msg := describeErr(err)
	switch {
	case strings.Contains(msg, "connection refused"):
		return "refused", fmt.Sprintf("nothing listens on %s: check the port in --upstream and that the proxy server runs there", hp)
	case isTimeout(err):
		return "timeout", fmt.Sprintf("no answer from %s within %s: a firewall drops the packets or the server is overloaded; check security groups/firewall rules for this runner", hp, step)
	case strings.Contains(msg, "no route to host"), strings.Contains(msg, "network is unreachable"), strings.Contains(msg, "host is unreachable"):
		return "unreachable", fmt.Sprintf("no route to %s: check this runner's network (routes, VPN, IPv6 availability)", hp)
	}
	return msg, fmt.Sprintf("cannot connect to %s: check the network path", hp)
}
