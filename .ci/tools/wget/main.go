// Command wget stands in for BusyBox's wget applet in the Alpine-shaped job
// image (.ci/job-images): Debian's busybox-static 1.35 crashes (SIGSEGV)
// whenever its wget is given -T, which Alpine's BusyBox (musl) does not.
// It takes the options scripts/install.sh passes to BusyBox's wget — -q,
// -O FILE, -T SECONDS, -t TRIES (accepted and ignored, as BusyBox does) —
// and one http(s) URL, and exits 1 on any error or a non-2xx status.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	fs := flag.NewFlagSet("wget", flag.ContinueOnError)
	fs.Bool("q", false, "quiet")
	out := fs.String("O", "", "output file ('-' for stdout)")
	timeout := fs.Int("T", 0, "network timeout in seconds")
	fs.Int("t", 1, "tries (ignored)")
	if err := fs.Parse(os.Args[1:]); err != nil || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: wget [-q] [-O FILE] [-T SEC] [-t TRIES] URL")
		os.Exit(1)
	}
	if err := get(fs.Arg(0), *out, time.Duration(*timeout)*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "wget:", err)
		os.Exit(1)
	}
}

func get(url, out string, timeout time.Duration) error {
	resp, err := (&http.Client{Timeout: timeout}).Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("server returned error: HTTP/1.1 %s", resp.Status)
	}
	w := os.Stdout
	if out != "" && out != "-" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	_, err = io.Copy(w, resp.Body)
	return err
}
