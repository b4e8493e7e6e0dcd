package warm

// The zips of the modules cmd/go downloads: with their .info, under
// cmd/go's lock, verified before anything is put in place.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/module"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// startZip warms m's zip, .info and .mod in the background, once.
func (w *warmer) startZip(ctx context.Context, m module.Version, optional bool) {
	w.mu.Lock()
	if w.zips[m] {
		if !optional {
			w.rec(m).optional = false
		}
		w.mu.Unlock()
		return
	}
	w.zips[m] = true
	w.rec(m).zip = true
	w.mu.Unlock()
	w.prog.addTotal(1)
	w.wg.Go(func() {
		defer w.prog.done()
		if w.skipped(m) {
			return
		}
		sum := w.sums[sumKey(m, false)]
		if sum == nil {
			w.mu.Lock()
			w.rec(m).skipped = "no go.sum line for its zip: cmd/go checks it against the checksum database; warm writes only what go.sum verifies (run 'go mod tidy')"
			w.mu.Unlock()
			return
		}
		var wg sync.WaitGroup
		wg.Go(func() { w.modFile(ctx, m, optional) })
		t0 := time.Now()
		fetched, n, err := w.warmZip(ctx, m, sum)
		w.note(m, optional, fetched, n, time.Since(t0), err)
		wg.Wait()
	})
}

// warmZip makes the zip, .ziphash and .info of m valid in the cache (and
// the extracted tree when asked). A restored cache costs a few stats: a
// zip whose .ziphash holds go.sum's hash is trusted, as cmd/go trusts it;
// one whose .ziphash disagrees is never.
func (w *warmer) warmZip(ctx context.Context, m module.Version, sum *Sum) (bool, int64, error) {
	e, err := newEntry(w.root, m)
	if err != nil {
		return false, 0, errkind.Mark(errkind.BadInput, err)
	}
	if w.zipHit(e, sum) {
		return false, 0, nil
	}
	if err := w.fsOp(ctx, func() error { return w.mkdir(e.vdir) }); err != nil {
		return false, 0, err
	}
	unlock, err := e.lock(ctx)
	if err != nil {
		return false, 0, fmt.Errorf("take cmd/go's lock: %w", err)
	}
	defer unlock()
	// A module cache this run made the directory of holds no leftovers;
	// extraction temporaries are looked for only where trees are.
	if !w.madeDir(e.vdir) {
		e.cleanTemps(w.extract || e.hasTree())
	}
	if w.zipHit(e, sum) {
		return false, 0, nil
	}
	var (
		info    []byte
		infoErr error
		wg      sync.WaitGroup
	)
	if !validInfoFile(e.base+".info", m.Version) {
		wg.Go(func() {
			infoErr = w.acquire(ctx, w.modSem, func() error {
				var err error
				info, err = w.fetchBytes(ctx, e.proxyPath(".info"), 1<<20)
				if err == nil {
					err = validInfo(info, m.Version)
				}
				return err
			})
		})
	}
	fetched, n, zi, err := w.ensureZip(ctx, e, sum)
	wg.Wait()
	if err == nil && infoErr != nil {
		err = fmt.Errorf("info: %w", infoErr)
	}
	if err == nil && (info != nil || zi != nil) {
		err = w.fsOp(ctx, func() error {
			if info != nil {
				if err := writeAtomic(e.base+".info", info); err != nil {
					return err
				}
			}
			if zi != nil {
				return e.install(zi.tmpZip, zi.xtmp, zi.hash, w.rw)
			}
			return nil
		})
	}
	if zi != nil {
		zi.cleanup()
	}
	if err != nil && !errors.Is(err, errZip) && !isMismatch(err) {
		err = fmt.Errorf("zip: %w", err)
	}
	return fetched || info != nil, n + int64(len(info)), err
}

func isMismatch(err error) bool {
	var me *MismatchError
	return errors.As(err, &me)
}

// zipHit reports whether the zip needs nothing: .ziphash equals go.sum's
// hash, the zip (or a complete extracted tree) is there, the .info is
// there, and the tree when extracting. Stats only: no hashing.
func (w *warmer) zipHit(e entry, sum *Sum) bool {
	zh, err := os.ReadFile(e.base + ".ziphash")
	if err != nil || strings.TrimSpace(string(zh)) != sum.Hash {
		return false
	}
	if _, err := os.Stat(e.base + ".info"); err != nil {
		return false
	}
	_, zerr := os.Stat(e.base + ".zip")
	if w.extract {
		return e.dirComplete()
	}
	return zerr == nil || e.dirComplete()
}

func validInfoFile(path, version string) bool {
	data, err := os.ReadFile(path)
	return err == nil && validInfo(data, version) == nil
}

func validInfo(data []byte, version string) error {
	var info struct{ Version string }
	if err := json.Unmarshal(data, &info); err != nil {
		return errkind.Mark(errkind.Integrity, fmt.Errorf("malformed .info from the upstream: %v", err))
	}
	if info.Version != version {
		return errkind.Mark(errkind.Integrity, fmt.Errorf(".info from the upstream names version %q, want %q", info.Version, version))
	}
	return nil
}

// zipInstall is a verified zip (and extracted tree) waiting to be put in
// place by entry.install.
type zipInstall struct {
	tmpZip, xtmp, hash string
}

// cleanup removes what install did not move into place.
func (z *zipInstall) cleanup() {
	if z.tmpZip != "" {
		os.Remove(z.tmpZip)
	}
	if z.xtmp != "" {
		if _, err := os.Lstat(z.xtmp); err == nil {
			removeTree(z.xtmp)
		}
	}
}

// hashZip runs hashZip within the CPU bound.
func (w *warmer) hashZip(ctx context.Context, mod module.Version, zipPath, xdir string) (string, error) {
	var h string
	err := w.acquire(ctx, w.cpu, func() error {
		var err error
		h, err = hashZip(mod, zipPath, xdir, w.rw)
		return err
	})
	return h, err
}

// ensureZip, under the lock, keeps a cached zip whose .ziphash matches
// (extracting it when asked; the extraction hashes it again), or fetches
// the zip into a temporary file, checks, hashes (and extracts, in the
// same pass); the returned zipInstall puts it in place.
func (w *warmer) ensureZip(ctx context.Context, e entry, sum *Sum) (bool, int64, *zipInstall, error) {
	zipPath := e.base + ".zip"
	zh, _ := os.ReadFile(e.base + ".ziphash")
	if strings.TrimSpace(string(zh)) == sum.Hash {
		if _, err := os.Stat(zipPath); err == nil {
			if !w.extract || e.dirComplete() {
				return false, 0, nil, nil
			}
			zi := &zipInstall{hash: sum.Hash}
			var err error
			if zi.xtmp, err = e.tempDir(); err != nil {
				return false, 0, nil, err
			}
			h, err := w.hashZip(ctx, e.mod, zipPath, zi.xtmp)
			if err == nil && h == sum.Hash {
				return false, 0, zi, nil
			}
			zi.cleanup()
			w.log.Info("replacing a cached zip that fails verification", "module", e.mod.Path, "version", e.mod.Version, "hash", h, "error", err)
		} else if e.dirComplete() {
			return false, 0, nil, nil
		}
	}
	var f *os.File
	err := w.fsOp(ctx, func() error {
		var err error
		f, err = createTemp(e.base+".zip", 0o644)
		return err
	})
	if err != nil {
		return true, 0, nil, err
	}
	zi := &zipInstall{tmpZip: f.Name(), hash: sum.Hash}
	var n int64
	err = w.acquire(ctx, w.zipSem, func() error {
		var err error
		n, err = w.fetchFile(ctx, e.proxyPath(".zip"), f)
		return err
	})
	if cerr := f.Close(); err == nil {
		err = local(cerr)
	}
	if err == nil && w.extract {
		zi.xtmp, err = e.tempDir()
	}
	if err != nil {
		zi.cleanup()
		return true, n, nil, err
	}
	h, err := w.hashZip(ctx, e.mod, zi.tmpZip, zi.xtmp)
	if err == nil && h != sum.Hash {
		err = &MismatchError{Module: e.mod.Path, Version: e.mod.Version, File: "zip", Expected: sum.Hash, Where: sum.Where(), Received: h}
	}
	if err != nil {
		zi.cleanup()
		return true, n, nil, err
	}
	return true, n, zi, nil
}
