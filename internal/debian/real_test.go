package debian

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pault.ag/go/debian/version"
)

// These tests read the real Debian archive (deb.debian.org, through this machine's apt
// sources for bookworm). What they download is kept in a cache shared by every run
// ($XDG_CACHE_HOME/kiln-test/debian), so a rerun downloads the InRelease files only.
// Under -short, a test that needs the network skips when the archive is unreachable;
// otherwise that is a failure.

func sharedCache(t testing.TB) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	p := filepath.Join(dir, "kiln-test", "debian")
	if err := os.MkdirAll(p, 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

// bookworm is the repositories of Debian 12: the machine's apt sources for it, else
// deb.debian.org's.
func bookworm(t testing.TB) []Repository {
	all, err := SystemRepositories("/")
	if err != nil {
		t.Fatal(err)
	}
	if rs := RepositoriesFor(all, "bookworm"); len(rs) > 0 {
		return rs
	}
	return []Repository{
		{URI: "http://deb.debian.org/debian", Suite: "bookworm"},
		{URI: "http://deb.debian.org/debian", Suite: "bookworm-updates"},
		{URI: "http://deb.debian.org/debian-security", Suite: "bookworm-security"},
	}
}

var realIndexOnce struct {
	sync.Once
	ix  *Index
	err error
}

// realIndex is bookworm's index for amd64, read once per test binary.
func realIndex(t *testing.T) (*Client, *Index) {
	t.Helper()
	c, err := New(Options{Cache: sharedCache(t)})
	if err != nil {
		t.Fatal(err)
	}
	realIndexOnce.Do(func() {
		realIndexOnce.ix, realIndexOnce.err = c.Index(context.Background(), bookworm(t), "amd64")
	})
	if err := realIndexOnce.err; err != nil {
		skipOffline(t, err)
		t.Fatal(err)
	}
	return c, realIndexOnce.ix
}

func skipOffline(t *testing.T, err error) {
	t.Helper()
	if testing.Short() && errors.Is(err, ErrUnreachable) {
		t.Skipf("the Debian archive is unreachable and this test needs it (-short): %v", err)
	}
}

// smallSet is a package set quick to install: the C library's closure. pythonSet is
// the Python one the layer is proven with.
var (
	smallSet  = []string{"libc6"}
	pythonSet = []string{"ca-certificates", "python3"}
)

func TestRealResolve(t *testing.T) {
	_, ix := realIndex(t)
	pkgs, err := ix.Resolve(pythonSet)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("python3 + ca-certificates: %d packages, %d bytes of .debs (index of %d package versions)", len(pkgs), totalSize(pkgs), ix.Len())
	have := map[string]Package{}
	suites := map[string]bool{}
	for _, p := range pkgs {
		have[p.Name] = p
		suites[p.Suite] = true
		// The highest version of the suites wins.
		for _, cd := range ix.byName[p.Name] {
			v, _ := version.Parse(p.Version)
			if version.Compare(cd.ver, v) > 0 {
				t.Errorf("%s %s chosen, but %s has %s", p.Name, p.Version, cd.Suite, cd.Version)
			}
		}
	}
	for _, n := range []string{"python3", "python3.11", "python3.11-minimal", "libpython3.11-stdlib", "libc6", "libssl3", "ca-certificates", "openssl"} {
		if _, ok := have[n]; !ok {
			t.Errorf("%s is not in the closure", n)
		}
	}
	// Essential packages that nothing asks for stay out.
	for _, n := range []string{"bash", "coreutils", "base-files", "util-linux", "apt"} {
		if _, ok := have[n]; ok {
			t.Errorf("%s was pulled in", n)
		}
	}
	if !suites["bookworm"] || !suites["bookworm-security"] {
		t.Logf("suites chosen from: %v (a security update of the closure is expected)", suites)
	}
	if !slices.IsSortedFunc(pkgs, func(a, b Package) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("not sorted by name")
	}
	again, err := ix.Resolve([]string{"python3", "ca-certificates", "python3"})
	if err != nil || !slices.Equal(again, pkgs) {
		t.Errorf("a second resolution differs: %v", err)
	}
}

func TestRealMissingPackage(t *testing.T) {
	_, ix := realIndex(t)
	_, err := ix.Resolve([]string{"python3", "kiln-no-such-package"})
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("error %v is not a NotFoundError", err)
	}
	for _, s := range []string{`"kiln-no-such-package"`, "bookworm, bookworm-updates, bookworm-security", "amd64"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %s", err, s)
		}
	}
}

// TestRealRelease checks the real InRelease files with the real archive keyring, and
// that an altered one, or one past its Valid-Until, is refused.
func TestRealRelease(t *testing.T) {
	c, err := New(Options{Cache: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, r := range bookworm(t) {
		data, err := c.get(ctx, r.distURL("InRelease"), maxReleaseBytes)
		if err != nil {
			skipOffline(t, err)
			t.Fatal(err)
		}
		keys, err := readKeyring(r.keyring())
		if err != nil {
			t.Fatal(err)
		}
		rel, err := verifyRelease(data, keys, r, time.Now())
		if err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		t.Logf("%s: dated %s, signed by %s, %d files", r, rel.date.Format(time.RFC3339), rel.signer, len(rel.files))
		altered := bytes.Replace(data, []byte("main/binary-amd64/Packages.xz"), []byte("main/binary-amd64/Packages.xy"), 1)
		if bytes.Equal(altered, data) {
			t.Fatalf("%s lists no main/binary-amd64/Packages.xz", r)
		}
		if _, err := verifyRelease(altered, keys, r, time.Now()); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s altered: %v", r, err)
		}
		if !rel.validUntil.IsZero() {
			if _, err := verifyRelease(data, keys, r, rel.validUntil.Add(time.Minute)); !errors.Is(err, ErrStale) {
				t.Errorf("%s past Valid-Until: %v", r, err)
			}
		}
	}
}

// realLayer downloads names' closure into the cache of c and writes its layer.
func realLayer(t *testing.T, c *Client, ix *Index, names []string, opts LayerOptions) ([]byte, []Installed) {
	t.Helper()
	pkgs, err := ix.Resolve(names)
	if err != nil {
		t.Fatal(err)
	}
	paths, err := c.Download(context.Background(), pkgs)
	if err != nil {
		skipOffline(t, err)
		t.Fatal(err)
	}
	var buf bytes.Buffer
	inst, err := WriteLayer(&buf, paths, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(inst) != len(pkgs) {
		t.Fatalf("%d packages installed of %d", len(inst), len(pkgs))
	}
	return buf.Bytes(), inst
}

// TestRealLayerDeterministic installs the same packages from two caches, one filled
// now: the layers are the same bytes.
func TestRealLayerDeterministic(t *testing.T) {
	shared, ix := realIndex(t)
	set := pythonSet
	if testing.Short() {
		set = smallSet
	}
	fresh, err := New(Options{Cache: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	opts := LayerOptions{ModTime: time.Unix(0, 0)}
	start := time.Now()
	a, inst := realLayer(t, shared, ix, set, opts)
	took := time.Since(start)
	b, _ := realLayer(t, fresh, ix, set, opts)
	da, db := sha256.Sum256(a), sha256.Sum256(b)
	if da != db {
		t.Fatalf("two installs of %v differ: sha256:%x and sha256:%x", set, da, db)
	}
	t.Logf("%v: %d packages, layer of %d bytes, sha256:%x, written in %v from the cache", set, len(inst), len(a), da, took.Round(time.Millisecond))
	hs, body := tarEntries(t, a)
	var status int
	for _, h := range hs {
		if strings.HasPrefix(h.Name, StatusDir+"/") && h.Typeflag == tar.TypeReg && !strings.HasSuffix(h.Name, ".md5sums") {
			status++
		}
	}
	if status != len(inst) {
		t.Errorf("%d status files for %d packages", status, len(inst))
	}
	if !strings.Contains(body[StatusDir+"/libc6"], "Package: libc6\n") {
		t.Error("no status of libc6")
	}
}

// TestRealPythonRuns proves the layer: extracted, its python3 runs (in a chroot),
// imports the standard library's TLS and finds the CA bundle.
func TestRealPythonRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("installs Python (about 45 packages): not under -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	c, ix := realIndex(t)
	layer, inst := realLayer(t, c, ix, pythonSet, LayerOptions{ModTime: time.Unix(0, 0), NoDocs: true})
	root := t.TempDir()
	cmd := exec.Command("tar", "-x", "-C", root)
	cmd.Stdin = bytes.NewReader(layer)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v: %s", err, out)
	}
	out, err := exec.Command("chroot", root, "/usr/bin/python3", "-c",
		"import ssl, sqlite3, json, http.server; print(ssl.create_default_context().cert_store_stats()['x509_ca'] > 100)").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "True" {
		t.Fatalf("python3 in the layer: %v: %s", err, out)
	}
	t.Logf("python3 runs from a layer of %d packages, %d bytes (docs left out)", len(inst), len(layer))
}

func totalSize(pkgs []Package) int64 {
	var n int64
	for _, p := range pkgs {
		n += p.Size
	}
	return n
}
