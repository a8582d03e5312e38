package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/sandbox"
)

// TestMain makes the test binary both a sandbox's first process (sandbox.Init) and the
// program run in it: with KILN_SANDBOX_PROBE set it runs probe and exits.
func TestMain(m *testing.M) {
	sandbox.Init()
	if p := os.Getenv("KILN_SANDBOX_PROBE"); p != "" {
		os.Exit(probe(strings.Fields(p)))
	}
	os.Exit(m.Run())
}

// probe tries one thing and prints "ok" or the error.
func probe(args []string) int {
	var err error
	switch args[0] {
	case "read":
		_, err = os.ReadFile(args[1])
	case "write":
		err = os.WriteFile(args[1], []byte("x"), 0o644)
	case "dial":
		var c net.Conn
		if c, err = net.DialTimeout(args[1], args[2], 2*time.Second); err == nil {
			c.Close()
		}
	case "id":
		status, _ := os.ReadFile("/proc/self/status")
		var caps, nnp string
		for _, l := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
				caps = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(l, "NoNewPrivs:"); ok {
				nnp = strings.TrimSpace(v)
			}
		}
		groups, _ := os.Getgroups()
		host, _ := os.Hostname()
		fmt.Printf("uid=%d gid=%d groups=%v caps=%s nnp=%s host=%s\n", os.Getuid(), os.Getgid(), groups, caps, nnp, host)
		return 0
	}
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Println("ok")
	return 0
}

// system are the host directories the (dynamically linked, under -race) test binary
// needs to start.
var system = []sandbox.Mount{{Source: "/usr"}, {Source: "/lib"}, {Source: "/lib64"}}

// needSandbox skips the test under -short if this machine cannot make a sandbox (no
// user namespaces for an unprivileged user, or a container without the privilege to
// make namespaces); without -short it fails, as the daemon would.
func needSandbox(t *testing.T) {
	t.Helper()
	err := sandbox.Run(t.Context(), &sandbox.Command{Path: "/usr/bin/true", Args: []string{"true"}, Mounts: system})
	if errors.Is(err, sandbox.ErrUnavailable) && testing.Short() {
		t.Skipf("no sandbox on this machine: %v", err)
	} else if err != nil {
		t.Fatalf("no sandbox: %v", err)
	}
}

// inSandbox runs the test binary's probe in a sandbox with mounts.
func inSandbox(t *testing.T, mounts []sandbox.Mount, args ...string) (string, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = sandbox.Run(context.Background(), &sandbox.Command{
		Path:   exe,
		Args:   []string{"probe"},
		Env:    []string{"KILN_SANDBOX_PROBE=" + strings.Join(args, " "), "GORACE=atexit_sleep_ms=0"},
		Mounts: append(append([]sandbox.Mount{{Source: exe}}, system...), mounts...),
		Stdout: &out, Stderr: &out,
	})
	if errors.Is(err, sandbox.ErrUnavailable) {
		t.Fatalf("no sandbox: %v", err)
	}
	return strings.TrimSpace(out.String()), err
}

func TestSandboxIsolates(t *testing.T) {
	needSandbox(t)
	dir := t.TempDir()
	for _, d := range []string{".kiln/pipelines/p/checkout", ".kiln/pipelines/p/out"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	token := filepath.Join(dir, ".kiln", "token")
	os.WriteFile(token, []byte("secret"), 0o644) // readable by anyone: only the mount set keeps it out
	checkout := filepath.Join(dir, ".kiln/pipelines/p/checkout")
	os.WriteFile(filepath.Join(checkout, "main.go"), []byte("package main"), 0o644)
	out := filepath.Join(dir, ".kiln/pipelines/p/out")
	if err := sandbox.Own(out); err != nil {
		t.Fatal(err)
	}
	mounts := []sandbox.Mount{{Source: checkout}, {Source: out, Writable: true}}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"read", filepath.Join(checkout, "main.go")}, true},
		{[]string{"write", filepath.Join(out, "bin")}, true},
		{[]string{"read", token}, false},
		{[]string{"read", "/etc/passwd"}, false},
		{[]string{"write", filepath.Join(checkout, "x")}, false},
		{[]string{"write", "/usr/x"}, false},
		{[]string{"write", "/x"}, false},
		{[]string{"write", "/tmp/x"}, true},
		{[]string{"dial", "unix", "/var/run/docker.sock"}, false},
		{[]string{"dial", "tcp", ln.Addr().String()}, false},
		{[]string{"dial", "tcp", "1.1.1.1:443"}, false},
	} {
		got, err := inSandbox(t, mounts, tc.args...)
		if (err == nil) != tc.ok {
			t.Errorf("%v: %q (%v), want ok=%v", tc.args, got, err, tc.ok)
		}
	}
	// The same probes outside the sandbox succeed, so the failures above are the sandbox's.
	if c, err := net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Errorf("the listener is not reachable from the host: %v", err)
	} else {
		c.Close()
	}
	if os.Geteuid() == 0 {
		if c, err := net.Dial("unix", "/var/run/docker.sock"); err == nil {
			c.Close()
		} else {
			t.Logf("no Docker socket on this host: %v", err)
		}
		if info, err := os.Stat(filepath.Join(out, "bin")); err == nil {
			if st := info.Sys().(*syscall.Stat_t); st.Uid != sandbox.UID {
				t.Errorf("a file the sandbox wrote is owned by %d, want %d", st.Uid, sandbox.UID)
			}
		}
	}

	got, err := inSandbox(t, nil, "id")
	if err != nil {
		t.Fatal(got, err)
	}
	if want := fmt.Sprintf("uid=%d gid=%d groups=[] caps=0000000000000000 nnp=1 host=sandbox", sandbox.UID, sandbox.GID); got != want {
		t.Errorf("in the sandbox: %s\nwant %s", got, want)
	}
}

// TestSandboxUnprivileged runs TestSandboxIsolates as an ordinary user, where the
// sandbox is made in a user namespace.
func TestSandboxUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("already unprivileged")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chown(dir, 65534, 65534)
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sandbox.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^(TestSandboxIsolates|TestSandboxRoot)$", "-test.v", fmt.Sprintf("-test.short=%t", testing.Short()))
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "TMPDIR=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("as uid 65534: %v\n%s", err, out)
	}
	if bytes.Contains(out, []byte("--- SKIP")) {
		t.Skipf("as uid 65534:\n%s", out)
	}
	t.Logf("%s", out)
}

func TestRelativeProgramPath(t *testing.T) {
	err := sandbox.Run(context.Background(), &sandbox.Command{Path: "go", Args: []string{"go"}, Stdout: io.Discard})
	if err == nil || errors.Is(err, sandbox.ErrUnavailable) {
		t.Fatalf("a relative program path: %v", err)
	}
}

func TestContextKillsTheSandbox(t *testing.T) {
	needSandbox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := sandbox.Run(ctx, &sandbox.Command{Path: "/usr/bin/sleep", Args: []string{"sleep", "30"}, Mounts: system})
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("sleep in a cancelled sandbox: %v after %s", err, time.Since(start))
	}
}

// The daemon runs with umask 077 (its state directory is private): the sandbox it
// builds must still let the unprivileged user reach the program and its mounts.
func TestUnderPrivateUmask(t *testing.T) {
	needSandbox(t)
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "deep", "src")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main"), 0o644)
	if err := sandbox.OwnTree(dir); err != nil { // as a checkout is given to the build
		t.Fatal(err)
	}
	if out, err := inSandbox(t, []sandbox.Mount{{Source: dir}}, "read", filepath.Join(dir, "main.go")); err != nil || out != "ok" {
		t.Fatalf("under umask 077 the sandboxed program cannot run or read its mount: %v: %s", err, out)
	}
}
