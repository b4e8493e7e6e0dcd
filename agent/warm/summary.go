package warm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"
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
	if len(errs) == 0 {
		return sum, nil
	}
	// One kind for the whole warm, the most telling (errs are sorted by
	// it), and the one line that says what it means.
	kind := errkind.Of(errs[0])
	err := errors.Join(errs...)
	if kind == errkind.Answered {
		err = fmt.Errorf("%w\nthe upstream answered these requests with an error status (its text is above): not a network fault, so the network was not checked", err)
	}
	return sum, errkind.Mark(kind, err)
}

// localFault explains a fault of the module cache once, on one line: the
// error, then the fix for what failed where (from the first file-system
// error in err).
func localFault(root string, err error) error {
	var pe *fs.PathError
	var le *os.LinkError
	where := "the module cache " + root
	switch {
	case errors.As(err, &pe):
		where = pe.Path
	case errors.As(err, &le):
		where = le.New
	}
	var errno syscall.Errno
	errors.As(err, &errno)
	var fix string
	switch errno {
	case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
		fix = fmt.Sprintf("the disk is full: free space on the file system holding the module cache %s, or point GOMODCACHE at a larger one", root)
	case syscall.EROFS:
		fix = fmt.Sprintf("%s is on a read-only file system: point GOMODCACHE at a writable directory", where)
	case syscall.EACCES, syscall.EPERM:
		fix = fmt.Sprintf("this user (uid %d) may not write %s: fix its owner or mode, or point GOMODCACHE at a writable directory", os.Getuid(), where)
	case syscall.ENOTDIR, syscall.EEXIST:
		fix = fmt.Sprintf("a file stands where %s needs a directory: remove it, or point GOMODCACHE elsewhere", where)
	case syscall.EMFILE, syscall.ENFILE:
		fix = "too many open files: raise the limit (ulimit -n) or lower the warm concurrency"
	default:
		fix = fmt.Sprintf("check %s: it must be a writable directory with free space", where)
	}
	return fmt.Errorf("module cache %s: %w; fix: %s (a fault of this machine, not the upstream or the network: no network diagnosis was run)", root, err, fix)
}

// kindRank orders the kinds of module failures, the most telling first:
// bad input (nothing can be fetched for it), a failed integrity check,
// a local fault, a transport failure, last an error status the upstream
// answered.
func kindRank(k errkind.Kind) int {
	switch k {
	case errkind.BadInput:
		return 0
	case errkind.Integrity:
		return 1
	case errkind.Local:
		return 2
	case errkind.Unreachable:
		return 3
	case errkind.Answered:
		return 4
	}
	return 5
}

func kindRankName(s string) int {
	for k := errkind.Other; k <= errkind.Canceled; k++ {
		if k.String() == s {
			return kindRank(k)
		}
	}
	return kindRank(errkind.Other)
}

// describe names the source for the summary.
func describe(s Source) string {
	if st, ok := s.(fmt.Stringer); ok {
		return st.String()
	}
	return fmt.Sprintf("%T", s)
}
