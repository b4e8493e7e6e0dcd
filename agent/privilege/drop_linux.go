package privilege

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Drop irreversibly turns the calling process (running as root) into u: no
// supplementary groups, gid then uid set (real, effective and saved), no new
// privileges through exec, not dumpable (no core file, no ptrace or
// /proc/<pid>/{mem,environ} by any other non-root user, the job's included),
// RLIMIT_CORE 0. It then verifies, for every thread, that uid, gid and
// groups are exactly u's, that no capability is left, that no_new_privs is
// set, and that setuid(0), setgid(0) and setgroups([0]) fail. Any failure is
// returned and the caller must exit: the drop fails closed.
//
// SECURITY-SENSITIVE AND ORDERING-DEPENDENT. Groups must be cleared and the
// gid set while still root, before setuid; setuid must come before
// no_new_privs/dumpable so that the kernel does not reset them; the checks
// come last. syscall.Setgroups/Setgid/Setuid apply to all threads of a Go
// process on Linux. no_new_privs is per thread: Drop sets it on all threads
// with syscall.AllThreadsSyscall, which is unavailable in a cgo build; there
// Drop accepts only a process that already had it on every thread from its
// start (see StartNoNewPrivs), and fails otherwise. Release builds are
// CGO_ENABLED=0. Read the secrets and bind the listener before Drop; open
// nothing as root after it. Tested as root with real users:
//
//	go test -race -run 'TestDrop|TestSeparation' ./agent/privilege/
func Drop(u *User) error {
	if u == nil || u.UID <= 0 || u.GID <= 0 {
		return fmt.Errorf("drop privileges: target %v must be a non-root account", u)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("drop privileges to %s: running as uid %d, not root", u, os.Geteuid())
	}
	if err := syscall.Setgroups([]int{}); err != nil {
		return fmt.Errorf("drop privileges: clear supplementary groups: %w", err)
	}
	if err := syscall.Setgid(u.GID); err != nil {
		return fmt.Errorf("drop privileges: setgid %d: %w", u.GID, err)
	}
	if err := syscall.Setuid(u.UID); err != nil {
		return fmt.Errorf("drop privileges: setuid %d: %w", u.UID, err)
	}
	if err := setNoNewPrivs(); err != nil {
		return fmt.Errorf("drop privileges: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("drop privileges: clear dumpable: %w", err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{Cur: 0, Max: 0}); err != nil {
		return fmt.Errorf("drop privileges: RLIMIT_CORE 0: %w", err)
	}
	return verifyDropped(u)
}

// setNoNewPrivs sets no_new_privs on every thread.
func setNoNewPrivs() error {
	_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0)
	if errno == 0 {
		return nil
	}
	if errno != syscall.ENOTSUP {
		return fmt.Errorf("set no_new_privs: %w", errno)
	}
	// cgo build: AllThreadsSyscall is not available. A process started by
	// StartNoNewPrivs has the flag on every thread from birth (threads
	// inherit it from the thread that clones them).
	states, err := threadStates()
	if err != nil {
		return err
	}
	for tid, st := range states {
		if !st.NoNewPrivs {
			return fmt.Errorf("set no_new_privs: thread %d lacks it and this cgo build cannot set it on all threads: build with CGO_ENABLED=0 or start the agent with privilege.StartNoNewPrivs", tid)
		}
	}
	return nil
}

func verifyDropped(u *User) error {
	var errs []error
	if dumpable, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); err != nil || dumpable != 0 {
		errs = append(errs, fmt.Errorf("dumpable is %d (%v), want 0", dumpable, err))
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_CORE, &rl); err != nil || rl.Cur != 0 || rl.Max != 0 {
		errs = append(errs, fmt.Errorf("RLIMIT_CORE is %d/%d (%v), want 0/0", rl.Cur, rl.Max, err))
	}
	states, err := threadStates()
	if err != nil {
		errs = append(errs, err)
	}
	for tid, st := range states {
		if err := st.check(u); err != nil {
			errs = append(errs, fmt.Errorf("thread %d: %w", tid, err))
		}
	}
	// Regaining root must fail. If one of these succeeds the process is
	// root again, and the error makes the caller exit.
	if err := syscall.Setuid(0); err == nil {
		errs = append(errs, errors.New("setuid(0) succeeded"))
	}
	if err := syscall.Setgid(0); err == nil {
		errs = append(errs, errors.New("setgid(0) succeeded"))
	}
	if err := syscall.Setgroups([]int{0}); err == nil {
		errs = append(errs, errors.New("setgroups([0]) succeeded"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("drop privileges to %s: verification failed: %w", u, err)
	}
	return nil
}

// StartNoNewPrivs starts cmd from a dedicated OS thread that has
// no_new_privs set, so that the child and every thread it ever creates have
// it from birth; the thread is discarded afterwards (its goroutine exits
// locked), so the flag never reaches other goroutines of the caller. Use it
// when the caller is root and starts the agent directly; not for "sudo"
// (no_new_privs stops sudo from gaining root). cmd.SysProcAttr.Pdeathsig is
// refused: it would fire when that thread exits, at once.
func StartNoNewPrivs(cmd *exec.Cmd) error {
	if cmd.SysProcAttr != nil && cmd.SysProcAttr.Pdeathsig != 0 {
		return errors.New("start with no_new_privs: Pdeathsig is tied to the starting thread, which exits at once: unset it")
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the goroutine ends locked, so the runtime
		// terminates this thread instead of reusing it.
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			errc <- fmt.Errorf("start with no_new_privs: %w", err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// ProcStatus is the privilege-related part of /proc/<pid>/status.
type ProcStatus struct {
	// UIDs and GIDs are real, effective, saved and filesystem ids.
	UIDs, GIDs [4]int
	// Groups are the supplementary groups.
	Groups []int
	// NoNewPrivs is the no_new_privs flag.
	NoNewPrivs bool
	// CapPrm, CapEff and CapAmb are the permitted, effective and ambient
	// capability sets.
	CapPrm, CapEff, CapAmb uint64
}

// ReadProcStatus parses a /proc/<pid>/status (or /proc/<pid>/task/<tid>/status)
// file.
func ReadProcStatus(path string) (ProcStatus, error) {
	f, err := os.Open(path)
	if err != nil {
		return ProcStatus{}, fmt.Errorf("read process status: %w", err)
	}
	defer f.Close()
	var st ProcStatus
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		var perr error
		switch key {
		case "Uid", "Gid":
			ids := &st.UIDs
			if key == "Gid" {
				ids = &st.GIDs
			}
			if len(fields) != 4 {
				perr = fmt.Errorf("%s has %d fields", key, len(fields))
				break
			}
			for i, f := range fields {
				if ids[i], perr = strconv.Atoi(f); perr != nil {
					break
				}
			}
		case "Groups":
			for _, f := range fields {
				g, err := strconv.Atoi(f)
				if err != nil {
					perr = err
					break
				}
				st.Groups = append(st.Groups, g)
			}
		case "NoNewPrivs":
			st.NoNewPrivs = val != "" && strings.TrimSpace(val) == "1"
		case "CapPrm", "CapEff", "CapAmb":
			var v uint64
			v, perr = strconv.ParseUint(strings.TrimSpace(val), 16, 64)
			switch key {
			case "CapPrm":
				st.CapPrm = v
			case "CapEff":
				st.CapEff = v
			default:
				st.CapAmb = v
			}
		default:
			continue
		}
		if perr != nil {
			return ProcStatus{}, fmt.Errorf("read process status %s: %s: %w", path, key, perr)
		}
		seen[key] = true
	}
	if err := sc.Err(); err != nil {
		return ProcStatus{}, fmt.Errorf("read process status: %w", err)
	}
	for _, k := range []string{"Uid", "Gid", "Groups", "NoNewPrivs", "CapPrm", "CapEff"} {
		if !seen[k] {
			return ProcStatus{}, fmt.Errorf("read process status %s: no %s line", path, k)
		}
	}
	return st, nil
}

// check reports how st differs from a process fully dropped to u.
func (st ProcStatus) check(u *User) error {
	var errs []error
	for i, id := range st.UIDs {
		if id != u.UID {
			errs = append(errs, fmt.Errorf("uid[%d] is %d, want %d", i, id, u.UID))
		}
	}
	for i, id := range st.GIDs {
		if id != u.GID {
			errs = append(errs, fmt.Errorf("gid[%d] is %d, want %d", i, id, u.GID))
		}
	}
	if len(st.Groups) != 0 {
		errs = append(errs, fmt.Errorf("supplementary groups are %v, want none", st.Groups))
	}
	if !st.NoNewPrivs {
		errs = append(errs, errors.New("no_new_privs is not set"))
	}
	if st.CapPrm|st.CapEff|st.CapAmb != 0 {
		errs = append(errs, fmt.Errorf("capabilities left: permitted %#x effective %#x ambient %#x", st.CapPrm, st.CapEff, st.CapAmb))
	}
	return errors.Join(errs...)
}

// threadStates reads the status of every thread of this process.
func threadStates() (map[int]ProcStatus, error) {
	dirs, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil || len(dirs) == 0 {
		return nil, fmt.Errorf("list threads in /proc/self/task (is /proc mounted?): %v", err)
	}
	out := make(map[int]ProcStatus, len(dirs))
	for _, p := range dirs {
		tid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil {
			continue
		}
		st, err := ReadProcStatus(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // the thread exited meanwhile
			}
			return nil, err
		}
		out[tid] = st
	}
	return out, nil
}
