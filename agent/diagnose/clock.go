package diagnose

import (
	"fmt"
	"time"
)

// The clock layer: skew against the HTTP Date header.

func (tr *targetRun) clockCheck(addr string, h httpResult) Check {
	if h.resp == nil {
		return tr.check(LayerClock, StatusSkip, addr, "", "skipped: no HTTP response", "", 0)
	}
	if h.date.IsZero() {
		return tr.check(LayerClock, StatusSkip, addr, "", "skipped: the server sent no Date header", "", 0)
	}
	// Date has whole seconds: take the middle of its second.
	skew := h.date.Add(500 * time.Millisecond).Sub(h.at).Round(time.Second)
	abs := skew
	if abs < 0 {
		abs = -abs
	}
	sign := "+"
	if skew < 0 {
		sign = "-"
	}
	value := sign + abs.String()
	detail := fmt.Sprintf("server clock %s from ours (Date: %s)", value, h.date.UTC().Format(time.RFC1123))
	remedy := "a clock is wrong, here or on the server, which breaks certificate validity checks (short-lived certificates first): sync both with NTP (timedatectl set-ntp true; chronyc makestep)"
	switch {
	case abs >= 5*time.Minute:
		return tr.check(LayerClock, StatusFail, addr, value, detail, remedy, 0)
	case abs >= 30*time.Second:
		return tr.check(LayerClock, StatusWarn, addr, value, detail, remedy, 0)
	}
	return tr.check(LayerClock, StatusOK, addr, value, detail, "", 0)
}
