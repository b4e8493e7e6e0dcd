package warm

// Verification: the h1 hashes of go.mod files and module zips, computed as
// golang.org/x/mod/sumdb/dirhash does, with the zip checked by cmd/go's own
// rules (golang.org/x/mod/zip.CheckZip) first.
//
// Inflate is klauspost/compress's flate, chosen by measurement
// (BenchmarkHashZip, 2 cores: it inflates the same members about 1.4× as
// fast as compress/flate); its readers and the copy buffers are pooled, so
// verifying a zip allocates little beyond the zip directory.

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	kflate "github.com/klauspost/compress/flate"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

// goModHash returns the h1 hash of a go.mod file's content, as go.sum's
// "/go.mod" lines record it.
func goModHash(data []byte) string {
	fh := sha256.Sum256(data)
	s := sha256.New()
	fmt.Fprintf(s, "%x  go.mod\n", fh)
	return "h1:" + base64.StdEncoding.EncodeToString(s.Sum(nil))
}

// errZip marks a zip that fails cmd/go's checks or cannot be read as a zip.
var errZip = errors.New("invalid module zip")

// inflaters pools klauspost flate readers (Reset reuses their tables).
var inflaters sync.Pool

// copyBufs pools the buffers members are read through.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

type pooledInflater struct{ r io.ReadCloser }

func (p *pooledInflater) Read(b []byte) (int, error) { return p.r.Read(b) }

func (p *pooledInflater) Close() error {
	err := p.r.Close()
	inflaters.Put(p.r)
	return err
}

func newInflater(r io.Reader) io.ReadCloser {
	if fr, ok := inflaters.Get().(io.ReadCloser); ok {
		if err := fr.(kflate.Resetter).Reset(r, nil); err == nil {
			return &pooledInflater{fr}
		}
	}
	return &pooledInflater{kflate.NewReader(r)}
}

// useStdlibInflate makes hashZip use compress/flate; for the benchmark
// that compares the two.
var useStdlibInflate = false

// hashZip checks the module zip at zipPath as cmd/go does (names, path
// safety, case collisions, size limits) and returns its h1 hash
// (dirhash.HashZip). When xdir is not empty, the files are extracted into
// xdir in the same pass (each member is inflated once, for hashing and
// writing), as golang.org/x/mod/zip.Unzip would: files 0444, or 0644 when
// writable is set (GOFLAGS=-modcacherw). Declared sizes and CRCs are
// enforced by archive/zip.
func hashZip(mod module.Version, zipPath, xdir string, writable bool) (string, error) {
	if _, err := modzip.CheckZip(mod, zipPath); err != nil {
		return "", fmt.Errorf("%w: %v", errZip, err)
	}
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errZip, err)
	}
	defer zr.Close()
	mode := os.FileMode(0o444)
	if writable {
		mode = 0o644
	}
	return hashMembers(&zr.Reader, xdir, mod.Path+"@"+mod.Version+"/", mode)
}

// hashMembers inflates and hashes every member of zr, in name order, and
// returns the h1 hash; when xdir is set, each member is also written to
// xdir (its name without prefix) with mode.
func hashMembers(zr *zip.Reader, xdir, prefix string, mode os.FileMode) (string, error) {
	if !useStdlibInflate {
		zr.RegisterDecompressor(zip.Deflate, newInflater)
	}
	files := slices.Clone(zr.File)
	slices.SortFunc(files, func(a, b *zip.File) int { return strings.Compare(a.Name, b.Name) })
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	sum, fh := sha256.New(), sha256.New()
	for _, zf := range files {
		if strings.Contains(zf.Name, "\n") {
			return "", fmt.Errorf("%w: file name %q has a newline", errZip, zf.Name)
		}
		fh.Reset()
		if err := hashMember(zf, fh, *bufp, xdir, strings.TrimPrefix(zf.Name, prefix), mode); err != nil {
			return "", err
		}
		fmt.Fprintf(sum, "%x  %s\n", fh.Sum(nil), zf.Name)
	}
	return "h1:" + base64.StdEncoding.EncodeToString(sum.Sum(nil)), nil
}

// hashMember hashes one zip member into h and, when xdir is set, writes it
// to xdir/rel.
func hashMember(zf *zip.File, h hash.Hash, buf []byte, xdir, rel string, mode os.FileMode) error {
	r, err := zf.Open()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errZip, zf.Name, err)
	}
	defer r.Close()
	var w io.Writer = h
	var out *os.File
	if xdir != "" && rel != "" && !strings.HasSuffix(rel, "/") {
		dst := filepath.Join(xdir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o777); err != nil {
			return local(err)
		}
		if out, err = os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode); err != nil {
			return local(err)
		}
		defer out.Close()
		w = io.MultiWriter(h, localWriter{out})
	}
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err // only the file can fail: a local fault
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The zip's content: bad deflate data, a CRC or size that
			// does not match.
			return fmt.Errorf("%w: %s: %v", errZip, zf.Name, rerr)
		}
	}
	if out != nil {
		return local(out.Close())
	}
	return nil
}

// HashZip inflates and hashes every member of the zip in r (size bytes)
// and returns its h1 hash, as dirhash.HashZip does, with warm's inflater.
// It is the floor of a warm's CPU work: goproxy-bench's floor measurement
// calls it on exactly the zips a warm fetches.
func HashZip(r io.ReaderAt, size int64) (string, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errZip, err)
	}
	return hashMembers(zr, "", "", 0)
}
