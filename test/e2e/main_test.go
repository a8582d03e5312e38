package e2e

import (
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kiln is the binary under test, built once by TestMain.
var kiln string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		if err := pingDocker(); err != nil {
			fmt.Println("skipping the e2e tests:", err)
			os.Exit(0)
		}
	}
	dir, err := os.MkdirTemp("", "kiln-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kiln = filepath.Join(dir, "kiln")
	build := exec.Command("go", "build", "-o", kiln, "../../cmd/kiln")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building kiln:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	removeDoors("") // of projects whose tests did not remove them: their directories are gone
	// Projects whose servers a test removed behind kiln's back leave their networks.
	exec.Command("docker", "network", "prune", "-f", "--filter", "label=dev.kiln.managed=true").Run()
	os.Exit(code)
}

// pingDocker checks that the engine the tests drive, through the docker CLI as kiln
// finds it (DOCKER_HOST, else the local socket), answers.
func pingDocker() error {
	host := cmp.Or(os.Getenv("DOCKER_HOST"), "unix:///var/run/docker.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err != nil {
		return fmt.Errorf("no Docker engine at %s: %v: %s", host, err, bytes.TrimSpace(out))
	}
	return nil
}

// skipShort skips the test under -short, for what a developer's machine may lack, and
// fails it otherwise: CI has everything, and a test skipped there would hide a failure.
func skipShort(t *testing.T, format string, args ...any) {
	t.Helper()
	if testing.Short() {
		t.Skipf(format, args...)
	}
	t.Fatalf(format, args...)
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs kiln in dir with extra environment variables.
func run(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kiln, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// ok runs kiln and fails the test unless it succeeds.
func ok(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	r := run(t, dir, env, args...)
	if r.code != 0 {
		t.Fatalf("kiln %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// fails runs kiln and fails the test unless it exits with code and stderr holds every
// one of wants.
func fails(t *testing.T, dir string, env []string, code int, wants []string, args ...string) result {
	t.Helper()
	r := run(t, dir, env, args...)
	if r.code != code {
		t.Fatalf("kiln %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	for _, w := range wants {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("kiln %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, r.stderr)
		}
	}
	return r
}

// example copies examples/hello into a fresh directory.
func example(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "hello")
	cp := exec.Command("cp", "-r", "../../examples/hello", dst)
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	os.RemoveAll(filepath.Join(dst, ".kiln"))
	return dst
}

// digestOf returns the digest in a NAME@sha256:... line of bake's output.
func digestOf(t *testing.T, stdout, name string) string {
	t.Helper()
	for _, line := range strings.Split(stdout, "\n") {
		if d, found := strings.CutPrefix(line, name+"@"); found {
			return d
		}
	}
	t.Fatalf("no %s@ line in bake output:\n%s", name, stdout)
	return ""
}

func sh(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// removeDoors removes the door containers of project ("" for those of every project
// whose directory is gone).
func removeDoors(project string) {
	filter := "label=dev.kiln.door"
	if project != "" {
		filter += "=" + project
	}
	out, _ := exec.Command("docker", "ps", "-aq", "--filter", filter).Output()
	for _, id := range strings.Fields(string(out)) {
		if project == "" {
			dir, _ := exec.Command("docker", "inspect", "-f", "{{.Config.WorkingDir}}", id).Output()
			if _, err := os.Stat(strings.TrimSpace(string(dir))); err == nil {
				continue
			}
		}
		exec.Command("docker", "rm", "-f", id).Run()
	}
}
