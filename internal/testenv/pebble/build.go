package pebble

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Version is the Pebble release built and run; its binaries are kept in
// $XDG_CACHE_HOME/kiln-test/pebble-<Version>/ (~/.cache when unset).
const Version = "v2.10.3"

const module = "github.com/letsencrypt/pebble/v2"

// The files of a complete build directory: the two programs, and from the module
// Pebble's certificate and key for its own HTTPS and the CA that signed them.
const (
	pebbleBin  = "pebble"
	challBin   = "pebble-challtestsrv"
	certFile   = "localhost-cert.pem"
	keyFile    = "localhost-key.pem"
	minicaFile = "pebble.minica.pem"
)

// unavailableError is a build that failed for want of something outside the test
// (the go command, the module proxy): the test skips rather than fails.
type unavailableError struct{ what, detail string }

func (e *unavailableError) Error() string {
	return "needs " + e.what + " to build Pebble " + Version + ": " + e.detail
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binaries returns the build directory of Version, building it the first time in
// this process if no earlier process has.
func binaries() (string, error) {
	buildOnce.Do(func() { buildDir, buildErr = build() })
	return buildDir, buildErr
}

func build() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", &unavailableError{"a cache directory", err.Error()}
	}
	dir := filepath.Join(base, "kiln-test", "pebble-"+Version)
	if complete(dir) {
		return dir, nil
	}
	if _, err := exec.LookPath("go"); err != nil {
		return "", &unavailableError{"the go command", err.Error()}
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	// Built beside its place and renamed into it, so that test binaries building
	// at once never see half a build.
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "pebble-"+Version+".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if _, err := goCmd(tmp, "install", module+"/cmd/pebble@"+Version, module+"/cmd/pebble-challtestsrv@"+Version); err != nil {
		return "", err
	}
	out, err := goCmd(tmp, "mod", "download", "-json", module+"@"+Version)
	if err != nil {
		return "", err
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		return "", fmt.Errorf("locating Pebble's module: go mod download said %q", out)
	}
	for src, dst := range map[string]string{
		"test/certs/localhost/cert.pem": certFile,
		"test/certs/localhost/key.pem":  keyFile,
		"test/certs/pebble.minica.pem":  minicaFile,
	} {
		b, err := os.ReadFile(filepath.Join(m.Dir, src))
		if err != nil {
			return "", fmt.Errorf("reading Pebble's module: %w", err)
		}
		if err := os.WriteFile(filepath.Join(tmp, dst), b, 0o600); err != nil {
			return "", err
		}
	}
	if err := os.Rename(tmp, dir); err != nil && !complete(dir) {
		return "", fmt.Errorf("keeping Pebble's build: %w", err)
	}
	return dir, nil
}

func complete(dir string) bool {
	for _, f := range []string{pebbleBin, challBin, certFile, keyFile, minicaFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return false
		}
	}
	return true
}

// goCmd runs the go command outside any module (in a directory of its own),
// installing into gobin. A failure to reach the module proxy is an unavailableError.
func goCmd(gobin string, args ...string) ([]byte, error) {
	work, err := os.MkdirTemp("", "kiln-pebble-build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	cmd := exec.Command("go", args...)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOWORK=off", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err == nil {
		return out, nil
	}
	msg := strings.TrimSpace(stderr.String())
	for _, sign := range []string{"dial tcp", "lookup ", "no such host", "connection refused",
		"i/o timeout", "network is unreachable", "proxyconnect", "GOPROXY", "module lookup disabled"} {
		if strings.Contains(msg, sign) {
			return nil, &unavailableError{"the Go module proxy", "go " + strings.Join(args, " ") + ": " + msg}
		}
	}
	return nil, fmt.Errorf("go %s: %v: %s", strings.Join(args, " "), err, msg)
}
