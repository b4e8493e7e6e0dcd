package realci_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/realci"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
)

// stepRE matches act's line for a finished step: "Success - Main NAME
// [DURATION]".
var stepRE = regexp.MustCompile(`(?:Success|Failure) - Main (.+?) \[([0-9.]+)(µs|ms|s|m)?`)

// stepDurations returns the duration act reports for each finished step,
// by name (the composite action's own line is "./").
func stepDurations(log string) map[string]time.Duration {
	d := map[string]time.Duration{}
	for _, m := range stepRE.FindAllStringSubmatch(log, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			continue
		}
		unit := map[string]float64{"µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9}[m[3]]
		if m[3] == "" {
			unit = 1e9
		}
		d[strings.TrimSpace(m[1])] = time.Duration(v * unit)
	}
	return d
}

// BenchmarkActionStart measures, in act's host mode on this machine, the
// composite action from its first step to the agent serving (and two small
// modules warmed), side by side: a source build with a cold GOCACHE (the
// job of a runner without setup-go's cache) and the release install from a
// loopback releases host. One iteration each is enough:
//
//	go test -run '^$' -bench ActionStart -benchtime 1x ./internal/testsupport/realci
func BenchmarkActionStart(b *testing.B) {
	for _, mode := range []string{"source-cold-gocache", "release-loopback"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				asset, archive, sums := release(b)
				host := realci.NewReleaseHost(b)
				host.Put(testVersion, asset, archive)
				stack := testenv.StartMTLSStack(b, mods)
				r := newActRepo(b, sums)
				with := "          releases-url: " + host.URL + "\n"
				if mode != "release-loopback" {
					with = "          install: source\n"
				}
				wf := "name: bench\non: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n" + setupStep(stack, with)
				b.StartTimer()
				log, err := r.run(ctxFor(b, 10*time.Minute), b, wf, "GOCACHE="+b.TempDir())
				b.StopTimer()
				if err != nil || !strings.Contains(log, "agent serving") {
					b.Fatalf("act: %v\n%s", err, log)
				}
				d := stepDurations(log)
				b.ReportMetric(d["./"].Seconds(), "s-action/op")
				b.ReportMetric(d["Install goproxy-setup"].Seconds()+d["Build goproxy-setup from the action's source"].Seconds(), "s-install/op")
			}
		})
	}
}
