package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// The releases built: Kubernetes (with the etcd its module requires), and kwok.
const (
	Version     = "v1.34.4"
	KwokVersion = "v0.8.0"
)

// The programs of a complete build, and kwok's stages (how its fake nodes and pods
// move through their lifecycle), copied from kwok's module.
var (
	programs = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kwok", "pause"}
	stages   = []string{"node/fast/node-initialize.yaml", "pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml", "pod/fast/pod-delete.yaml"}
)

const stageDir = "stages"

// ErrNotBuilt means the binaries of this build are not in the cache: Binaries says
// how to build them.
var ErrNotBuilt = errors.New("the Kubernetes test binaries are not built")

// moduleDir is the build module's directory, beside this file.
func moduleDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("locating the build module")
	}
	return filepath.Join(filepath.Dir(file), "build"), nil
}

// CacheDir is where this build's binaries are kept: the key is the hash of the build
// module's go.mod and go.sum, of kwok's release and of what a build holds, so a change
// of any builds anew.
func CacheDir() (string, error) {
	mod, err := moduleDir()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s %s %s %s\n", Version, KwokVersion, strings.Join(programs, ","), strings.Join(stages, ","))
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(mod, f))
		if err != nil {
			return "", fmt.Errorf("the Kubernetes build module: %w", err)
		}
		h.Write(b)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(base, "kiln-test", "kube-"+hex.EncodeToString(h.Sum(nil))[:16]), nil
}

// Binaries returns the directory of a complete build, or an error wrapping
// ErrNotBuilt that says how to build it.
func Binaries() (string, error) {
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	if !complete(dir) {
		return "", fmt.Errorf("%w in %s: run `go run ./internal/testenv/kube/cmd/kube-build` (6–8 minutes on two cores the first time)", ErrNotBuilt, dir)
	}
	return dir, nil
}

func complete(dir string) bool {
	for _, p := range programs {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			return false
		}
	}
	for _, s := range stages {
		if _, err := os.Stat(filepath.Join(dir, stageDir, filepath.Base(s))); err != nil {
			return false
		}
	}
	return true
}

// Build builds the binaries into the cache unless they are there, the go command's
// output going to log, and returns their directory.
func Build(ctx context.Context, log io.Writer) (string, error) {
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	if complete(dir) {
		return dir, nil
	}
	mod, err := moduleDir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	// Built beside its place and renamed into it: a build cut short leaves nothing
	// that looks complete.
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	minor := strings.Split(Version, ".")[1]
	ldflags := "-X k8s.io/component-base/version.gitVersion=" + Version +
		" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=" + minor
	args := []string{"build", "-trimpath", "-ldflags", ldflags, "-o", tmp + string(filepath.Separator)}
	for _, p := range programs[1:6] {
		args = append(args, "k8s.io/kubernetes/cmd/"+p)
	}
	args = append(args, "./cmd/etcd")
	if err := goCmd(ctx, mod, log, nil, args...); err != nil {
		return "", err
	}
	// The sandbox image's program, static: it runs alone in an image of its own.
	args = []string{"build", "-trimpath", "-o", filepath.Join(tmp, "pause"), "./cmd/pause"}
	if err := goCmd(ctx, mod, log, []string{"CGO_ENABLED=0"}, args...); err != nil {
		return "", err
	}
	// kwok from its own module graph (its Kubernetes libraries are newer).
	if err := goCmd(ctx, tmp, log, []string{"GOBIN=" + tmp}, "install", "sigs.k8s.io/kwok/cmd/kwok@"+KwokVersion); err != nil {
		return "", err
	}
	var out strings.Builder
	if err := goCmd(ctx, tmp, &out, nil, "mod", "download", "-json", "sigs.k8s.io/kwok@"+KwokVersion); err != nil {
		return "", err
	}
	var m struct{ Dir string }
	if err := json.Unmarshal([]byte(out.String()), &m); err != nil || m.Dir == "" {
		return "", fmt.Errorf("locating kwok's module: go mod download said %q", out.String())
	}
	if err := os.Mkdir(filepath.Join(tmp, stageDir), 0o755); err != nil {
		return "", err
	}
	for _, s := range stages {
		b, err := os.ReadFile(filepath.Join(m.Dir, "kustomize", "stage", s))
		if err != nil {
			return "", fmt.Errorf("kwok's stages: %w", err)
		}
		if err := os.WriteFile(filepath.Join(tmp, stageDir, filepath.Base(s)), b, 0o644); err != nil {
			return "", err
		}
	}
	if !complete(dir) {
		os.RemoveAll(dir) // what an interrupted or older build left
	}
	if err := os.Rename(tmp, dir); err != nil && !complete(dir) {
		return "", fmt.Errorf("keeping the build: %w", err)
	}
	return dir, nil
}

// goCmd runs the go command in dir with env added.
func goCmd(ctx context.Context, dir string, log io.Writer, env []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s (in %s): %w", strings.Join(args, " "), dir, err)
	}
	return nil
}
