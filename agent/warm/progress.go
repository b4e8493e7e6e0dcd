package warm

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/goproxy-setup/goproxy-setup/internal/humanize"
)

// progress reports done/total, bytes and rate: a bar redrawn in place on a
// terminal, a line per interval otherwise (CI logs). A nil writer turns it
// off; the counters still work.
type progress struct {
	w        io.Writer
	tty      bool
	interval time.Duration
	started  time.Time

	total atomic.Int64
	doneN atomic.Int64
	bytes atomic.Int64

	stopOnce sync.Once
	quit     chan struct{}
	finished chan struct{}
}

func newProgress(w io.Writer, interval time.Duration) *progress {
	p := &progress{w: w, interval: interval, quit: make(chan struct{}), finished: make(chan struct{})}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
		p.interval = 200 * time.Millisecond
	}
	return p
}

func (p *progress) start() {
	p.started = time.Now()
	if p.w == nil {
		close(p.finished)
		return
	}
	go func() {
		defer close(p.finished)
		t := time.NewTicker(p.interval)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				p.print(true)
				return
			case <-t.C:
				p.print(false)
			}
		}
	}()
}

func (p *progress) stop() {
	p.stopOnce.Do(func() { close(p.quit) })
	<-p.finished
}

func (p *progress) done() { p.doneN.Add(1) }

// addTotal adds n files to do: the total grows as the graph loads.
func (p *progress) addTotal(n int) { p.total.Add(int64(n)) }

// reader counts the bytes read from r.
func (p *progress) reader(r io.Reader) io.Reader { return &countingReader{r: r, n: &p.bytes} }

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

func (p *progress) print(final bool) {
	done, b, total := p.doneN.Load(), p.bytes.Load(), p.total.Load()
	secs := time.Since(p.started).Seconds()
	var rate int64
	if secs > 0 {
		rate = int64(float64(b) / secs)
	}
	size, speed := humanize.Bytes(b), humanize.Bytes(rate)+"/s"
	if !p.tty {
		fmt.Fprintf(p.w, "warm: %d/%d files, %s, %s, %.1fs\n", done, total, size, speed, secs)
		return
	}
	const width = 30
	fill := width
	if total > 0 {
		fill = int(done) * width / int(total)
	}
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(p.w, "\r\x1b[Kwarm [%s] %d/%d files  %s  %s%s", bar, done, total, size, speed, end)
}
