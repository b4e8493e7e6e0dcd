// Package procmem reads a process's memory figures from /proc (Linux), for
// the benchmarks and the tests that report them.
package procmem

import (
	"fmt"
	"os"
	"strings"
)

// Of returns process pid's peak resident set (VmHWM) and resident set
// (VmRSS) as /proc/PID/status prints them ("17328 kB"); "?" for each when
// the file cannot be read.
func Of(pid int) (hwm, rss string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?", "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			hwm = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rss = strings.TrimSpace(v)
		}
	}
	return hwm, rss
}
