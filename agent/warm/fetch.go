package warm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	modzip "golang.org/x/mod/zip"
)

// errTooLarge is a body over the protocol's size limits.
var errTooLarge = errors.New("response too large")

// fetchBytes fetches a small file (.mod, .info) into memory.
func (w *warmer) fetchBytes(ctx context.Context, path string, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	err := w.retry(ctx, path, func(ctx context.Context) error {
		buf.Reset()
		rc, err := w.src.Open(ctx, path)
		if err != nil {
			return fromSource(err)
		}
		defer rc.Close()
		n, err := buf.ReadFrom(io.LimitReader(w.prog.reader(sourceReader{rc}), limit+1))
		if err == nil && n > limit {
			err = fmt.Errorf("%w: more than %d bytes", errTooLarge, limit)
		}
		return err
	})
	return buf.Bytes(), err
}

var zipBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// fetchFile fetches a zip into f, starting over on each attempt.
func (w *warmer) fetchFile(ctx context.Context, path string, f *os.File) (int64, error) {
	var n int64
	err := w.retry(ctx, path, func(ctx context.Context) error {
		if err := f.Truncate(0); err != nil {
			return local(err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return local(err)
		}
		rc, err := w.src.Open(ctx, path)
		if err != nil {
			return fromSource(err)
		}
		defer rc.Close()
		// 256 KiB at a time: an eighth of the read and write calls of
		// io.Copy's 32 KiB.
		bufp := zipBufs.Get().(*[]byte)
		// localWriter hides f's ReadFrom, as CopyBuffer needs.
		n, err = io.CopyBuffer(localWriter{f}, io.LimitReader(w.prog.reader(sourceReader{rc}), modzip.MaxZipFile+1), *bufp)
		zipBufs.Put(bufp)
		if err == nil && n > modzip.MaxZipFile {
			err = fmt.Errorf("%w: module zip over %d bytes", errTooLarge, modzip.MaxZipFile)
		}
		return err
	})
	return n, err
}

// retry runs f until it succeeds, fails for good, or the attempts are
// used up, with jittered exponential backoff between attempts.
func (w *warmer) retry(ctx context.Context, what string, f func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if w.timeout > 0 {
			actx, cancel = context.WithTimeout(ctx, w.timeout)
		}
		err := f(actx)
		cancel()
		if err == nil || ctx.Err() != nil || attempt >= w.attempts || !isTemporary(err) {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("truncated body: %w", err)
			}
			return err
		}
		d := time.Duration(float64(100*time.Millisecond<<(attempt-1)) * (0.5 + rand.Float64()))
		w.log.Debug("retrying fetch", "path", what, "attempt", attempt, "in", d, "error", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(d):
		}
	}
}
