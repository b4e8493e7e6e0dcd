package warm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/module"
)

// entry is one module version's place in the module cache, in cmd/go's
// layout (cmd/go/internal/modfetch: CachePath, DownloadDir).
type entry struct {
	mod  module.Version
	esc  string // escaped module path
	vdir string // cache/download/<esc>/@v
	base string // vdir/<escaped version>: + ".mod", ".zip", ".lock", ...
	xdir string // <root>/<esc>@<escaped version>: the extracted tree
}

func newEntry(root string, mod module.Version) (entry, error) {
	esc, err := module.EscapePath(mod.Path)
	if err != nil {
		return entry{}, err
	}
	ev, err := module.EscapeVersion(mod.Version)
	if err != nil {
		return entry{}, err
	}
	vdir := filepath.Join(root, "cache", "download", filepath.FromSlash(esc), "@v")
	return entry{
		mod:  mod,
		esc:  esc,
		vdir: vdir,
		base: filepath.Join(vdir, ev),
		xdir: filepath.Join(root, filepath.FromSlash(esc)+"@"+ev),
	}, nil
}

// proxyPath is the GOPROXY path of the entry's file with the given suffix
// (".mod", ".zip", ".info").
func (e entry) proxyPath(suffix string) string {
	return e.esc + "/@v/" + filepath.Base(e.base) + suffix
}

// tempMarker is in the name of every temporary file and directory warm
// creates, so that a later run removes only its own leftovers and never a
// temporary file of a running go command (cmd/go writes .mod and .info
// without holding the version lock).
const tempMarker = ".warm-"

// lock takes cmd/go's lock for the module version: an exclusive flock on
// <version>.lock, as cmd/go's lockedfile.MutexAt does (flock on Unix,
// LockFileEx on Windows: tryLock). cmd/go holds it
// while it downloads and extracts the zip; warm holds it for all its work
// on the version. The returned function releases it.
func (e entry) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(e.vdir, 0o777); err != nil {
		return nil, local(err)
	}
	f, err := os.OpenFile(e.base+".lock", os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, local(err)
	}
	wait := time.Millisecond
	for {
		locked, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, local(fmt.Errorf("lock %s: %w", f.Name(), err))
		}
		if locked {
			break
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
	// Closing the file releases the lock.
	return func() { f.Close() }, nil
}

// cleanTemps removes what an interrupted earlier run left behind. Only
// safe with the version lock held. One read of the version directory; not
// the .mod's temporary files: warm and cmd/go write .mod files without the
// lock, so one may be in flight.
func (e entry) cleanTemps(extractTemps bool) {
	names, _ := os.ReadDir(e.vdir)
	base := filepath.Base(e.base)
	for _, d := range names {
		n := d.Name()
		if !strings.HasSuffix(n, ".tmp") {
			continue
		}
		for _, ext := range []string{".zip", ".ziphash", ".info"} {
			if strings.HasPrefix(n, base+ext+tempMarker) {
				os.Remove(filepath.Join(e.vdir, n))
			}
		}
		// A .mod is written without the lock, so another warm may be
		// writing this one now: remove only the temporaries of processes
		// that are gone (the pid is in the name: createTemp).
		if rest, ok := strings.CutPrefix(n, base+".mod"+tempMarker); ok && writerGone(rest) {
			os.Remove(filepath.Join(e.vdir, n))
		}
	}
	if !extractTemps {
		return
	}
	old, _ := filepath.Glob(globQuote(e.xdir) + ".tmp-*")
	for _, p := range old {
		removeTree(p)
	}
}

// globQuote escapes the glob metacharacters in s.
func globQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// removeTree removes a directory tree that may be read-only (extracted
// module trees are).
func removeTree(dir string) error {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o777)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// writeAtomic writes data to path through a temporary file and a rename,
// so that a reader (or a kill) never sees a partial file. The temporary
// file is created with its final mode (no chmod). It is the module cache's
// writer, not internal/atomicfile's: it writes exactly as cmd/go's
// modfetch.writeDiskCache does (no fsync: the cache is rebuilt, not
// trusted, after a crash; a sync per file would cost seconds per warm), and
// its temporary names carry the marker warm's crash cleanup looks for.
func writeAtomic(path string, data []byte) error {
	f, err := createTemp(path, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// createTemp creates a new file next to path named
// path+tempMarker+PID-N.tmp (the writer's pid: see writerGone)
// with mode perm (before umask), as os.CreateTemp does but without its
// 0600 mode.
func createTemp(path string, perm os.FileMode) (*os.File, error) {
	for range 100 {
		name := fmt.Sprintf("%s%s%d-%d.tmp", path, tempMarker, os.Getpid(), rand.Uint32())
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("create a temporary file next to %s: too many collisions", path)
}

// dirComplete reports whether the extracted tree is complete by cmd/go's
// rules (modfetch.DownloadDir): the directory exists, no .partial marker,
// and a .ziphash next to the zip.
func (e entry) dirComplete() bool {
	if fi, err := os.Stat(e.xdir); err != nil || !fi.IsDir() {
		return false
	}
	if _, err := os.Stat(e.base + ".partial"); err == nil {
		return false
	}
	_, err := os.Stat(e.base + ".ziphash")
	return err == nil
}

// makeReadOnly removes write permission from the directories of an
// extracted tree, as cmd/go does (modfetch.makeDirsReadOnly); files are
// created read-only.
func makeReadOnly(dir string) {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Chmod(dirs[i], 0o555)
	}
}

// tempDir creates the temporary directory the zip is extracted into; its
// name is one cmd/go also cleans up (<dir>.tmp-*, under the lock).
func (e entry) tempDir() (string, error) {
	if err := os.MkdirAll(filepath.Dir(e.xdir), 0o777); err != nil {
		return "", local(err)
	}
	d, err := os.MkdirTemp(filepath.Dir(e.xdir), filepath.Base(e.xdir)+".tmp-"+tempMarker[1:]+"*")
	return d, local(err)
}

// install puts a verified zip (tmpZip; empty when the cached zip is kept)
// and extracted tree (xtmp; empty for none) in place. Order matters for a
// kill at any point: a stale tree is marked .partial before it is removed,
// old .ziphash and zip go before the new .ziphash is written, the new
// .ziphash before the new zip (cmd/go's order), the tree last, then the
// .partial marker goes.
func (e entry) install(tmpZip, xtmp, hash string, writable bool) error {
	partial := e.base + ".partial"
	if _, err := os.Lstat(e.xdir); err == nil && (xtmp != "" || tmpZip != "") {
		if err := os.WriteFile(partial, nil, 0o666); err != nil {
			return err
		}
		if err := removeTree(e.xdir); err != nil {
			return fmt.Errorf("remove stale %s: %w", e.xdir, err)
		}
	}
	if tmpZip != "" {
		for _, p := range []string{e.base + ".ziphash", e.base + ".zip"} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		// Written in place under the lock, as cmd/go writes it
		// (lockedfile.Write): no zip is there yet, so a partial
		// .ziphash after a kill only makes the next run refetch.
		if err := os.WriteFile(e.base+".ziphash", []byte(hash), 0o644); err != nil {
			return err
		}
		if err := os.Chmod(tmpZip, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmpZip, e.base+".zip"); err != nil {
			return err
		}
	}
	if xtmp != "" {
		if !writable {
			makeReadOnly(xtmp)
		}
		if err := os.Rename(xtmp, e.xdir); err != nil {
			removeTree(xtmp)
			return err
		}
	}
	if err := os.Remove(partial); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// hasTree reports whether the directory extracted trees of the module go
// into exists, where an earlier extraction may have left temporaries.
func (e entry) hasTree() bool {
	_, err := os.Stat(filepath.Dir(e.xdir))
	return err == nil
}

// writerGone reports whether the process that made a temporary file named
// "PID-N.tmp" (after its marker) no longer runs.
func writerGone(rest string) bool {
	pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	return processGone(pid)
}
