package ci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

// KeyFiles are the client certificate and key files the setup loads, after
// a front end's rules for key material. Close removes any private copies.
type KeyFiles struct {
	// Cert and Key are the files to load ("" when not given).
	Cert, Key string
	// Copied says the key is a private copy made by the front end.
	Copied bool
	// FileVariable is the key's GitLab "file" variable ("" when the key is
	// not one): Handed removes it once the agent holds the key.
	FileVariable string
	priv         *tlsauth.PrivateDir
}

// Handed is called once the agent holds the key: the key's file variable,
// if any, is removed, so that for the rest of the job the key is on disk
// only where the agent keeps it (GitLab writes the file again in later
// stages' containers, and removes it when the job ends; `gitlab --report`
// removes it again). Close still removes the private copies.
func (k *KeyFiles) Handed() error {
	if k == nil || k.FileVariable == "" {
		return nil
	}
	return RemoveFileVariable(k.FileVariable)
}

// RemoveFileVariable removes a GitLab "file" variable's file (a key
// that the agent no longer needs on disk); a missing file is not an
// error.
func RemoveFileVariable(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the key's file variable %s: %w", path, err)
	}
	return nil
}

// Close removes the private copies, if any.
func (k *KeyFiles) Close() error {
	if k == nil || k.priv == nil {
		return nil
	}
	return k.priv.Remove()
}

// isPEM reports whether an input holds PEM content rather than a path.
func isPEM(v string) bool { return strings.HasPrefix(strings.TrimSpace(v), "-----BEGIN ") }

// KeyFiles lets the client-cert and client-key inputs hold PEM content (a
// secret passed straight through) as well as paths: content is masked
// first, then written as 0600 files into a fresh 0700 directory under
// RUNNER_TEMP, and the result names those files. Paths are used as given,
// and the custody check applies to them unchanged.
func (g *GitHub) KeyFiles(cert, key string) (*KeyFiles, error) {
	k := &KeyFiles{Cert: cert, Key: key}
	if !isPEM(cert) && !isPEM(key) {
		return k, nil
	}
	if isPEM(key) {
		if err := g.Mask(key); err != nil {
			return nil, err
		}
	}
	priv, err := tlsauth.NewPrivateDir(g.getenv("RUNNER_TEMP"))
	if err != nil {
		return nil, err
	}
	k.priv = priv
	for _, f := range []struct {
		v    *string
		name string
	}{{&k.Cert, "client.crt"}, {&k.Key, "client.key"}} {
		if !isPEM(*f.v) {
			continue
		}
		path, err := priv.Write(f.name, []byte(strings.TrimSpace(*f.v)+"\n"))
		if err != nil {
			priv.Remove()
			return nil, err
		}
		*f.v = path
		k.Copied = k.Copied || f.name == "client.key"
	}
	return k, nil
}

// KeyFiles applies GitLab's rule for key files. gitlab-runner writes a
// "file" variable under the runner's umask (0644 is normal) into the job's
// own temporary directory, so a key handed over that way would fail the
// custody check in every job. When the key file is a GitLab file variable
// (IsFileVariable) and group or others may read it, it is copied into a
// fresh private directory (0700, the copy 0600) inside the same job
// temporary directory, and the copy is used. Any other key file is used as
// given, so the custody check still refuses a readable key anywhere else.
// The file variable itself is removed once the agent holds the key
// (Handed).
//
// PEM content where a path belongs (a plain variable holding the PEM) is
// refused with GitLab's advice (GitLabPEMAdvice), never echoed.
func (g *GitLab) KeyFiles(cert, key string) (*KeyFiles, error) {
	var errs []error
	for _, in := range []struct{ v, what, env string }{{cert, "client certificate", "GOPROXY_SETUP_CLIENT_CERT"}, {key, "client key", "GOPROXY_SETUP_CLIENT_KEY"}} {
		if isPEM(in.v) {
			g.red.Add(in.v)
			errs = append(errs, fmt.Errorf("%s: the value is PEM content, not a path: %s", in.what, GitLabPEMAdvice(in.env)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, errkind.Mark(errkind.BadInput, err)
	}
	k := &KeyFiles{Cert: cert, Key: key}
	if key == "" || !IsFileVariable(key, g.getenv) {
		return k, nil
	}
	k.FileVariable = key
	fi, err := os.Lstat(key)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return k, nil // missing: the load names it; private already: use it
	}
	priv, err := tlsauth.NewPrivateDir(filepath.Dir(key))
	if err != nil {
		return nil, err
	}
	path, err := priv.CopyKey(key, "client.key")
	if err != nil {
		priv.Remove()
		return nil, err
	}
	k.Key, k.Copied, k.priv = path, true, priv
	return k, nil
}

// GitLabPEMAdvice is how the GitLab front end tells a user to hand over
// PEM content (a certificate or key) in variable env. GitLab masks only
// single-line values without spaces, so PEM content cannot be masked: the
// advice is a "file" variable, protected, never "masked".
func GitLabPEMAdvice(env string) string {
	return fmt.Sprintf("make %s a \"file\" variable (Settings > CI/CD > Variables, type File) so that GitLab hands the job a path; "+
		"GitLab cannot mask PEM content (it masks only single-line values without spaces), so mark the variable Protected and "+
		"limit who can edit CI/CD settings instead; goproxy-setup never prints key material", env)
}

// fileVariableDirs returns the directories GitLab writes "file" variables
// into for the current job: RUNNER_TEMP_PROJECT_DIR (gitlab-runner's job
// temporary directory), CI_PROJECT_DIR + ".tmp" (its default location, for
// runners that do not export the variable), and gitlab-ci-local's
// /tmp/gitlab-ci-local-file-variables-<CI_PROJECT_PATH_SLUG>-<CI_JOB_ID>.
func fileVariableDirs(getenv func(string) string) []string {
	var dirs []string
	if d := getenv("RUNNER_TEMP_PROJECT_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	if d := getenv("CI_PROJECT_DIR"); d != "" {
		dirs = append(dirs, filepath.Clean(d)+".tmp")
	}
	if slug, job := getenv("CI_PROJECT_PATH_SLUG"), getenv("CI_JOB_ID"); slug != "" && job != "" {
		dirs = append(dirs, "/tmp/gitlab-ci-local-file-variables-"+slug+"-"+job)
	}
	return dirs
}

// IsFileVariable reports whether path is a GitLab CI "file" variable of the
// current job. The rule, all of which must hold:
//
//   - path is absolute and clean, and its directory is one of the job's
//     file-variable directories: $RUNNER_TEMP_PROJECT_DIR,
//     $CI_PROJECT_DIR.tmp, or gitlab-ci-local's
//     /tmp/gitlab-ci-local-file-variables-$CI_PROJECT_PATH_SLUG-$CI_JOB_ID;
//   - its base name is the name of an environment variable whose value is
//     exactly path (GitLab names the file after its variable and puts its
//     path in the variable: GOPROXY_SETUP_CLIENT_KEY=<dir>/GOPROXY_SETUP_CLIENT_KEY);
//   - it is a regular file, not a symbolic link, owned by the current user
//     or by root.
//
// getenv is os.Getenv when nil.
func IsFileVariable(path string, getenv func(string) string) bool {
	if getenv == nil {
		getenv = os.Getenv
	}
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return false
	}
	dir, name := filepath.Dir(path), filepath.Base(path)
	if !validName(name, false) || getenv(name) != path {
		return false
	}
	inJobDir := false
	for _, d := range fileVariableDirs(getenv) {
		if filepath.Clean(d) == dir {
			inJobDir = true
		}
	}
	if !inJobDir {
		return false
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	return ownedByUsOrRoot(fi)
}
