package warm

// The go.mod files the graph load reads, the .info files of the build
// list, and go.sum lines warmed one by one.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// startSum warms the file of one go.sum line.
func (w *warmer) startSum(ctx context.Context, s *Sum, optional bool) {
	m := module.Version{Path: s.Path, Version: s.Version}
	if !s.GoMod {
		w.startZip(ctx, m, optional)
		return
	}
	w.mu.Lock()
	_, done := w.mods[m]
	w.mu.Unlock()
	if done {
		return
	}
	w.wg.Go(func() {
		if _, err := w.modFile(ctx, m, optional); err != nil {
			w.log.Debug("go.mod", "module", m, "error", err)
		}
	})
}

// startInfo fetches m's .info when it is not cached, best-effort: cmd/go's
// build never reads the .info of a module whose zip it does not need (only
// `go list -m` does), so an upstream that does not have it — a mirror
// holding exactly what `go mod download` fetched — is a warning, not a
// failure of m (whose go.mod the build may need all the same).
func (w *warmer) startInfo(ctx context.Context, m module.Version) {
	w.mu.Lock()
	if w.zips[m] {
		w.mu.Unlock()
		return
	}
	w.zips[m] = true // its .info is taken care of
	w.mu.Unlock()
	e, err := newEntry(w.root, m)
	if err != nil || validInfoFile(e.base+".info", m.Version) {
		return
	}
	if w.skip != nil {
		if _, ok := w.skip(m.Path); ok {
			return
		}
	}
	w.prog.addTotal(1)
	w.wg.Go(func() {
		defer w.prog.done()
		t0 := time.Now()
		var info []byte
		err := w.acquire(ctx, w.infoSem, func() error {
			var err error
			if info, err = w.fetchBytes(ctx, e.proxyPath(".info"), 1<<20); err == nil {
				err = validInfo(info, m.Version)
			}
			return err
		})
		if err == nil {
			err = w.fsOp(ctx, func() error {
				if err := w.mkdir(e.vdir); err != nil {
					return err
				}
				return writeAtomic(e.base+".info", info)
			})
		}
		if err != nil && isNotFound(err) {
			w.warn(fmt.Sprintf("%s@%s: the upstream has no .info (only `go list -m` reads it offline; the build does not): %v", m.Path, m.Version, err))
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("info: %w", err)
		}
		w.note(m, true, info != nil, int64(len(info)), time.Since(t0), err)
	})
}

// errSkipped is the graph's error for a go.mod of a skipped module that is
// not in the cache.
var errSkipped = errors.New("skipped")

// readMod is the graph's modReader.
func (w *warmer) readMod(ctx context.Context, m module.Version) ([]byte, error) {
	return w.modFile(ctx, m, false)
}

// modFile returns m's go.mod: from the cache when it matches go.sum, else
// fetched, verified and written. Each module version is done once.
func (w *warmer) modFile(ctx context.Context, m module.Version, optional bool) ([]byte, error) {
	w.mu.Lock()
	mo := w.mods[m]
	if mo != nil {
		w.mu.Unlock()
		select {
		case <-mo.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if !optional {
			w.note(m, false, false, 0, 0, nil)
		}
		return mo.data, mo.err
	}
	mo = &modOnce{done: make(chan struct{})}
	w.mods[m] = mo
	w.mu.Unlock()
	w.prog.addTotal(1)
	defer w.prog.done()
	t0 := time.Now()
	fetched, data, err := w.ensureMod(ctx, m, optional)
	if err != nil && errors.Is(err, errSkipped) {
		mo.err = err
		close(mo.done)
		return nil, err
	}
	if err != nil {
		err = fmt.Errorf("go.mod: %w", err)
	}
	mo.data, mo.err = data, err
	close(mo.done)
	var n int64
	if fetched {
		n = int64(len(data))
	}
	w.note(m, optional, fetched, n, time.Since(t0), err)
	return data, err
}

// ensureMod reads m's cached go.mod, or fetches it.
func (w *warmer) ensureMod(ctx context.Context, m module.Version, optional bool) (bool, []byte, error) {
	e, err := newEntry(w.root, m)
	if err != nil {
		return false, nil, errkind.Mark(errkind.BadInput, err)
	}
	sum := w.sums[sumKey(m, true)]
	path := e.base + ".mod"
	if data, err := os.ReadFile(path); err == nil {
		if sum == nil || goModHash(data) == sum.Hash {
			return false, data, nil
		}
		w.log.Info("replacing a cached go.mod whose hash does not match go.sum", "module", m.Path, "version", m.Version)
	}
	if w.skipped(m) {
		return false, nil, errSkipped
	}
	var data []byte
	err = w.acquire(ctx, w.modSem, func() error {
		var err error
		data, err = w.fetchBytes(ctx, e.proxyPath(".mod"), modzip.MaxGoMod)
		return err
	})
	if err != nil {
		return true, nil, err
	}
	if sum == nil {
		// cmd/go refuses a go.mod without a go.sum line (it would check
		// the checksum database); the graph uses it, the cache does not
		// get an unverified file.
		w.warn(fmt.Sprintf("%s@%s/go.mod has no go.sum line: read for the module graph but not written to the cache (run 'go mod tidy')", m.Path, m.Version))
		return true, data, nil
	}
	if h := goModHash(data); h != sum.Hash {
		return true, nil, &MismatchError{Module: m.Path, Version: m.Version, File: "go.mod", Expected: sum.Hash, Where: sum.Where(), Received: h}
	}
	err = w.fsOp(ctx, func() error {
		if err := w.mkdir(e.vdir); err != nil {
			return err
		}
		return writeAtomic(path, data)
	})
	if err != nil {
		return true, nil, err
	}
	return true, data, nil
}
