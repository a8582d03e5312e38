package debian

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var layerPkgs = []testPkg{
	{name: "shell", version: "1.0-1", fields: "Source: shell-src (1.0)\n", files: []testFile{
		{name: "./bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "./bin/sh", typ: tar.TypeSymlink, mode: 0o777, link: "dash"},
		{name: "./bin/dash", typ: tar.TypeReg, mode: 0o755, body: "#!dash\n"},
		{name: "./lib/", typ: tar.TypeDir, mode: 0o755},
		{name: "./lib/libsh.so.1", typ: tar.TypeSymlink, mode: 0o777, link: "../usr/lib/libsh.so.1.0"},
		{name: "./lib64/", typ: tar.TypeDir, mode: 0o755},
		{name: "./lib64/ld.so", typ: tar.TypeSymlink, mode: 0o777, link: "/lib/ld-real.so"},
		{name: "./usr/", typ: tar.TypeDir, mode: 0o755},
		{name: "./usr/lib/", typ: tar.TypeDir, mode: 0o755},
		{name: "./usr/lib/libsh.so.1.0", typ: tar.TypeReg, mode: 0o644, body: "ELF"},
		{name: "./usr/bin/", typ: tar.TypeDir, mode: 0o755},
		// A hard link whose name sorts before its target's.
		{name: "./usr/bin/zz-tool", typ: tar.TypeReg, mode: 0o4755, body: "tool"},
		{name: "./usr/bin/aa-tool", typ: tar.TypeLink, link: "./usr/bin/zz-tool"},
		{name: "./var/mail/", typ: tar.TypeDir, mode: 0o2775, gid: 8},
		{name: "./usr/share/doc/shell/copyright", typ: tar.TypeReg, mode: 0o644, body: "GPL"},
		{name: "./usr/share/doc/shell/changelog.gz", typ: tar.TypeReg, mode: 0o644, body: "log"},
		{name: "./usr/share/man/man1/dash.1.gz", typ: tar.TypeReg, mode: 0o644, body: "man"},
	}},
	{name: "ca-certificates", version: "2025", arch: "all", files: []testFile{
		{name: "./usr/share/ca-certificates/mozilla/B.crt", typ: tar.TypeReg, mode: 0o644, body: "-----B-----\n"},
		{name: "./usr/share/ca-certificates/mozilla/A.crt", typ: tar.TypeReg, mode: 0o644, body: "-----A-----"},
		{name: "./etc/ssl/certs/", typ: tar.TypeDir, mode: 0o755},
	}},
}

func writeDebs(t *testing.T, pkgs []testPkg) []string {
	dir := t.TempDir()
	var paths []string
	for _, p := range pkgs {
		path := filepath.Join(dir, p.name+".deb")
		if err := os.WriteFile(path, buildDeb(t, p), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

func TestWriteLayer(t *testing.T) {
	paths := writeDebs(t, layerPkgs)
	mtime := time.Unix(1234567890, 0).UTC()
	var buf bytes.Buffer
	inst, err := WriteLayer(&buf, paths, LayerOptions{ModTime: mtime})
	if err != nil {
		t.Fatal(err)
	}
	wantInst := []Installed{{Name: "ca-certificates", Version: "2025", Arch: "all"}, {Name: "shell", Version: "1.0-1", Arch: "amd64", Source: "shell-src"}}
	if !reflect.DeepEqual(inst, wantInst) {
		t.Errorf("installed = %+v", inst)
	}
	hs, body := tarEntries(t, buf.Bytes())
	names := headerNames(hs)
	if !slices.IsSorted(names) {
		t.Errorf("entries are not sorted: %v", names)
	}
	byName := map[string]*tar.Header{}
	for _, h := range hs {
		byName[h.Name] = h
		if !h.ModTime.Equal(mtime) || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mtime %v, owner names %q %q", h.Name, h.ModTime, h.Uname, h.Gname)
		}
	}
	check := func(name string, typ byte, link string) *tar.Header {
		t.Helper()
		h := byName[name]
		if h == nil {
			t.Fatalf("no %s in the layer: %v", name, names)
		}
		if h.Typeflag != typ || h.Linkname != link {
			t.Errorf("%s: type %q link %q, want %q %q", name, h.Typeflag, h.Linkname, typ, link)
		}
		return h
	}
	// Merged /usr: the top-level directories are symlinks, the files moved under usr/.
	check("bin", tar.TypeSymlink, "usr/bin")
	check("sbin", tar.TypeSymlink, "usr/sbin")
	check("lib", tar.TypeSymlink, "usr/lib")
	check("lib64", tar.TypeSymlink, "usr/lib64")
	check("usr/bin/sh", tar.TypeSymlink, "dash")
	check("usr/bin/dash", tar.TypeReg, "")
	check("usr/lib/libsh.so.1", tar.TypeSymlink, "libsh.so.1.0") // was ../usr/lib/libsh.so.1.0 from /lib
	check("usr/lib64/ld.so", tar.TypeSymlink, "/lib/ld-real.so") // absolute: kept
	check("usr/lib64/", tar.TypeDir, "")
	if _, ok := byName["bin/"]; ok {
		t.Error("bin is a directory too")
	}
	// The hard link: the first by name holds the content, with the file's mode.
	if h := check("usr/bin/aa-tool", tar.TypeReg, ""); h.Mode != 0o4755 || body["usr/bin/aa-tool"] != "tool" {
		t.Errorf("aa-tool: mode %o body %q", h.Mode, body["usr/bin/aa-tool"])
	}
	check("usr/bin/zz-tool", tar.TypeLink, "usr/bin/aa-tool")
	if h := check("var/mail/", tar.TypeDir, ""); h.Mode != 0o2775 || h.Gid != 8 {
		t.Errorf("var/mail: mode %o gid %d", h.Mode, h.Gid)
	}
	// The dpkg status, one file per package.
	if s := body[StatusDir+"/shell"]; !strings.Contains(s, "Package: shell\nVersion: 1.0-1\n") {
		t.Errorf("status of shell: %q", s)
	}
	if s := body[StatusDir+"/shell.md5sums"]; !strings.Contains(s, "bin/dash") {
		t.Errorf("md5sums of shell: %q", s)
	}
	// ca-certificates' bundle, as update-ca-certificates would write it.
	if s := body["etc/ssl/certs/ca-certificates.crt"]; s != "-----A-----\n-----B-----\n" {
		t.Errorf("CA bundle: %q", s)
	}
	check("usr/share/man/man1/dash.1.gz", tar.TypeReg, "")

	// The same .debs give the same bytes, whatever order they are given in.
	var again bytes.Buffer
	if _, err := WriteLayer(&again, []string{paths[1], paths[0]}, LayerOptions{ModTime: mtime}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("the same packages gave another layer")
	}

	// NoDocs keeps the copyright files only.
	var nodocs bytes.Buffer
	if _, err := WriteLayer(&nodocs, paths, LayerOptions{ModTime: mtime, NoDocs: true}); err != nil {
		t.Fatal(err)
	}
	_, nb := tarEntries(t, nodocs.Bytes())
	for _, p := range []string{"usr/share/man/man1/dash.1.gz", "usr/share/doc/shell/changelog.gz"} {
		if _, ok := nb[p]; ok {
			t.Errorf("NoDocs kept %s", p)
		}
	}
	if _, ok := nb["usr/share/doc/shell/copyright"]; !ok {
		t.Error("NoDocs dropped the copyright file")
	}
}

func TestWriteLayerRefuses(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.deb")
	os.WriteFile(bad, []byte("!<arch>\nnot really"), 0o644)
	if _, err := WriteLayer(&bytes.Buffer{}, []string{bad}, LayerOptions{}); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("a broken .deb: %v", err)
	}
	dev := writeDebs(t, []testPkg{{name: "dev", version: "1", files: []testFile{{name: "./dev/null", typ: tar.TypeChar, mode: 0o666}}}})
	if _, err := WriteLayer(&bytes.Buffer{}, dev, LayerOptions{}); err == nil || !strings.Contains(err.Error(), "dev/null") {
		t.Errorf("a device node: %v", err)
	}
}

func TestRepositoryEndToEnd(t *testing.T) {
	now := time.Now()
	repo := newTestRepo(t, append(slices.Clone(layerPkgs), testPkg{name: "app", version: "2", fields: "Depends: shell (>= 1.0)\n"}), now.Add(-time.Hour), now.Add(time.Hour))
	ctx := context.Background()
	cache := t.TempDir()
	c, err := New(Options{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Repositories: []Repository{repo.repository()}, Arch: "amd64", Packages: []string{"app"}}
	set, err := c.Resolve(ctx, "web", req, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(set.Packages); !reflect.DeepEqual(got, []string{"app=2", "shell=1.0-1"}) {
		t.Fatalf("resolved %v", got)
	}
	paths, err := c.Download(ctx, set.Packages)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		if filepath.Base(p) != set.Packages[i].SHA256 {
			t.Errorf("%s is cached at %s, not under its SHA-256", set.Packages[i].Name, p)
		}
	}

	// With the lock and the cache, nothing is read from the repository.
	before := repo.hitCount()
	again, err := c.Resolve(ctx, "web", req, set)
	if err != nil || again != set {
		t.Fatalf("Resolve with the lock: %v", err)
	}
	if _, err := c.Download(ctx, again.Packages); err != nil {
		t.Fatal(err)
	}
	if n := repo.hitCount() - before; n != 0 {
		t.Errorf("a bake with a lock and a full cache made %d requests", n)
	}

	// A lock made for another request is refused, saying what changed.
	req2 := req
	req2.Packages = []string{"app", "ca-certificates"}
	if _, err := c.Resolve(ctx, "web", req2, set); !errors.Is(err, ErrLockStale) || !strings.Contains(err.Error(), "app, ca-certificates") {
		t.Errorf("a stale lock: %v", err)
	}
	// Update moves it and says how.
	next, changes, err := c.Update(ctx, "web", req2, set)
	if err != nil {
		t.Fatal(err)
	}
	if len(next.Packages) != 3 || !reflect.DeepEqual(changes, []Change{{Name: "ca-certificates", New: "2025"}}) {
		t.Errorf("update: %v %v", names(next.Packages), changes)
	}

	// A missing package names itself and the suite.
	req3 := req
	req3.Packages = []string{"nope"}
	if _, err := c.Resolve(ctx, "web", req3, nil); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `package "nope" is not in testing`) {
		t.Errorf("a missing package: %v", err)
	}
}

func TestTamperedFilesRefused(t *testing.T) {
	now := time.Now()
	ctx := context.Background()
	newClient := func() *Client {
		c, err := New(Options{Cache: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	repo := newTestRepo(t, layerPkgs, now.Add(-time.Hour), time.Time{})
	req := Request{Repositories: []Repository{repo.repository()}, Arch: "amd64", Packages: []string{"shell"}}

	t.Run("Release", func(t *testing.T) {
		repo.setTamper("dists/testing/InRelease", func(b []byte) []byte {
			return bytes.Replace(b, []byte("Origin: kiln"), []byte("Origin: kilm"), 1)
		})
		defer repo.setTamper("dists/testing/InRelease", nil)
		_, err := newClient().Resolve(ctx, "web", req, nil)
		if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "/dists/testing/InRelease") {
			t.Fatalf("a tampered InRelease: %v", err)
		}
	})
	t.Run("Packages", func(t *testing.T) {
		repo.setTamper("dists/testing/main/binary-amd64/Packages.gz", flipByte)
		defer repo.setTamper("dists/testing/main/binary-amd64/Packages.gz", nil)
		_, err := newClient().Resolve(ctx, "web", req, nil)
		if !errors.Is(err, ErrHashMismatch) || !strings.Contains(err.Error(), "Packages.gz") {
			t.Fatalf("a tampered Packages.gz: %v", err)
		}
	})
	t.Run("cached Packages", func(t *testing.T) {
		c := newClient()
		if _, err := c.Resolve(ctx, "web", req, nil); err != nil {
			t.Fatal(err)
		}
		alterCache(t, c)
		_, err := c.Resolve(ctx, "web", req, nil)
		if !errors.Is(err, ErrHashMismatch) || !strings.Contains(err.Error(), "remove it") {
			t.Fatalf("a tampered cached index: %v", err)
		}
	})
	set, err := newClient().Resolve(ctx, "web", req, nil)
	if err != nil {
		t.Fatal(err)
	}
	deb := strings.TrimPrefix(set.Packages[0].URL, repo.srv.URL+"/")
	t.Run("deb", func(t *testing.T) {
		repo.setTamper(deb, flipByte)
		defer repo.setTamper(deb, nil)
		c := newClient()
		_, err := c.Download(ctx, set.Packages)
		if !errors.Is(err, ErrHashMismatch) || !strings.Contains(err.Error(), "shell 1.0-1") || !strings.Contains(err.Error(), deb) {
			t.Fatalf("a tampered .deb: %v", err)
		}
		if ents, _ := os.ReadDir(filepath.Join(c.opts.Cache, "sha256")); len(ents) != 0 {
			t.Errorf("the tampered .deb was kept: %v", ents)
		}
	})
	t.Run("cached deb", func(t *testing.T) {
		c := newClient()
		if _, err := c.Download(ctx, set.Packages); err != nil {
			t.Fatal(err)
		}
		alterCache(t, c)
		_, err := c.Download(ctx, set.Packages)
		if !errors.Is(err, ErrHashMismatch) || !strings.Contains(err.Error(), "the cached file") {
			t.Fatalf("a tampered cached .deb: %v", err)
		}
	})
	t.Run("lock", func(t *testing.T) {
		// A lock whose SHA-256 is not the file's (edited by hand, or the repository's
		// file replaced) is refused as well.
		bad := slices.Clone(set.Packages)
		bad[0].SHA256 = strings.Repeat("0", 64)
		_, err := newClient().Download(ctx, bad)
		if !errors.Is(err, ErrHashMismatch) {
			t.Fatalf("a lock of another SHA-256: %v", err)
		}
	})
}

// alterCache changes one byte of every file in c's cache.
func alterCache(t *testing.T, c *Client) {
	t.Helper()
	dir := filepath.Join(c.opts.Cache, "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) == 0 {
		t.Fatalf("nothing cached: %v", err)
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, flipByte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
