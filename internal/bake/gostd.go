package bake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/gofrs/flock"
)

// The sandboxed build's cache starts empty in every state directory, and building
// the standard library into it takes most of a minute on a small machine: the first
// run of every pipeline would. So the standard library is built once per machine and
// toolchain, by kiln itself, outside any sandbox (it is the toolchain's own code, with
// no input from a commit), into a seed cache under the user's cache directory; an
// empty sandbox cache starts as a copy of it. A copy, never links: the sandbox's user
// owns what it may write, and the seed stays out of its reach, so nothing a commit
// does reaches another project's builds. The seed holds the standard library only:
// nothing of other builds on the machine.

// seedKey names the seed of the standard library for step s's toolchain and platform.
// Nothing of the spec enters it (its env, tags or cgo flags): the seed is built as
// root, outside the sandbox, and a commit's C flags have been made to run code there.
func (s *goStep) seedKey(tc goTool) string {
	b, _ := json.Marshal(map[string]any{"go": tc.Version, "root": tc.Root, "platform": s.platform.String()})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// seedCache copies the standard library's seed into the sandbox's build cache dir if
// dir holds no entries yet, building the seed first if this machine has none. It
// reports whether it copied anything (the copies are root's, to be given to the
// sandbox's user).
func (s *goStep) seedCache(ctx context.Context, tc goTool, dir string) (bool, error) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return false, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return false, nil // no seed: the build fills its cache itself
	}
	seed := filepath.Join(base, "kiln", "go-std", s.seedKey(tc))
	if _, err := os.Stat(filepath.Join(seed, "README")); err != nil {
		if err := s.buildSeed(ctx, tc, seed); err != nil {
			return false, fmt.Errorf("building the standard library for sandboxed builds: %w", err)
		}
	}
	return true, copyFiles(seed, dir)
}

// buildSeed builds the standard library into seed (by temp dir and rename, under a
// lock, so concurrent bakes build it once).
func (s *goStep) buildSeed(ctx context.Context, tc goTool, seed string) error {
	if err := os.MkdirAll(filepath.Dir(seed), 0o700); err != nil {
		return err
	}
	lock := flock.New(seed + ".lock")
	if err := lock.Lock(); err != nil {
		return err
	}
	defer lock.Unlock()
	if _, err := os.Stat(filepath.Join(seed, "README")); err == nil {
		return nil // built meanwhile
	}
	tmp, err := os.MkdirTemp(filepath.Dir(seed), ".seed-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cache, home := filepath.Join(tmp, "cache"), filepath.Join(tmp, "home")
	for _, d := range []string{cache, home} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, filepath.Join(tc.Root, "bin", "go"), "build", "-trimpath", "std")
	cmd.Dir = home
	// The environment of a sandboxed build of a spec with no env, tags or cgo: nothing
	// the spec says reaches this build, which runs as the daemon.
	cmd.Env = []string{
		"PATH=" + filepath.Join(tc.Root, "bin") + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + home, "TMPDIR=" + home,
		"GOROOT=" + tc.Root, "GOPATH=" + filepath.Join(home, "go"), "GOCACHE=" + cache, "GOMODCACHE=" + filepath.Join(home, "mod"),
		"GOTOOLCHAIN=local", "GOENV=off", "GOWORK=off", "GOFLAGS=-mod=readonly", "GOPROXY=off",
		"CGO_ENABLED=0", "GOOS=" + s.platform.OS, "GOARCH=" + s.platform.Arch,
	}
	if s.platform.Arch == "arm" && s.platform.Variant != "" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(s.platform.Variant, "v"))
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build std: %w: %s", err, out.String())
	}
	if err := os.WriteFile(filepath.Join(cache, "README"), []byte("The standard library, built by kiln to seed its sandboxed Go builds.\n"), 0o600); err != nil {
		return err
	}
	os.RemoveAll(seed) // a half-built one of a killed bake
	return os.Rename(cache, seed)
}

// copyFiles copies the regular files and directories under src into dst.
func copyFiles(src, dst string) error {
	return filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case e.IsDir():
			return os.MkdirAll(target, 0o700)
		case !e.Type().IsRegular():
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
