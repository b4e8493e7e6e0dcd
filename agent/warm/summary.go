package warm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/module"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// summary builds the Summary and the error from the records.
func (w *warmer) summary(ctx context.Context, start time.Time, upstream string) (*Summary, error) {
	sum := &Summary{
		Upstream: upstream,
		ModCache: w.root,
		Slowest:  []Timing{},
		Skipped:  []Skipped{},
		Failures: []Failure{},
		Warnings: slices.Clone(w.warnings),
	}
	if sum.Warnings == nil {
		sum.Warnings = []string{}
	}
	mods := make([]module.Version, 0, len(w.recs))
	for m := range w.recs {
		mods = append(mods, m)
	}
	slices.SortFunc(mods, func(a, b module.Version) int {
		return cmp.Or(strings.Compare(a.Path, b.Path), cmpVersion(a.Version, b.Version))
	})
	var errs []error
	for _, m := range mods {
		r := w.recs[m]
		if r.skipped != "" {
			sum.Skipped = append(sum.Skipped, Skipped{Module: m.Path, Version: m.Version, Reason: r.skipped})
			continue
		}
		if r.err != nil && r.optional && isNotFound(r.err) {
			sum.Warnings = append(sum.Warnings, fmt.Sprintf("%s@%s (a go.sum line the build does not need): %s", m.Path, m.Version, r.err.Error()))
			continue
		}
		sum.Modules++
		if r.zip {
			sum.Zips++
		}
		sum.Bytes += r.bytes
		switch {
		case r.err != nil:
			kind := classify(r.err)
			if kind == errkind.Canceled || (w.localErr != nil && kind != errkind.Local && ctx.Err() == nil) {
				continue // the cause is reported once, below
			}
			if w.localErr != nil && kind == errkind.Local && r.err != w.localErr {
				continue
			}
			msg := r.err.Error()
			errs = append(errs, errkind.Mark(kind, fmt.Errorf("%s@%s: %s", m.Path, m.Version, msg)))
			sum.Failures = append(sum.Failures, Failure{Module: m.Path, Version: m.Version, Kind: kind.String(), Error: msg})
		case r.fetched:
			sum.Fetched++
		default:
			sum.Hits++
		}
		sum.Slowest = append(sum.Slowest, Timing{Module: m.Path, Version: m.Version, Seconds: r.dur.Seconds(), Bytes: r.bytes})
	}
	slices.SortStableFunc(sum.Slowest, func(a, b Timing) int { return cmp.Compare(b.Seconds, a.Seconds) })
	sum.Slowest = sum.Slowest[:min(5, len(sum.Slowest))]
	slices.SortStableFunc(errs, func(a, b error) int { return kindRank(errkind.Of(a)) - kindRank(errkind.Of(b)) })
	slices.SortStableFunc(sum.Failures, func(a, b Failure) int { return kindRankName(a.Kind) - kindRankName(b.Kind) })
	sum.Failed = len(sum.Failures)
	sum.Seconds = time.Since(start).Seconds()
	if ctx.Err() != nil {
		sum.Failures = []Failure{}
		sum.Failed = 0
		return sum, errkind.Mark(errkind.Canceled, fmt.Errorf("warm canceled after %.1fs: %w", sum.Seconds, context.Cause(ctx)))
	}
	if w.localErr != nil {
		return sum, errkind.Mark(errkind.Local, localFault(w.root, w.localErr))
	}
	return sum, errors.Join(errs...)
}

// localFault explains a fault of the module cache: what, where, the fix.
func localFault(root string, err error) error {
	fix := "make it writable by this user, or point GOMODCACHE at a writable directory"
	switch {
	case errors.Is(err, errNoSpace):
		fix = "free space on its file system, or point GOMODCACHE at a larger one"
	case errors.Is(err, errReadOnlyFS):
		fix = "its file system is read-only: point GOMODCACHE at a writable directory"
	}
	return fmt.Errorf("module cache %s: %s (a local fault, not the upstream: no network diagnosis): %w", root, fix, err)
}

func kindRank(k errkind.Kind) int {
	switch k {
	case errkind.Integrity:
		return 0
	case errkind.Unreachable:
		return 1
	case errkind.Answered:
		return 2
	}
	return 3
}

func kindRankName(s string) int {
	for _, k := range []errkind.Kind{errkind.Integrity, errkind.Unreachable, errkind.Answered} {
		if k.String() == s {
			return kindRank(k)
		}
	}
	return 3
}

// describe names the source for the summary.
func describe(s Source) string {
	if st, ok := s.(fmt.Stringer); ok {
		return st.String()
	}
	return fmt.Sprintf("%T", s)
}
