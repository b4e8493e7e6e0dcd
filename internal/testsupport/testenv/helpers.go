package testenv

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// LocalUser creates a throwaway unprivileged local user whose name starts
// with prefix, removed when the test ends, and returns its name, uid and
// gid. Creating users needs root: CI runs the suite as root, and elsewhere
// the test fails saying so (a skip would hide the missing check).
func LocalUser(t testing.TB, prefix string) (name string, uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("testenv: this test creates local users and must run as root (CI does): sudo go test")
	}
	b := make([]byte, 4)
	rand.Read(b)
	name = prefix + hex.EncodeToString(b)
	if out, err := exec.Command("useradd", "--no-create-home", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("testenv: useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	id := func(flag string) int {
		out, err := exec.Command("id", flag, name).Output()
		if err != nil {
			t.Fatalf("testenv: id %s %s: %v", flag, name, err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatalf("testenv: id %s %s: %v", flag, name, err)
		}
		return n
	}
	return name, id("-u"), id("-g")
}

// ServerResponse returns the lines cmd/go printed under "server response:"
// (a proxy's answer body), blank lines dropped, up to the next "go: " line.
func ServerResponse(out string) string {
	i := strings.Index(out, "server response:")
	if i < 0 {
		return ""
	}
	var lines []string
	for _, l := range strings.Split(out[i+len("server response:"):], "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		if strings.HasPrefix(l, "go: ") {
			break
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

// SyncBuffer is a log sink that tests read while loggers write from other
// goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Noise returns n bytes that do not compress (a fixed xorshift sequence):
// a module file whose zip is about n bytes, a body big enough to be cut.
func Noise(n int) []byte {
	b := make([]byte, n)
	x := uint64(88172645463325252)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// PublicDir returns a fresh directory named prefix* that every user may
// traverse and read (0755), removed when the test ends: t.TempDir's are
// private to the test's user, so a test that runs processes under other
// uids puts what they read here (and an EACCES below it comes from what
// is under test, not from a private temp dir above it).
func PublicDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// RunWithSharedBinary runs the tests of m, first (as root) writing a copy
// of the test binary that every user can run into a 0755 temporary
// directory and setting *path to it, for tests that run the binary as
// other users (the build cache is root's); the copy is removed afterwards.
// It is written before any test starts: writing an executable while
// another test forks makes exec fail with ETXTBSY. It returns m's exit
// code.
func RunWithSharedBinary(m *testing.M, path *string) int {
	if os.Geteuid() != 0 {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "shared-test-bin-")
	if err == nil {
		defer os.RemoveAll(dir)
		err = os.Chmod(dir, 0o755)
	}
	var self string
	if err == nil {
		self, err = os.Executable()
	}
	var b []byte
	if err == nil {
		b, err = os.ReadFile(self)
	}
	if err == nil {
		*path = filepath.Join(dir, filepath.Base(self))
		err = os.WriteFile(*path, b, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv: copy the test binary for other users:", err)
		return 1
	}
	return m.Run()
}
