package proxy

import (
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/upstream"
)

// Stats are the forwarder's counters since it started.
type Stats struct {
	Uptime   string `json:"uptime"`
	Requests int64  `json:"requests"`
	// Served counts successful responses by kind (list, info, mod, zip,
	// latest, sumdb).
	Served map[string]int64 `json:"served"`
	// NotFound counts 404/410 answers passed through.
	NotFound int64 `json:"not_found"`
	// Bytes is the body bytes served.
	Bytes int64 `json:"bytes"`
	// Answered counts error statuses other than 404/410 that the upstream
	// answered (403, 400, 401, 429…) and that were relayed to cmd/go with
	// the upstream's text. They are not failures: the upstream works, and
	// cmd/go either printed the text in the failing command or recovered
	// (its module-path prefix probes meet such answers routinely).
	Answered int64 `json:"answered"`
	// AnsweredByStatus counts those answers by status ("403": 2).
	AnsweredByStatus map[string]int64 `json:"answered_by_status,omitempty"`
	// Failures counts what made a go command's request fail for a reason
	// of the network or the upstream's health: transport errors, timeouts
	// and 5xx (answered 502/504), and bodies aborted mid-stream.
	Failures int64 `json:"failures"`
	// ErrorsByLayer counts those failures by layer.
	ErrorsByLayer map[string]int64 `json:"errors_by_layer,omitempty"`
	// BodyErrors counts responses aborted mid-body (also in Failures and
	// ErrorsByLayer).
	BodyErrors int64 `json:"body_errors"`
	// Rejected counts requests refused locally (bad path, wrong token).
	Rejected int64 `json:"rejected"`
	// Denied counts requests denied by policy.
	Denied int64 `json:"denied"`
	// Cancelled counts requests the client abandoned.
	Cancelled int64 `json:"cancelled"`
	// Shared counts requests answered from another request's upstream
	// fetch (single-flight).
	Shared int64 `json:"shared"`
	// Upstream latency (request → response header) percentiles, in
	// milliseconds, over the most recent requests.
	LatencyP50 float64 `json:"upstream_latency_p50_ms"`
	LatencyP90 float64 `json:"upstream_latency_p90_ms"`
	LatencyP99 float64 `json:"upstream_latency_p99_ms"`
	// Upstreams are the circuit state and the retry and resume counters
	// of every upstream (upstream.Health), so that a flaky network shows
	// even when every fetch succeeded.
	Upstreams []upstream.Health `json:"upstreams,omitempty"`
}

const latencyWindow = 4096

type statsRecorder struct {
	mu  sync.Mutex
	s   Stats
	lat []time.Duration // ring of recent upstream latencies
	pos int
}

func newStatsRecorder() *statsRecorder {
	return &statsRecorder{s: Stats{Served: map[string]int64{}, ErrorsByLayer: map[string]int64{}, AnsweredByStatus: map[string]int64{}}}
}

func (r *statsRecorder) reject() {
	r.mu.Lock()
	r.s.Requests++
	r.s.Rejected++
	r.mu.Unlock()
}

func (r *statsRecorder) deny() {
	r.mu.Lock()
	r.s.Requests++
	r.s.Denied++
	r.mu.Unlock()
}

func (r *statsRecorder) cancelled() {
	r.mu.Lock()
	r.s.Requests++
	r.s.Cancelled++
	r.mu.Unlock()
}

func (r *statsRecorder) shared() {
	r.mu.Lock()
	r.s.Shared++
	r.mu.Unlock()
}

func (r *statsRecorder) bodyError(layer string) {
	r.mu.Lock()
	r.s.Requests++
	r.s.BodyErrors++
	r.s.Failures++
	r.s.ErrorsByLayer[layer]++
	r.mu.Unlock()
}

func (r *statsRecorder) answered(status int) {
	r.mu.Lock()
	r.s.Requests++
	r.s.Answered++
	r.s.AnsweredByStatus[strconv.Itoa(status)]++
	r.mu.Unlock()
}

func (r *statsRecorder) done(k Kind, n int64, status int) {
	r.mu.Lock()
	r.s.Requests++
	if status == 200 {
		r.s.Served[k.String()]++
	} else {
		r.s.NotFound++
	}
	r.s.Bytes += n
	r.mu.Unlock()
}

func (r *statsRecorder) failed(_ Kind, layer string, _ int) {
	r.mu.Lock()
	r.s.Requests++
	r.s.Failures++
	r.s.ErrorsByLayer[layer]++
	r.mu.Unlock()
}

func (r *statsRecorder) upstreamLatency(d time.Duration) {
	r.mu.Lock()
	if len(r.lat) < latencyWindow {
		r.lat = append(r.lat, d)
	} else {
		r.lat[r.pos] = d
		r.pos = (r.pos + 1) % latencyWindow
	}
	r.mu.Unlock()
}

func (r *statsRecorder) snapshot() Stats {
	r.mu.Lock()
	s := r.s
	s.Served = clone(r.s.Served)
	s.ErrorsByLayer = clone(r.s.ErrorsByLayer)
	s.AnsweredByStatus = clone(r.s.AnsweredByStatus)
	lat := slices.Clone(r.lat)
	r.mu.Unlock()
	slices.Sort(lat)
	s.LatencyP50, s.LatencyP90, s.LatencyP99 = pct(lat, 50), pct(lat, 90), pct(lat, 99)
	return s
}

func pct(sorted []time.Duration, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	if i > 0 {
		i--
	}
	return float64(sorted[i].Microseconds()) / 1000
}

func clone(m map[string]int64) map[string]int64 {
	c := make(map[string]int64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
