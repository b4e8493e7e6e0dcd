package ci

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goproxy-setup/goproxy-setup/internal/errkind"
	"github.com/goproxy-setup/goproxy-setup/internal/testsupport/testenv"
	"github.com/goproxy-setup/goproxy-setup/tlsauth"
)

// gitlabJob lays out a GitLab job as gitlab-runner does: the project dir
// and, beside it, the job's temporary dir <project>.tmp holding the "file"
// variables, each named after its variable, mode 0644 (the runner's umask).
type gitlabJob struct {
	project, tmp string
	env          map[string]string
}

func newGitLabJob(t *testing.T) *gitlabJob {
	t.Helper()
	builds := t.TempDir()
	j := &gitlabJob{project: filepath.Join(builds, "group", "project"), env: map[string]string{}}
	j.tmp = j.project + ".tmp"
	for _, d := range []string{j.project, j.tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	j.env["CI_PROJECT_DIR"] = j.project
	return j
}

// fileVar writes a file variable into dir and sets the variable to its path.
func (j *gitlabJob) fileVar(t *testing.T, dir, name string, content []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	j.env[name] = path
	return path
}

func (j *gitlabJob) getenv(k string) string { return j.env[k] }

func TestIsFileVariable(t *testing.T) {
	t.Parallel()
	key := []byte("-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n")
	cases := []struct {
		name  string
		setup func(t *testing.T, j *gitlabJob) string
		want  bool
	}{
		{"gitlab-runner file variable in <project>.tmp", func(t *testing.T, j *gitlabJob) string {
			return j.fileVar(t, j.tmp, "GOPROXY_SETUP_CLIENT_KEY", key)
		}, true},
		{"RUNNER_TEMP_PROJECT_DIR elsewhere", func(t *testing.T, j *gitlabJob) string {
			d := t.TempDir()
			j.env["RUNNER_TEMP_PROJECT_DIR"] = d
			return j.fileVar(t, d, "MY_KEY", key)
		}, true},
		{"gitlab-ci-local file variable dir", func(t *testing.T, j *gitlabJob) string {
			// gitlab-ci-local 4.x writes /tmp/gitlab-ci-local-file-variables-<slug>-<job id>/<NAME>.
			j.env["CI_PROJECT_PATH_SLUG"] = "cifix-test-" + filepath.Base(t.TempDir())
			j.env["CI_JOB_ID"] = "4242"
			d := "/tmp/gitlab-ci-local-file-variables-" + j.env["CI_PROJECT_PATH_SLUG"] + "-4242"
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(d) })
			return j.fileVar(t, d, "GOPROXY_SETUP_CLIENT_KEY", key)
		}, true},
		{"key in the project dir itself", func(t *testing.T, j *gitlabJob) string {
			return j.fileVar(t, j.project, "GOPROXY_SETUP_CLIENT_KEY", key)
		}, false},
		{"key in an unrelated dir", func(t *testing.T, j *gitlabJob) string {
			return j.fileVar(t, t.TempDir(), "GOPROXY_SETUP_CLIENT_KEY", key)
		}, false},
		{"file name is no variable holding its path", func(t *testing.T, j *gitlabJob) string {
			p := j.fileVar(t, j.tmp, "GOPROXY_SETUP_CLIENT_KEY", key)
			delete(j.env, "GOPROXY_SETUP_CLIENT_KEY")
			return p
		}, false},
		{"variable names another path", func(t *testing.T, j *gitlabJob) string {
			p := j.fileVar(t, j.tmp, "GOPROXY_SETUP_CLIENT_KEY", key)
			j.env["GOPROXY_SETUP_CLIENT_KEY"] = p + "x"
			return p
		}, false},
		{"not a variable name", func(t *testing.T, j *gitlabJob) string {
			return j.fileVar(t, j.tmp, "client.key", key)
		}, false},
		{"symbolic link in the job dir", func(t *testing.T, j *gitlabJob) string {
			target := filepath.Join(t.TempDir(), "other.key")
			if err := os.WriteFile(target, key, 0o644); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(j.tmp, "GOPROXY_SETUP_CLIENT_KEY")
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			j.env["GOPROXY_SETUP_CLIENT_KEY"] = p
			return p
		}, false},
		{"relative path", func(t *testing.T, j *gitlabJob) string {
			j.fileVar(t, j.tmp, "K", key)
			j.env["K"] = "K"
			return "K"
		}, false},
		{"outside a GitLab job", func(t *testing.T, j *gitlabJob) string {
			p := j.fileVar(t, j.tmp, "GOPROXY_SETUP_CLIENT_KEY", key)
			delete(j.env, "CI_PROJECT_DIR")
			return p
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			j := newGitLabJob(t)
			path := tc.setup(t, j)
			if got := IsFileVariable(path, j.getenv); got != tc.want {
				t.Errorf("IsFileVariable(%q) = %v, want %v (env %v)", path, got, tc.want, j.env)
			}
		})
	}
}

// TestGitLabKeyFiles proves the rule both ways with a real identity: a key
// handed over as a GitLab file variable (0644) loads through a private 0600
// copy that is gone after Close; the same 0644 key anywhere else still fails
// the custody check, unchanged.
func TestGitLabKeyFiles(t *testing.T) {
	t.Parallel()
	leaf := testenv.NewCA(t).Issue(t, testenv.CertSpec{Client: true})

	t.Run("file variable", func(t *testing.T) {
		t.Parallel()
		j := newGitLabJob(t)
		cert := j.fileVar(t, j.tmp, "GOPROXY_SETUP_CLIENT_CERT", leaf.CertPEM)
		key := j.fileVar(t, j.tmp, "GOPROXY_SETUP_CLIENT_KEY", leaf.KeyPEM)
		if _, err := tlsauth.LoadFiles(cert, key); !isPermErr(err) {
			t.Fatalf("LoadFiles of the file variable itself = %v, want a KeyPermissionError (the defect this rule fixes)", err)
		}
		gl := NewGitLab(GitLabConfig{Log: io.Discard, Getenv: j.getenv})
		kf, err := gl.KeyFiles(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		if !kf.Copied || kf.Key == key || kf.Cert != cert {
			t.Fatalf("KeyFiles = %+v, want a private copy of the key and the certificate as given", kf)
		}
		fi, err := os.Stat(kf.Key)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("copy mode %04o, want 0600", fi.Mode().Perm())
		}
		di, err := os.Stat(filepath.Dir(kf.Key))
		if err != nil {
			t.Fatal(err)
		}
		if di.Mode().Perm() != 0o700 {
			t.Errorf("copy dir mode %04o, want 0700", di.Mode().Perm())
		}
		if filepath.Dir(filepath.Dir(kf.Key)) != j.tmp {
			t.Errorf("copy %s is not inside the job's temp dir %s", kf.Key, j.tmp)
		}
		got, err := os.ReadFile(kf.Key)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, leaf.KeyPEM) {
			t.Errorf("copy differs from the key")
		}
		if _, err := tlsauth.LoadFiles(kf.Cert, kf.Key); err != nil {
			t.Errorf("LoadFiles of the copy: %v", err)
		}
		if err := kf.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Dir(kf.Key)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("private copy still present after Close (stat: %v)", err)
		}
		// Once the agent holds the key, the file variable goes too: the
		// key is then on disk only where the agent keeps it.
		if kf.FileVariable != key {
			t.Errorf("FileVariable = %q, want %q", kf.FileVariable, key)
		}
		if err := kf.Handed(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(key); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the key's file variable is still on disk after Handed (stat: %v)", err)
		}
		if _, err := os.Stat(cert); err != nil {
			t.Errorf("the certificate's file variable was removed: %v", err)
		}
		if err := kf.Handed(); err != nil {
			t.Errorf("a second Handed: %v, want nil (already gone)", err)
		}
	})

	t.Run("readable key elsewhere", func(t *testing.T) {
		t.Parallel()
		j := newGitLabJob(t)
		dir := t.TempDir()
		cert := j.fileVar(t, dir, "GOPROXY_SETUP_CLIENT_CERT", leaf.CertPEM)
		key := j.fileVar(t, dir, "GOPROXY_SETUP_CLIENT_KEY", leaf.KeyPEM)
		gl := NewGitLab(GitLabConfig{Log: io.Discard, Getenv: j.getenv})
		kf, err := gl.KeyFiles(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		defer kf.Close()
		if kf.Copied || kf.Key != key {
			t.Fatalf("KeyFiles = %+v, want the key as given", kf)
		}
		if err := kf.Handed(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(key); err != nil {
			t.Errorf("Handed removed a key file that is no file variable of the job: %v", err)
		}
		_, err = tlsauth.LoadFiles(kf.Cert, kf.Key)
		if !isPermErr(err) || !strings.Contains(err.Error(), "chmod 600 "+key) {
			t.Errorf("LoadFiles = %v, want the custody check's KeyPermissionError naming %s", err, key)
		}
	})
}

func isPermErr(err error) bool {
	var pe *tlsauth.KeyPermissionError
	return errors.As(err, &pe)
}

// TestGitHubKeyFiles: PEM content in the inputs becomes private files,
// masked before anything is written, removed by Close; paths stay.
func TestGitHubKeyFiles(t *testing.T) {
	t.Parallel()
	leaf := testenv.NewCA(t).Issue(t, testenv.CertSpec{Client: true})
	tmp := t.TempDir()
	getenv := fakeEnv(t, map[string]string{"RUNNER_TEMP": tmp})
	var out bytes.Buffer
	gh, err := NewGitHub(&out, getenv)
	if err != nil {
		t.Fatal(err)
	}
	kf, err := gh.KeyFiles(string(leaf.CertPEM), string(leaf.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(kf.Key, tmp+"/") || !strings.HasPrefix(kf.Cert, tmp+"/") || !kf.Copied {
		t.Fatalf("KeyFiles = %+v, want files under RUNNER_TEMP %s", kf, tmp)
	}
	if fi, err := os.Stat(kf.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, fi)
	}
	if _, err := tlsauth.LoadFiles(kf.Cert, kf.Key); err != nil {
		t.Errorf("LoadFiles: %v", err)
	}
	firstKeyLine := strings.Split(strings.TrimSpace(string(leaf.KeyPEM)), "\n")[1]
	if !strings.Contains(out.String(), "::add-mask::"+firstKeyLine) {
		t.Errorf("key content not masked line by line:\n%s", out.String())
	}
	if err := kf.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(kf.Key); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("key file still present after Close")
	}
	// Paths are used as given.
	kf, err = gh.KeyFiles("/etc/cert.pem", "/etc/key.pem")
	if err != nil || kf.Cert != "/etc/cert.pem" || kf.Key != "/etc/key.pem" || kf.Copied {
		t.Errorf("KeyFiles(paths) = %+v, %v, want the paths unchanged", kf, err)
	}
}

// TestGitLabPEMContent: PEM content in a plain variable is refused as bad
// input with advice that can be followed (a protected "file" variable, not
// masking), and the content is never echoed.
func TestGitLabPEMContent(t *testing.T) {
	t.Parallel()
	leaf := testenv.NewCA(t).Issue(t, testenv.CertSpec{Client: true})
	gl := NewGitLab(GitLabConfig{Log: io.Discard, Getenv: func(string) string { return "" }})
	_, err := gl.KeyFiles("/etc/client.crt", string(leaf.KeyPEM))
	if errkind.Of(err) != errkind.BadInput {
		t.Fatalf("KeyFiles(PEM key) = %v, want bad input", err)
	}
	for _, want := range []string{"client key: the value is PEM content, not a path", "GOPROXY_SETUP_CLIENT_KEY a \"file\" variable", "cannot mask PEM content", "Protected"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	body := strings.Split(strings.TrimSpace(string(leaf.KeyPEM)), "\n")[1]
	if strings.Contains(err.Error(), body) {
		t.Errorf("error echoes the key")
	}
	if got := gl.Redactor().String("x " + body); strings.Contains(got, body) {
		t.Errorf("the key content is not registered with the redactor")
	}
	if strings.Contains(strings.ToLower(GitLabPEMAdvice("X")), "mark it masked") || strings.Contains(GitLabPEMAdvice("X"), "\"masked\"") {
		t.Errorf("advice tells the user to mask PEM content: %s", GitLabPEMAdvice("X"))
	}
}
