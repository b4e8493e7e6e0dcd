package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/goproxy-setup/goproxy-setup/agent/wire"
)

// ConnLimits bound what local peers can hold open on the agent. The job's
// own uid and root ("owners") have a budget of their own that no other user
// can spend, so another local user cannot deny the job service by opening
// connections. Zero fields take the defaults.
type ConnLimits struct {
	// Owner caps the connections of the job's uid and root together
	// (default 1024; cmd/go and warm use far fewer).
	Owner int
	// PerPeer caps the connections of each other uid (default 16): they
	// are answered 403, so they need none for long.
	PerPeer int
	// Others caps all other uids together, and every connection when the
	// peer cannot be identified (default 256).
	Others int
}

func (l ConnLimits) withDefaults() ConnLimits {
	if l.Owner <= 0 {
		l.Owner = 1024
	}
	if l.PerPeer <= 0 {
		l.PerPeer = 16
	}
	if l.Others <= 0 {
		l.Others = 256
	}
	return l
}

// Server timeouts and sizes: a GOPROXY client sends a short GET with a few
// headers and no body, then reads.
const (
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = 30 * time.Second
	maxHeaderBytes    = 16 << 10
)

// unknownUID is the peer of a connection whose owner is not known.
const unknownUID = -1

// guard admits connections by their peer's uid: the job's uid and root are
// served (and counted against Owner); other uids are answered 403 and
// counted against PerPeer and Others; connections over a cap are closed
// before a byte is read. With the peer lookup unavailable (not Linux, no
// /proc) every connection is unknown: served on the token alone, all
// within Others plus Owner.
type guard struct {
	limits ConnLimits
	jobUID int
	// exact serves jobUID alone, not root (a pod's sidecar: root in another
	// container is not the job).
	exact  bool
	lookup bool
	log    hclog.Logger

	snap procSnapshot

	mu     sync.Mutex
	byUID  map[int]int
	owner  int
	others int
	// refused counts connections closed for a cap.
	refused atomic.Int64
}

func newGuard(jobUID int, exact bool, limits ConnLimits, log hclog.Logger) *guard {
	g := &guard{limits: limits.withDefaults(), jobUID: jobUID, exact: exact, log: log, byUID: map[int]int{}}
	switch err := peerLookupAvailable(); {
	case jobUID < 0:
		log.Warn("peer check off: the job's uid is not known (agent not started by 'goproxy-setup run'); the capability token alone guards the agent")
	case err != nil:
		log.Warn("peer check unavailable: the capability token alone guards the agent", "reason", err)
	case exact:
		g.lookup = true
		log.Info("peer check on: serving only the job's uid", "uid", jobUID)
	default:
		g.lookup = true
		log.Info("peer check on: serving only the job's uid and root", "uid", jobUID)
	}
	return g
}

// served reports whether uid may use the agent.
func (g *guard) served(uid int) bool {
	if !g.lookup {
		return true
	}
	return uid == g.jobUID || (uid == 0 && !g.exact)
}

// whom says in a refusal whom the agent serves.
func (g *guard) whom() string {
	if g.exact {
		return fmt.Sprintf("uid %d (the job container's)", g.jobUID)
	}
	return fmt.Sprintf("uid %d (the job that started it) and root", g.jobUID)
}

// admit counts a connection of uid, or reports that a cap is reached.
func (g *guard) admit(uid int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lookup && g.served(uid) {
		if g.owner >= g.limits.Owner {
			return false
		}
		g.owner++
		return true
	}
	if g.others >= g.limits.Others+g.ownerShareIfBlind() || (g.lookup && g.byUID[uid] >= g.limits.PerPeer) {
		return false
	}
	g.others++
	g.byUID[uid]++
	return true
}

// ownerShareIfBlind: without the peer lookup the job's connections are
// indistinguishable from others', so the one budget is both.
func (g *guard) ownerShareIfBlind() int {
	if g.lookup {
		return 0
	}
	return g.limits.Owner
}

func (g *guard) release(uid int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lookup && g.served(uid) {
		g.owner--
		return
	}
	g.others--
	if g.byUID[uid]--; g.byUID[uid] <= 0 {
		delete(g.byUID, uid)
	}
}

// listener wraps ln so that every accepted connection is identified and
// counted before its first byte is read.
func (g *guard) listener(ln net.Listener) net.Listener { return &guardListener{Listener: ln, g: g} }

type guardListener struct {
	net.Listener
	g *guard
}

func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: c, g: l.g, uid: unknownUID, accepted: time.Now()}, nil
}

// guardConn identifies its peer on the first Read, in the connection's own
// goroutine (the lookup reads /proc: it must not hold up Accept), and
// gives its place back on Close.
type guardConn struct {
	net.Conn
	g        *guard
	accepted time.Time
	once     sync.Once
	uid      int
	admitted bool
	closed   sync.Once
}

func (c *guardConn) identify() {
	c.once.Do(func() {
		if c.g.lookup {
			uid, err := c.g.snap.peerUID(c.LocalAddr(), c.RemoteAddr(), c.accepted)
			if err != nil {
				c.g.log.Debug("peer lookup failed", "remote", c.RemoteAddr().String(), "error", err)
				uid = unknownUID
			}
			c.uid = uid
		}
		c.admitted = c.g.admit(c.uid)
		if !c.admitted {
			if n := c.g.refused.Add(1); n&(n-1) == 0 { // log at 1, 2, 4, 8…
				c.g.log.Warn("connections over the cap closed", "uid", c.uid, "total", n)
			}
		}
	})
}

func (c *guardConn) Read(p []byte) (int, error) {
	c.identify()
	if !c.admitted {
		return 0, fmt.Errorf("goproxy-setup agent: connection cap for uid %d reached", c.uid)
	}
	return c.Conn.Read(p)
}

func (c *guardConn) Close() error {
	c.closed.Do(func() {
		c.identify()
		if c.admitted {
			c.g.release(c.uid)
		}
	})
	return c.Conn.Close()
}

type guardConnKey struct{}

// connContext records the connection for the handler's peer check.
func connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, guardConnKey{}, c)
}

// guardHandler puts in front of the forwarder what no GOPROXY client needs:
// requests from a uid other than the job's (403), request bodies (413,
// refused unread: the connection is closed rather than drained), and the
// identity endpoint that proves to 'stop' which process it is about to
// signal. A sidecar (env non-nil) also answers the probe to anyone and
// the job's environment to the job's uid (wire.ProbePath,
// wire.SidecarEnvPath).
func guardHandler(g *guard, token, nonce string, env func(format string) ([]byte, error), next http.Handler) http.Handler {
	identity := wire.AdminURL("/"+token, wire.Identity)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if env != nil && r.URL.Path == wire.ProbePath && r.Method == http.MethodGet && r.ContentLength == 0 {
			// Before the peer check: the probes run as the sidecar's own
			// uid. The answer says only that the agent serves.
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, "ok\n")
			return
		}
		if c, ok := r.Context().Value(guardConnKey{}).(*guardConn); ok && !g.served(c.uid) {
			w.Header().Set("Connection", "close")
			who := fmt.Sprintf("uid %d", c.uid)
			if c.uid == unknownUID {
				who = "an unidentified peer"
			}
			http.Error(w, fmt.Sprintf("goproxy-setup agent: %s may not use this agent: it serves only %s", who, g.whom()), http.StatusForbidden)
			return
		}
		if env != nil && r.URL.Path == wire.SidecarEnvPath && r.ContentLength == 0 && len(r.TransferEncoding) == 0 {
			if !g.lookup {
				// Without the peer lookup the token is the only guard, and
				// this path would hand it to anyone: refuse.
				http.Error(w, "goproxy-setup agent: the peer-uid check is unavailable here, so the environment (which carries the capability token) is not served", http.StatusForbidden)
				return
			}
			b, err := env(r.URL.Query().Get("format"))
			if err != nil {
				http.Error(w, "goproxy-setup agent: "+err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.Write(b)
			return
		}
		if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
			refuseBody(w)
			return
		}
		if nonce != "" && len(r.URL.Path) == len(identity) && subtle.ConstantTimeCompare([]byte(r.URL.Path), []byte(identity)) == 1 {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(wire.AgentIdentity{Nonce: nonce, PID: os.Getpid()})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refuseBody answers 413 and makes sure the server does not read the body
// after the handler (it would otherwise drain up to 256 KiB, waiting on a
// client that drips it): the read deadline is set in the past, so the
// connection closes after the answer.
func refuseBody(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	http.Error(w, "goproxy-setup agent: request bodies are not accepted (a GOPROXY client sends none)", http.StatusRequestEntityTooLarge)
	rc := http.NewResponseController(w)
	rc.Flush()
	rc.SetReadDeadline(time.Now())
}
