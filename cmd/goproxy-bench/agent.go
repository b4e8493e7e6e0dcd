package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/goproxy-setup/goproxy-setup/agent/proxy"
	"github.com/goproxy-setup/goproxy-setup/agent/server"
	"github.com/goproxy-setup/goproxy-setup/agent/wire"
	"github.com/goproxy-setup/goproxy-setup/internal/humanize"
	"github.com/goproxy-setup/goproxy-setup/internal/modgen"
	"github.com/goproxy-setup/goproxy-setup/internal/pki"
	"github.com/goproxy-setup/goproxy-setup/internal/procmem"
	"github.com/goproxy-setup/goproxy-setup/policies"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

func init() {
	register(agentBench{})
	register(agentServe{})
}

// agentBench measures the forwarder's overhead against the mTLS upstream.
type agentBench struct{}

func (agentBench) Name() string { return "agent" }
func (agentBench) Synopsis() string {
	return "forwarder overhead: direct mTLS vs through the agent (latency, req/s, 64-client load, RSS, failover)"
}

const agentBenchUsage = `Usage: goproxy-bench agent [flags]

Serves generated modules (50 small ones and a big one, with a 10 MB zip
unless --big-size says otherwise) from an
in-process Go HTTPS server on 127.0.0.1 that requires a client certificate
(throwaway CA, HTTP/2), starts the agent as a separate process (this
binary's agent-serve, which runs server.Serve as 'goproxy-setup agent'
does) with GOMAXPROCS=--cores, and measures in one run:

  1. latency, one request at a time, direct (mTLS) vs through the agent,
     for .info, .mod, a small .zip and the big .zip: median and p99 and
     the added median/p99;
  2. .info requests/s through the agent with --clients concurrent clients;
  3. a --load-duration load of --clients 'go mod download'-like clients
     (list, .info, .mod, .zip; 1 in 100 the big zip): req/s, p50/p99,
     errors;
  4. the agent's peak RSS (VmHWM of /proc/PID/status);
  5. failover: a second agent on 'primary|secondary'; the primary is
     killed while a client requests in a loop; the time from the kill to
     the first successful response (served by the secondary).

The clients, the upstream and the agent share the machine's cores.

Example:
  goproxy-bench agent --load-duration 60s

Flags:
`

func (agentBench) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, agentBenchUsage); fs.PrintDefaults() }
	var (
		clients        int
		cores          int
		n              int
		bigN           int
		bigSize        int
		rpsDuration    time.Duration
		loadDuration   time.Duration
		failoverRounds int
	)
	fs.IntVar(&clients, "clients", 64, "concurrent clients for the throughput and load phases")
	fs.IntVar(&cores, "cores", 2, "GOMAXPROCS of the agent process")
	fs.IntVar(&n, "n", 2000, "sequential requests per kind in the latency phase")
	fs.IntVar(&bigN, "big-n", 30, "sequential requests of the big zip in the latency phase")
	fs.IntVar(&bigSize, "big-size", 10<<20, "bytes of random data in the big module's zip")
	fs.DurationVar(&rpsDuration, "rps-duration", 10*time.Second, "duration of the .info requests/s phase")
	fs.DurationVar(&loadDuration, "load-duration", 60*time.Second, "duration of the load phase")
	fs.IntVar(&failoverRounds, "failover-rounds", 5, "failover measurements (median reported)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	progress := func(format string, a ...any) { fmt.Fprintf(stderr, "goproxy-bench agent: "+format+"\n", a...) }

	// Modules.
	progress("generating modules")
	var bs []*modgen.Built
	for i := range 50 {
		b, err := modgen.Build(modgen.Module{Path: fmt.Sprintf("example.bench/m%02d", i), Version: "v1.0.0"})
		if err != nil {
			return err
		}
		bs = append(bs, b)
	}
	if bigSize < 0 {
		return fmt.Errorf("--big-size %d: want a number of bytes, 0 or more", bigSize)
	}
	big := make([]byte, bigSize)
	rand.Read(big)
	bigMod, err := modgen.Build(modgen.Module{Path: "example.bench/big", Version: "v1.0.0", Files: map[string]string{"big.go": "package big\n", "data.bin": string(big)}})
	if err != nil {
		return err
	}
	bs = append(bs, bigMod)
	modules := modgen.Handler(bs)

	// PKI and the mTLS upstream(s).
	dir, err := os.MkdirTemp("", "goproxy-bench-agent-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ca, err := pki.NewCA("goproxy-bench CA")
	if err != nil {
		return err
	}
	serverCert, err := ca.Server()
	if err != nil {
		return err
	}
	clientCert, err := ca.Client("goproxy-bench")
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := tlsauth.IdentityPEM(clientCert)
	if err != nil {
		return err
	}
	certFile, keyFile, caFile := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"), filepath.Join(dir, "ca.crt")
	for f, b := range map[string][]byte{certFile: certPEM, keyFile: keyPEM, caFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root.Raw})} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			return err
		}
	}
	serverTLS := &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	primary, err := startUpstream(modules, serverTLS)
	if err != nil {
		return err
	}
	defer primary.close()

	direct := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{Certificates: []tls.Certificate{clientCert}, RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: clients,
	}}
	viaAgent := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}}

	progress("starting the agent (GOMAXPROCS=%d)", cores)
	ag, err := startAgentProcess(ctx, primary.url, certFile, keyFile, caFile, cores)
	if err != nil {
		return err
	}
	defer ag.stop()

	// 1. Latency.
	kinds := []struct {
		name, path string
		n          int
	}{
		{".info", "example.bench/m00/@v/v1.0.0.info", n},
		{".mod", "example.bench/m00/@v/v1.0.0.mod", n},
		{"small .zip (" + humanize.Bytes(int64(len(bs[0].Zip))) + ")", "example.bench/m00/@v/v1.0.0.zip", n},
		{"big .zip (" + humanize.Bytes(int64(len(bigMod.Zip))) + ")", "example.bench/big/@v/v1.0.0.zip", bigN},
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "LATENCY (sequential)\tn\tdirect p50\tdirect p99\tagent p50\tagent p99\tadded p50\tadded p99\n")
	for _, k := range kinds {
		progress("latency %s", k.name)
		var d, a []time.Duration
		for i := range k.n + 10 {
			dt, err := timeGet(ctx, direct, primary.url+"/"+k.path)
			if err != nil {
				return fmt.Errorf("direct %s: %w", k.path, err)
			}
			at, err := timeGet(ctx, viaAgent, ag.base+"/"+k.path)
			if err != nil {
				return fmt.Errorf("agent %s: %w", k.path, err)
			}
			if i >= 10 { // warm-up
				d, a = append(d, dt), append(a, at)
			}
		}
		dp50, dp99, ap50, ap99 := pctl(d, 50), pctl(d, 99), pctl(a, 50), pctl(a, 99)
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", k.name, k.n, ms(dp50), ms(dp99), ms(ap50), ms(ap99), ms(ap50-dp50), ms(ap99-dp99))
	}
	tw.Flush()

	// 2. .info throughput.
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "THROUGHPUT (.info, %d clients)\tduration\trequests\terrors\treq/s\tp50\tp99\n", clients)
	for _, target := range []struct {
		name string
		c    *http.Client
		base string
	}{{"direct", direct, primary.url}, {"agent", viaAgent, ag.base}} {
		progress("throughput .info %s for %s", target.name, rpsDuration)
		r := load(ctx, target.c, clients, rpsDuration, func(client, i int) string {
			return target.base + "/" + fmt.Sprintf("example.bench/m%02d/@v/v1.0.0.info", (client+i)%50)
		})
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%s\t%s\n", target.name, rpsDuration, r.n, r.errs, float64(r.n)/rpsDuration.Seconds(), ms(r.p50), ms(r.p99))
	}
	tw.Flush()

	// 3. Load mix.
	progress("load: %d clients for %s", clients, loadDuration)
	mix := []string{"@v/list", "@v/v1.0.0.info", "@v/v1.0.0.mod", "@v/v1.0.0.zip"}
	r := load(ctx, viaAgent, clients, loadDuration, func(client, i int) string {
		if (client*7+i)%100 == 99 {
			return ag.base + "/example.bench/big/@v/v1.0.0.zip"
		}
		return ag.base + "/" + fmt.Sprintf("example.bench/m%02d/", (client+i/4)%50) + mix[i%4]
	})
	hwm, rss := procmem.Of(ag.pid)
	st, _ := agentStats(ag.base)
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "LOAD (%d clients, list/.info/.mod/.zip, 1%% big zip)\tduration\trequests\terrors\treq/s\tMB/s\tp50\tp99\n", clients)
	fmt.Fprintf(tw, "agent\t%s\t%d\t%d\t%.0f\t%.1f\t%s\t%s\n", loadDuration, r.n, r.errs, float64(r.n)/loadDuration.Seconds(), float64(r.bytes)/loadDuration.Seconds()/1e6, ms(r.p50), ms(r.p99))
	tw.Flush()
	fmt.Fprintf(stdout, "\nAGENT PROCESS: peak RSS (VmHWM) %s, RSS now %s, GOMAXPROCS %d; agent stats: %d requests, %d failures, %d shared fetches\n",
		hwm, rss, cores, st.Requests, st.Failures, st.Shared)
	if r.firstErr != nil {
		fmt.Fprintf(stdout, "first load error: %v\n", r.firstErr)
	}
	ag.stop()

	// 5. Failover.
	var times []time.Duration
	var failed int64
	for round := range failoverRounds {
		progress("failover round %d", round+1)
		d, f, err := failover(ctx, modules, serverTLS, certFile, keyFile, caFile, cores)
		if err != nil {
			return fmt.Errorf("failover: %w", err)
		}
		times = append(times, d)
		failed += f
	}
	slices.Sort(times)
	fmt.Fprintf(stdout, "\nFAILOVER ('primary|secondary', primary killed under a request loop): kill → first success via the secondary: median %s, min %s, max %s over %d rounds; failed requests: %d\n",
		ms(times[len(times)/2]), ms(times[0]), ms(times[len(times)-1]), len(times), failed)
	return nil
}

type upstreamServer struct {
	url  string
	srv  *http.Server
	hits atomic.Int64
}

func (u *upstreamServer) close() { u.srv.Close() }

// startUpstream serves modules over HTTPS with tc on 127.0.0.1, counting
// the requests.
func startUpstream(modules http.Handler, tc *tls.Config) (*upstreamServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstreamServer{url: "https://" + ln.Addr().String()}
	u.srv = &http.Server{
		TLSConfig: tc.Clone(),
		ErrorLog:  log.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u.hits.Add(1)
			modules.ServeHTTP(w, r)
		}),
	}
	go u.srv.ServeTLS(ln, "", "")
	return u, nil
}

type agentProc struct {
	cmd  *exec.Cmd
	pid  int
	base string
	once sync.Once
}

func (a *agentProc) stop() {
	a.once.Do(func() {
		a.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { a.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			a.cmd.Process.Kill()
			<-done
		}
	})
}

func startAgentProcess(ctx context.Context, list, certFile, keyFile, caFile string, cores int) (*agentProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "agent-serve", "--upstream", list, "--client-cert", certFile, "--client-key", keyFile, "--ca-cert", caFile)
	cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", cores))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	a := &agentProc{cmd: cmd, pid: cmd.Process.Pid}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
		io.Copy(io.Discard, out)
	}()
	select {
	case s := <-line:
		base, ok := strings.CutPrefix(s, "ready ")
		if !ok {
			a.stop()
			return nil, fmt.Errorf("agent-serve did not start: %q", s)
		}
		a.base = base
		return a, nil
	case <-time.After(15 * time.Second):
		a.stop()
		return nil, errors.New("agent-serve did not start within 15s")
	case <-ctx.Done():
		a.stop()
		return nil, ctx.Err()
	}
}

func timeGet(ctx context.Context, c *http.Client, u string) (time.Duration, error) {
	start := time.Now()
	_, err := get(ctx, c, u)
	return time.Since(start), err
}

func get(ctx context.Context, c *http.Client, u string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return n, err
}

type loadResult struct {
	n, errs, bytes int64
	p50, p99       time.Duration
	firstErr       error
}

// load runs clients goroutines for d, each requesting url(client, i).
func load(ctx context.Context, c *http.Client, clients int, d time.Duration, url func(client, i int) string) loadResult {
	var (
		mu  sync.Mutex
		lat []time.Duration
		res loadResult
		wg  sync.WaitGroup
	)
	stop := time.Now().Add(d)
	for cl := range clients {
		wg.Go(func() {
			var mine []time.Duration
			var errs, bytes int64
			var first error
			for i := 0; time.Now().Before(stop) && ctx.Err() == nil; i++ {
				start := time.Now()
				n, err := get(ctx, c, url(cl, i))
				mine = append(mine, time.Since(start))
				bytes += n
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			res.errs += errs
			res.bytes += bytes
			if res.firstErr == nil {
				res.firstErr = first
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.n = int64(len(lat))
	res.p50, res.p99 = pctl(lat, 50), pctl(lat, 99)
	return res
}

// failover starts an agent on primary|secondary, loops requests through
// it, kills the primary and returns the time to the first response served
// by the secondary, and the failed requests.
func failover(ctx context.Context, modules http.Handler, tc *tls.Config, certFile, keyFile, caFile string, cores int) (time.Duration, int64, error) {
	p, err := startUpstream(modules, tc)
	if err != nil {
		return 0, 0, err
	}
	defer p.close()
	s, err := startUpstream(modules, tc)
	if err != nil {
		return 0, 0, err
	}
	defer s.close()
	ag, err := startAgentProcess(ctx, p.url+"|"+s.url, certFile, keyFile, caFile, cores)
	if err != nil {
		return 0, 0, err
	}
	defer ag.stop()
	c := &http.Client{Transport: &http.Transport{}}
	// Distinct paths: no single-flight or connection effect hides a miss.
	for i := range 20 {
		if _, err := get(ctx, c, fmt.Sprintf("%s/example.bench/m%02d/@v/v1.0.0.info", ag.base, i)); err != nil {
			return 0, 0, fmt.Errorf("warm-up: %w", err)
		}
	}
	if s.hits.Load() != 0 {
		return 0, 0, errors.New("the secondary served before the kill")
	}
	var (
		killed  atomic.Int64 // unix nanos
		first   atomic.Int64
		failed  atomic.Int64
		done    = make(chan struct{})
		stopped atomic.Bool
	)
	go func() {
		defer close(done)
		for i := 0; !stopped.Load(); i++ {
			_, err := get(ctx, c, fmt.Sprintf("%s/example.bench/m%02d/@v/v1.0.0.mod", ag.base, i%50))
			now := time.Now().UnixNano()
			if err != nil {
				failed.Add(1)
				continue
			}
			if k := killed.Load(); k != 0 && s.hits.Load() > 0 && first.Load() == 0 {
				first.Store(now)
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	killed.Store(time.Now().UnixNano())
	p.close()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		stopped.Store(true)
		<-done
		return 0, failed.Load(), errors.New("no success via the secondary within 30s")
	}
	return time.Duration(first.Load() - killed.Load()), failed.Load(), nil
}

func agentStats(base string) (proxy.Stats, error) {
	var st proxy.Stats
	resp, err := http.Get(wire.AdminURL(base, wire.Stats))
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

func pctl(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d.Microseconds())/1000) }

// agentServe is the agent process the benchmark measures: server.Serve with
// the given upstream and identity, printing "ready BASEURL" on stdout.
type agentServe struct{}

func (agentServe) Name() string { return "agent-serve" }
func (agentServe) Synopsis() string {
	return "(internal) the agent process of 'goproxy-bench agent'"
}

func (agentServe) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent-serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	list := fs.String("upstream", "", "upstream list")
	certFile := fs.String("client-cert", "", "client certificate")
	keyFile := fs.String("client-key", "", "client key")
	caFile := fs.String("ca-cert", "", "upstream CA")
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, err := tlsauth.LoadFiles(*certFile, *keyFile)
	if err != nil {
		return err
	}
	roots, err := tlsauth.LoadRoots(*caFile)
	if err != nil {
		return err
	}
	token, err := proxy.NewToken()
	if err != nil {
		return err
	}
	pol, err := policies.Resolve("", *list, true)
	if err != nil {
		return err
	}
	return server.Serve(ctx, server.ServeConfig{
		Policy:   pol,
		Identity: id,
		Roots:    roots,
		Timeout:  30 * time.Second,
		Token:    token,
		Ready:    func(base string) { fmt.Fprintf(stdout, "ready %s\n", base) },
	})
}
