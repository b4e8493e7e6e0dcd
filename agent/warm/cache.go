package warm

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
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
// <version>.lock, as cmd/go's lockedfile.MutexAt does. cmd/go holds it
// while it downloads and extracts the zip; warm holds it for all its work
// on the version. The returned function releases it.
func (e entry) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(e.vdir, 0o777); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(e.base+".lock", os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	wait := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
	// Closing the file releases the flock.
	return func() { f.Close() }, nil
}

// cleanTemps removes what an interrupted earlier run left behind. Only
// safe with the version lock held.
func (e entry) cleanTemps() {
	old, _ := filepath.Glob(globQuote(e.base) + ".*" + tempMarker + "*.tmp")
	for _, p := range old {
		os.Remove(p)
	}
	old, _ = filepath.Glob(globQuote(e.xdir) + ".tmp-*")
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
// so that a reader (or a kill) never sees a partial file.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+tempMarker+"*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
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

// goModHash returns the h1 hash of a go.mod file's content, as go.sum's
// "/go.mod" lines record it.
func goModHash(data []byte) (string, error) {
	return dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
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

// errZip marks a zip that fails cmd/go's checks or cannot be read as a zip.
var errZip = errors.New("invalid module zip")

// hashZip checks the module zip at zipPath as cmd/go does (golang.org/x/mod/zip:
// names, path safety, case collisions, size limits) and returns its h1 hash
// (golang.org/x/mod/sumdb/dirhash.HashZip). When xdir is not empty, the files
// are extracted into xdir in the same pass (each file is decompressed once,
// for hashing and writing), as golang.org/x/mod/zip.Unzip would: files 0444.
// Declared sizes and CRCs are enforced by archive/zip.
func hashZip(mod module.Version, zipPath, xdir string) (string, error) {
	if _, err := modzip.CheckZip(mod, zipPath); err != nil {
		return "", fmt.Errorf("%w: %v", errZip, err)
	}
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errZip, err)
	}
	defer zr.Close()
	prefix := mod.Path + "@" + mod.Version + "/"
	names := make([]string, 0, len(zr.File))
	files := make(map[string]*zip.File, len(zr.File))
	for _, zf := range zr.File {
		names = append(names, zf.Name)
		files[zf.Name] = zf
	}
	var writeErr error
	open := func(name string) (io.ReadCloser, error) {
		zf := files[name]
		r, err := zf.Open()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", errZip, name, err)
		}
		rel := strings.TrimPrefix(name, prefix)
		if xdir == "" || rel == "" || strings.HasSuffix(rel, "/") {
			return r, nil
		}
		dst := filepath.Join(xdir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o777); err != nil {
			r.Close()
			return nil, &writeError{err}
		}
		w, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
		if err != nil {
			r.Close()
			return nil, &writeError{err}
		}
		return &teeFile{r: r, w: w, err: &writeErr}, nil
	}
	h, err := dirhash.Hash1(names, open)
	if err != nil {
		var we *writeError
		if errors.As(err, &we) {
			return "", we.err
		}
		// Anything else is the zip's content: bad deflate data, a CRC or
		// size that does not match, a name with a newline.
		return "", fmt.Errorf("%w: %v", errZip, err)
	}
	if writeErr != nil {
		return "", writeErr
	}
	return h, nil
}

// teeFile copies what is read from a zip member into the extracted file.
// dirhash.Hash1 ignores Close errors, so those are kept in *err.
type teeFile struct {
	r   io.ReadCloser
	w   *os.File
	err *error
}

type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }

func (t *teeFile) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		if _, werr := t.w.Write(p[:n]); werr != nil {
			return n, &writeError{werr}
		}
	}
	return n, err
}

func (t *teeFile) Close() error {
	t.r.Close()
	if err := t.w.Close(); err != nil && *t.err == nil {
		*t.err = err
	}
	return nil
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
