package privilege

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
)

// Account is one local account in /etc/passwd form, with a primary group of
// the same name.
type Account struct {
	// Name is the login name, also used for the primary group.
	Name string
	// UID and GID are the numeric user and primary group ids.
	UID, GID int
	// Home is the home directory; "/nonexistent" when empty.
	Home string
	// Shell is the login shell; "/usr/sbin/nologin" when empty.
	Shell string
	// Comment is the GECOS field.
	Comment string
}

// System ids are taken from this range, highest free first, as useradd
// --system does (SYS_UID_MIN..SYS_UID_MAX in login.defs).
const (
	sysIDMin = 100
	sysIDMax = 999
)

var validName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// ValidateName reports whether name is a portable account name (lower case
// letters, digits, '_' and '-', starting with a letter or '_', at most 32
// characters). The error is bad input and names the fix.
func ValidateName(name string) error {
	if !validName.MatchString(name) {
		return errkind.Mark(errkind.BadInput, fmt.Errorf("agent user name %q is not a valid account name: use lower-case letters, digits, '_' and '-' (at most 32, starting with a letter), e.g. goproxy-agent", name))
	}
	return nil
}

// dbLine is one parsed line of /etc/passwd or /etc/group.
type dbLine struct {
	name string
	id   int // uid (passwd) or gid (group)
	gid  int // primary gid (passwd only)
	rest []string
}

// parseDB parses passwd (fields=7) or group (fields=4) data. Comments, blank
// lines and NIS "+"/"-" lines are skipped; malformed lines are an error so
// that nothing is appended to a file that is not understood.
func parseDB(data []byte, fields int) ([]dbLine, error) {
	var out []dbLine
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimRight(raw, "\r")
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != fields {
			return nil, fmt.Errorf("line %d: %d fields, want %d", i+1, len(f), fields)
		}
		id, err := strconv.Atoi(f[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: id %q is not a number", i+1, f[2])
		}
		l := dbLine{name: f[0], id: id, gid: -1, rest: f}
		if fields == 7 {
			if l.gid, err = strconv.Atoi(f[3]); err != nil {
				return nil, fmt.Errorf("line %d: gid %q is not a number", i+1, f[3])
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// LookupAccount finds name in passwd data (the /etc/passwd format).
func LookupAccount(passwd []byte, name string) (Account, bool, error) {
	lines, err := parseDB(passwd, 7)
	if err != nil {
		return Account{}, false, fmt.Errorf("parse passwd: %w", err)
	}
	for _, l := range lines {
		if l.name == name {
			return Account{Name: l.name, UID: l.id, GID: l.gid, Comment: l.rest[4], Home: l.rest[5], Shell: l.rest[6]}, true, nil
		}
	}
	return Account{}, false, nil
}

// lookupGroup returns the gid and member list of group name.
func lookupGroup(group []byte, name string) (gid int, members []string, ok bool, err error) {
	lines, err := parseDB(group, 4)
	if err != nil {
		return 0, nil, false, fmt.Errorf("parse group: %w", err)
	}
	for _, l := range lines {
		if l.name == name {
			if m := l.rest[3]; m != "" {
				members = strings.Split(m, ",")
			}
			return l.id, members, true, nil
		}
	}
	return 0, nil, false, nil
}

// FreeSystemID returns the highest id in the system range (100–999) that is
// neither a uid in passwd nor a gid in group, so that the new user and its
// group can share it.
func FreeSystemID(passwd, group []byte) (int, error) {
	used, err := usedIDs(passwd, group)
	if err != nil {
		return 0, err
	}
	for id := sysIDMax; id >= sysIDMin; id-- {
		if !used[id] {
			return id, nil
		}
	}
	return 0, fmt.Errorf("no free system id in %d–%d: pass an explicit uid", sysIDMin, sysIDMax)
}

func usedIDs(passwd, group []byte) (map[int]bool, error) {
	pl, err := parseDB(passwd, 7)
	if err != nil {
		return nil, fmt.Errorf("parse passwd: %w", err)
	}
	gl, err := parseDB(group, 4)
	if err != nil {
		return nil, fmt.Errorf("parse group: %w", err)
	}
	used := map[int]bool{}
	for _, l := range pl {
		used[l.id] = true
	}
	for _, l := range gl {
		used[l.id] = true
	}
	return used, nil
}

// AppendAccount returns passwd and group with a the account and its primary
// group (same name, a.GID, no members) appended. It refuses a name, uid or
// gid that is already taken, and uid or gid 0.
func AppendAccount(passwd, group []byte, a Account) (newPasswd, newGroup []byte, err error) {
	if err := ValidateName(a.Name); err != nil {
		return nil, nil, err
	}
	if a.UID <= 0 || a.GID <= 0 {
		return nil, nil, errkind.Mark(errkind.BadInput, fmt.Errorf("account %q: uid %d / gid %d: both must be positive (never root)", a.Name, a.UID, a.GID))
	}
	if strings.ContainsAny(a.Home+a.Shell+a.Comment, ":\n") {
		return nil, nil, errkind.Mark(errkind.BadInput, fmt.Errorf("account %q: home, shell and comment must not contain ':' or newlines", a.Name))
	}
	pl, err := parseDB(passwd, 7)
	if err != nil {
		return nil, nil, fmt.Errorf("parse passwd: %w", err)
	}
	gl, err := parseDB(group, 4)
	if err != nil {
		return nil, nil, fmt.Errorf("parse group: %w", err)
	}
	for _, l := range pl {
		if l.name == a.Name {
			return nil, nil, fmt.Errorf("user %q already exists (uid %d)", a.Name, l.id)
		}
		if l.id == a.UID {
			return nil, nil, fmt.Errorf("uid %d is already used by user %q: choose another uid", a.UID, l.name)
		}
	}
	for _, l := range gl {
		if l.name == a.Name {
			return nil, nil, fmt.Errorf("group %q already exists (gid %d)", a.Name, l.id)
		}
		if l.id == a.GID {
			return nil, nil, fmt.Errorf("gid %d is already used by group %q: choose another id", a.GID, l.name)
		}
	}
	home, shell := a.Home, a.Shell
	if home == "" {
		home = "/nonexistent"
	}
	if shell == "" {
		shell = "/usr/sbin/nologin"
	}
	newPasswd = appendLine(passwd, fmt.Sprintf("%s:x:%d:%d:%s:%s:%s", a.Name, a.UID, a.GID, a.Comment, home, shell))
	newGroup = appendLine(group, fmt.Sprintf("%s:x:%d:", a.Name, a.GID))
	return newPasswd, newGroup, nil
}

// appendLine appends line and a newline to data, adding the newline data
// lacks at its end first.
func appendLine(data []byte, line string) []byte {
	out := bytes.Clone(data)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(append(out, line...), '\n')
}
