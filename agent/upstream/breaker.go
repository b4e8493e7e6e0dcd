package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Breaker configures the circuit breaker kept for every upstream of a
// Client. After Failures consecutive failures (transport errors, 5xx and
// 429 answers, bodies that break mid-stream and could not be resumed) the
// upstream's circuit opens: requests skip it at once — to the next entry
// after '|', or failing fast after ',' as cmd/go would — instead of waiting
// for timeouts. After Cooldown one trial request is let through
// (half-open); its success closes the circuit, its failure opens it for
// another Cooldown. While the circuit is open a health check probes the
// upstream every HealthInterval and closes the circuit as soon as the
// upstream answers.
//
// A network event is counted once. A body that breaks after its answer
// began (cut, reset, stalled — ResumeStall, ErrIdleBody — and not resumed)
// counts only when its request was sent after the last failure that
// counted: bodies already streaming when a failure was counted were hit by
// that same event — the other streams of the same reset, of the same
// stall — and are counted apart (Counters.CoalescedFailures) without
// moving the circuit. So a burst of broken bodies, however wide, is one
// failure, and the requests sent after it decide. A request that got no
// answer at all (refused, reset, silent, 5xx) counts on its own, after the
// transport's retries with jittered backoff have failed too: the retries
// are the filter for a blip, and requests that each failed them all are
// separate evidence that the upstream is down, so the circuit of a dead
// or silent upstream opens as fast as before. Each request still fails in
// bounded time on its own (timeouts, Retry.Attempts), and '|' still fails
// over per request without waiting for the circuit (docs/resilience.md
// has the measurements that chose this rule).
type Breaker struct {
	// Failures is the number of consecutive failures that open the
	// circuit; 0 disables the breaker.
	Failures int
	// Cooldown is how long an open circuit stays open before a trial
	// request (30s when zero).
	Cooldown time.Duration
	// HealthInterval is the period of the health check of an open circuit
	// (Cooldown/4 when zero, at least 50ms).
	HealthInterval time.Duration
}

// CircuitOpenError is the error of a request that was not sent because the
// upstream's circuit is open. It unwraps to the failure that opened it, so
// callers classify it like that failure.
type CircuitOpenError struct {
	// Failures is the number of consecutive failures seen.
	Failures int
	// Until is when the circuit lets a trial request through.
	Until time.Time
	// Last is the most recent failure.
	Last error
}

func (e *CircuitOpenError) Error() string {
	wait := time.Until(e.Until).Round(100 * time.Millisecond)
	if wait < 0 {
		wait = 0
	}
	circuit := fmt.Sprintf("circuit open after %d consecutive failures, next try in %s", e.Failures, wait)
	if e.Last == nil {
		return circuit
	}
	// The cause first and without the request URL: cmd/go shows only the
	// start of the agent's answer, and prints the URL itself.
	last := e.Last.Error()
	var ue *Error
	if errors.As(e.Last, &ue) {
		if ue.Err != nil {
			last = ue.Err.Error()
		} else {
			last = fmt.Sprintf("HTTP %d %s", ue.StatusCode, http.StatusText(ue.StatusCode))
		}
	}
	return last + " (" + circuit + ")"
}

func (e *CircuitOpenError) Unwrap() error { return e.Last }

// Health is the state of one upstream's circuit.
type Health struct {
	// Upstream is the redacted base URL.
	Upstream string `json:"upstream"`
	// State is "closed" (healthy), "open" or "half-open".
	State string `json:"state"`
	// ConsecutiveFailures is the current run of failures.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// Opens counts how often the circuit opened.
	Opens int64 `json:"opens"`
	// LastError is the most recent failure, redacted ("" when none).
	LastError string `json:"last_error,omitempty"`
	// Counters are the upstream's retries and resumes.
	Counters
}

type circuitState int

const (
	stateClosed circuitState = iota
	stateOpen
	stateHalfOpen
)

func (s circuitState) String() string {
	return [...]string{"closed", "open", "half-open"}[s]
}

// circuit is one upstream's breaker. The zero Breaker (Failures 0) makes
// allow always true and record a no-op beyond bookkeeping.
type circuit struct {
	cfg   Breaker
	name  string
	log   hclog.Logger
	probe func(ctx context.Context) error // health check; nil: none

	mu       sync.Mutex
	state    circuitState
	fails    int
	opens    int64
	until    time.Time
	last     error
	counted  time.Time // when the last failure that counted was recorded
	cnt      *counters
	trial    bool // a half-open trial request is in flight
	probing  bool // the health-check goroutine runs
	closeCtx context.Context
}

func newCircuit(cfg Breaker, name string, log hclog.Logger, ctx context.Context, probe func(context.Context) error, cnt *counters) *circuit {
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = 30 * time.Second
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = cfg.Cooldown / 4
	}
	if cfg.HealthInterval < 50*time.Millisecond {
		cfg.HealthInterval = 50 * time.Millisecond
	}
	return &circuit{cfg: cfg, name: name, log: log, probe: probe, closeCtx: ctx, cnt: cnt}
}

// allow reports whether a request may go to the upstream now; when not, the
// error says why. A true answer in the half-open state makes the caller the
// trial request, which must be followed by record.
func (c *circuit) allow() (bool, error) {
	if c.cfg.Failures <= 0 {
		return true, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case stateClosed:
		return true, nil
	case stateOpen:
		if time.Now().Before(c.until) {
			return false, &CircuitOpenError{Failures: c.fails, Until: c.until, Last: c.last}
		}
		c.state, c.trial = stateHalfOpen, true
		return true, nil
	default: // half-open: one trial at a time
		if c.trial {
			return false, &CircuitOpenError{Failures: c.fails, Until: c.until, Last: c.last}
		}
		c.trial = true
		return true, nil
	}
}

// release ends a trial request without an outcome (the caller went away).
func (c *circuit) release() {
	c.mu.Lock()
	c.trial = false
	c.mu.Unlock()
}

// record notes the outcome of a request that allow let through: err nil
// for success (any answer of a healthy upstream, 404 included). For a body
// that broke after its answer began, streaming is when its request was
// sent: if that was before the last counted failure, the break belongs to
// that failure's event and does not count (see Breaker). A zero streaming
// (a request that got no answer) always counts.
func (c *circuit) record(err error, streaming time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trial = false
	if err == nil {
		if c.state != stateClosed {
			c.log.Info("upstream healthy again, circuit closed", "upstream", c.name)
		}
		c.state, c.fails, c.last = stateClosed, 0, nil
		return
	}
	c.last = err
	if c.state == stateClosed && !streaming.IsZero() && streaming.Before(c.counted) {
		if c.cnt != nil {
			c.cnt.coalesced.Add(1)
		}
		return
	}
	c.fails++
	c.counted = time.Now()
	if c.cfg.Failures <= 0 {
		return
	}
	if c.state == stateHalfOpen || c.fails >= c.cfg.Failures {
		if c.state == stateClosed {
			c.opens++
			c.log.Warn("upstream circuit opened", "upstream", c.name, "consecutive_failures", c.fails, "cooldown", c.cfg.Cooldown, "error", err)
		}
		c.state = stateOpen
		c.until = time.Now().Add(c.cfg.Cooldown)
		c.startProbeLocked()
	}
}

// startProbeLocked starts the health check of an open circuit unless it
// runs. It ends when the circuit closes or the client is closed.
func (c *circuit) startProbeLocked() {
	if c.probe == nil || c.probing || c.closeCtx == nil || c.closeCtx.Err() != nil {
		return
	}
	c.probing = true
	go func() {
		t := time.NewTicker(c.cfg.HealthInterval)
		defer t.Stop()
		for {
			select {
			case <-c.closeCtx.Done():
				c.mu.Lock()
				c.probing = false
				c.mu.Unlock()
				return
			case <-t.C:
			}
			c.mu.Lock()
			closed := c.state == stateClosed
			if closed {
				c.probing = false
			}
			c.mu.Unlock()
			if closed {
				return
			}
			ctx, cancel := context.WithTimeout(c.closeCtx, c.cfg.HealthInterval+5*time.Second)
			err := c.probe(ctx)
			cancel()
			if err == nil {
				c.mu.Lock()
				c.probing = false
				if c.state != stateClosed {
					c.log.Info("upstream health check passed, circuit closed", "upstream", c.name)
					c.state, c.fails, c.last, c.trial = stateClosed, 0, nil, false
				}
				c.mu.Unlock()
				return
			}
			c.log.Debug("upstream health check failed", "upstream", c.name, "error", err)
		}
	}()
}

func (c *circuit) health() Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := Health{Upstream: c.name, State: c.state.String(), ConsecutiveFailures: c.fails, Opens: c.opens, Counters: c.cnt.snapshot()}
	if c.last != nil {
		h.LastError = c.last.Error()
	}
	return h
}

// breakerFailure reports whether err (from one upstream) counts against its
// circuit: transport failures and answers of an unhealthy server, but not
// not-found answers or other answers of a live server.
func breakerFailure(err error) bool {
	if err == nil {
		return false
	}
	var ue *Error
	if errors.As(err, &ue) {
		if ue.Err != nil {
			var co *CircuitOpenError
			return !errors.As(ue.Err, &co)
		}
		return ue.StatusCode >= 500 || ue.StatusCode == http.StatusTooManyRequests
	}
	return true
}
