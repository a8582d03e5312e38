package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// previousRelease is the commit testdata/previous-release names.
func previousRelease(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/previous-release")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return line
		}
	}
	t.Fatal("testdata/previous-release names no commit")
	return ""
}

// previousKiln returns the kiln binary of the previous release, built from this
// repository's history at that commit (git archive, then go build) and cached under
// the user's cache directory (kiln-test/, keyed by commit and platform), so that only
// the first run builds it. It blocks for the build, a minute or two. A clone without
// the commit (a shallow one) fails the test, or skips it under -short.
func previousKiln(t *testing.T) (bin, commit string) {
	t.Helper()
	rev := previousRelease(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	git := func(args ...string) (string, error) {
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
		}
		return strings.TrimSpace(string(out)), nil
	}
	commit, err := git("rev-parse", "--verify", "--quiet", rev+"^{commit}")
	if err != nil {
		skipShort(t, "the previous release %s is not in this clone's history (a shallow clone?): %v", rev, err)
	}
	root, err := git("rev-parse", "--show-toplevel")
	if err != nil {
		t.Fatal(err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "kiln-test")
	bin = filepath.Join(dir, fmt.Sprintf("kiln-%s-%s-%s", commit, runtime.GOOS, runtime.GOARCH))
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o100 != 0 {
		return bin, commit
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	tree := filepath.Join(src, "tree.tar")
	// From the top: in a subdirectory, git archive writes only that subdirectory's tree.
	if _, err := git("-C", root, "archive", "--format=tar", "-o", tree, commit); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "tar", "-xf", tree, "-C", src).CombinedOutput(); err != nil {
		t.Fatalf("unpacking %s: %v: %s", commit, err, out)
	}
	// Built beside its final name and renamed: a concurrent run never sees half a binary.
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", tmp, "./cmd/kiln")
	build.Dir = src
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	start := time.Now()
	if out, err := build.CombinedOutput(); err != nil {
		os.Remove(tmp)
		t.Fatalf("building kiln at %s: %v\n%s", commit, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		os.Remove(tmp)
		t.Fatal(err)
	}
	t.Logf("built kiln %.12s in %s, cached as %s", commit, time.Since(start).Round(time.Second), bin)
	return bin, commit
}

// runBin runs the kiln binary bin in dir with extra environment variables, as run does
// for the binary under test.
func runBin(t *testing.T, bin, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
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

// okBin runs bin as runBin does and fails the test unless it succeeds.
func okBin(t *testing.T, bin, dir string, env []string, args ...string) result {
	t.Helper()
	r := runBin(t, bin, dir, env, args...)
	if r.code != 0 {
		t.Fatalf("%s %s: exit %d\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}
