package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/sandbox"
)

// rootCommand is the probe's command over root (a tree like an image's), with the host
// directories the test binary needs mounted on top. A system directory that is a
// symlink on the host (/lib -> usr/lib) is one in root too, as in a merged-/usr image:
// over an image's root only directories and files are mounted.
func rootCommand(t *testing.T, root string, mounts []sandbox.Mount, args ...string) *sandbox.Command {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var all []sandbox.Mount
	for _, m := range append([]sandbox.Mount{{Source: exe}}, system...) {
		info, err := os.Lstat(m.Source)
		switch {
		case err != nil:
		case info.Mode()&os.ModeSymlink != 0:
			link, _ := os.Readlink(m.Source)
			if _, err := os.Lstat(filepath.Join(root, m.Source)); err != nil {
				if err := os.Symlink(link, filepath.Join(root, m.Source)); err != nil {
					t.Fatal(err)
				}
			}
		default:
			all = append(all, m)
		}
	}
	return &sandbox.Command{
		Path:   exe,
		Args:   []string{"probe"},
		Env:    []string{"KILN_SANDBOX_PROBE=" + strings.Join(args, " "), "GORACE=atexit_sleep_ms=0"},
		Root:   root,
		Mounts: append(all, mounts...),
	}
}

func runProbe(c *sandbox.Command) (string, error) {
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err := sandbox.Run(context.Background(), c)
	return strings.TrimSpace(out.String()), err
}

func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// TestSandboxRoot runs the probe over a whole root tree, as a run step does over its
// builder image: the tree is read-only and never written (the mount points are made
// above it), writable mounts are, a symlink of the tree on a mount point's way is
// refused, and the network is the host's only when asked.
func TestSandboxRoot(t *testing.T) {
	needSandbox(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for _, d := range []string{"etc", "data"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "etc", "hello"), []byte("hi"), 0o644)
	os.Symlink("hello", filepath.Join(root, "etc", "rel"))
	os.Symlink("/etc", filepath.Join(root, "bad"))
	rootCommand(t, root, nil) // the system symlinks, before the tree is listed
	before := listTree(t, root)
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := sandbox.Own(out); err != nil {
		t.Fatal(err)
	}
	mounts := []sandbox.Mount{{Source: out, Target: "/work/out", Writable: true}}

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

	const rofs, unreachable = "read-only file system", "network is unreachable"
	for _, tc := range []struct {
		args    []string
		network bool
		fails   string // "": it succeeds; else what the failure says
	}{
		{[]string{"read", "/etc/hello"}, false, ""},
		{[]string{"read", "/etc/rel"}, false, ""},
		{[]string{"write", "/etc/x"}, false, rofs},
		{[]string{"write", "/x"}, false, rofs},
		{[]string{"write", "/data/x"}, false, rofs},
		{[]string{"write", "/tmp/x"}, false, ""},
		{[]string{"write", "/work/out/x"}, false, ""},
		{[]string{"write", "/work/y"}, false, rofs},
		{[]string{"read", filepath.Join(out, "x")}, false, "no such file"}, // the host's path is not there
		{[]string{"dial", "tcp", ln.Addr().String()}, false, unreachable},
		{[]string{"dial", "tcp", ln.Addr().String()}, true, ""},
	} {
		c := rootCommand(t, root, mounts, tc.args...)
		c.Network = tc.network
		got, err := runProbe(c)
		if errors.Is(err, sandbox.ErrUnavailable) {
			t.Fatalf("%v: no sandbox: %v", tc.args, err)
		}
		if (err == nil) != (tc.fails == "") || !strings.Contains(got, tc.fails) {
			t.Errorf("%v (network %v): %q (%v), want failure %q", tc.args, tc.network, got, err, tc.fails)
		}
	}
	if after := listTree(t, root); !slices.Equal(before, after) {
		t.Errorf("the root's tree changed:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := os.Stat(filepath.Join(out, "x")); err != nil {
		t.Errorf("the writable mount did not get the file: %v", err)
	}
	// The default mask keeps what the program writes its own; Umask 022 gives 0644.
	for _, tc := range []struct {
		umask int
		want  os.FileMode
	}{{0, 0o600}, {0o022, 0o644}} {
		c := rootCommand(t, root, mounts, "write", "/work/out/m")
		c.Umask = tc.umask
		os.Remove(filepath.Join(out, "m"))
		if got, err := runProbe(c); err != nil {
			t.Fatalf("umask %o: %s %v", tc.umask, got, err)
		}
		if info, err := os.Stat(filepath.Join(out, "m")); err != nil || info.Mode().Perm() != tc.want {
			t.Errorf("umask %o: the file is %v (%v), want %v", tc.umask, info.Mode(), err, tc.want)
		}
	}

	// A mount point through the tree's symlink /bad -> /etc is refused, not followed.
	c := rootCommand(t, root, []sandbox.Mount{{Source: out, Target: "/bad/out", Writable: true}}, "read", "/etc/hello")
	if got, err := runProbe(c); err == nil || errors.Is(err, sandbox.ErrUnavailable) || !strings.Contains(err.Error(), "/bad: is a symlink") {
		t.Errorf("a mount point through a symlink: %q, %v", got, err)
	}
	if _, err := os.Lstat("/etc/out"); err == nil {
		t.Errorf("the setup followed the tree's symlink to the host's /etc")
	}

	// LookPath finds the program by name in the sandbox's PATH.
	exe, _ := os.Executable()
	c = rootCommand(t, root, nil, "read", "/etc/hello")
	c.Path, c.LookPath = filepath.Base(exe), true
	c.Env = append(c.Env, "PATH=/nonexistent:"+filepath.Dir(exe))
	if got, err := runProbe(c); err != nil || got != "ok" {
		t.Errorf("a program found in PATH: %q, %v", got, err)
	}
	c = rootCommand(t, root, nil)
	c.Path, c.LookPath = "no-such-program", true
	if got, err := runProbe(c); err == nil || !strings.Contains(err.Error(), "not found in PATH") {
		t.Errorf("a program not in PATH: %q, %v", got, err)
	}
}
