package bake

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/debian"
	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/spec"
)

// These tests read the real Debian archive through this machine's apt sources, with
// the .debs in the cache internal/debian's tests share; under -short they skip when
// the archive cannot be reached.

func packageCache(t *testing.T) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "kiln-test", "debian")
}

func skipUnreachable(t *testing.T, err error) {
	t.Helper()
	if testing.Short() && errors.Is(err, debian.ErrUnreachable) {
		t.Skipf("the Debian archive is unreachable and this test needs it (-short): %v", err)
	}
}

const debianSpec = `image "os" {
  from = "scratch"
  file "/etc/motd" { content = "hello\n" }
  packages {
    debian {
      suite    = "bookworm"
      packages = [%s]
    }
  }
}
`

// TestDebianPackages bakes a debian step: the lock is written on the first bake and
// used as is by the next (the step cached), the SBOM lists every package with its
// version and purl, a changed package list is refused until kiln lock resolves it.
func TestDebianPackages(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "kiln.hcl"), fmt.Sprintf(debianSpec, `"libc6"`))
	opts := Options{PackageCache: packageCache(t)}
	run, err := bakeWith(t, dir, 0, nil, opts)
	if err != nil {
		skipUnreachable(t, err)
		t.Fatal(err)
	}
	lockPath := filepath.Join(dir, LockFileName)
	lock, err := debian.ReadLock(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	set := lock.Set("os")
	if set == nil || len(set.Packages) < 3 {
		t.Fatalf("the lock has no set of os's libc6 closure: %+v", lock)
	}
	first, _ := os.ReadFile(lockPath)

	// The SBOM lists every locked package.
	res := run.result("os")
	rc, err := run.store.Blob(res.SBOM)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(rc)
	rc.Close()
	var bom struct {
		Components []struct{ Name, Version, Purl string }
	}
	if err := json.Unmarshal(raw, &bom); err != nil {
		t.Fatal(err)
	}
	have := map[string]string{}
	for _, c := range bom.Components {
		if strings.HasPrefix(c.Purl, "pkg:deb/debian/") {
			have[c.Name] = c.Version
		}
	}
	for _, p := range set.Packages {
		if have[p.Name] != p.Version {
			t.Errorf("the SBOM has %s at %q, the lock at %q", p.Name, have[p.Name], p.Version)
		}
	}

	// The layer: the packages' files and their status, below the file step's.
	layers, err := res.Image.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("%d layers: %v", len(layers), err)
	}
	inv, err := scanOS(layers[:1])
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Packages) != len(set.Packages) {
		t.Errorf("the layer's dpkg status lists %d packages, the lock %d", len(inv.Packages), len(set.Packages))
	}

	// A re-bake uses the lock and the step cache.
	again, err := bakeWith(t, dir, 0, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.result("os").Digest != res.Digest {
		t.Error("a re-bake with the lock gave another image")
	}
	if st := again.stepStates()["os/debian bookworm: libc6"]; st != StateCached {
		t.Errorf("the debian step was %s on a re-bake", st)
	}
	if b, _ := os.ReadFile(lockPath); string(b) != string(first) {
		t.Error("a re-bake rewrote the lock")
	}

	// Another package list: refused until the lock is updated.
	writeFile(t, filepath.Join(dir, "kiln.hcl"), fmt.Sprintf(debianSpec, `"libc6", "zlib1g"`))
	_, err = bakeWith(t, dir, 0, nil, opts)
	if !errors.Is(err, debian.ErrLockStale) || !strings.Contains(err.Error(), "kiln lock") {
		t.Fatalf("a bake with a stale lock: %v", err)
	}
	changes := lockPackages(t, dir, opts, false)
	if len(changes["os"]) != 1 || changes["os"][0].Name != "zlib1g" || changes["os"][0].Old != "" {
		t.Errorf("kiln lock: %+v", changes)
	}
	if _, err := bakeWith(t, dir, 0, nil, opts); err != nil {
		t.Fatalf("a bake after kiln lock: %v", err)
	}
	// -update with nothing new upstream changes nothing.
	if changes := lockPackages(t, dir, opts, true); len(changes) != 0 {
		t.Logf("kiln lock -update moved: %+v (the archive changed since)", changes)
	}
}

func lockPackages(t *testing.T, dir string, opts Options, update bool) map[string][]debian.Change {
	t.Helper()
	run, b, cfgImages := newTestBaker(t, dir, opts)
	defer run()
	changes, err := b.LockPackages(t.Context(), cfgImages, update)
	if err != nil {
		t.Fatal(err)
	}
	return changes
}

// TestDebianPythonImageRuns bakes the Python closure with a small HTTP server, loads
// it into Docker and asks it for a page.
func TestDebianPythonImageRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("bakes and runs a Python image: not under -short")
	}
	dockerClient(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "kiln.hcl"), `image "py" {
  from = "scratch"
  file "/srv/server.py" {
    content = <<-EOT
      import http.server, ssl, sqlite3
      class H(http.server.BaseHTTPRequestHandler):
          def do_GET(self):
              body = ("python %s, %d CAs\n" % (__import__("sys").version.split()[0], ssl.create_default_context().cert_store_stats()["x509_ca"])).encode()
              self.send_response(200)
              self.end_headers()
              self.wfile.write(body)
      http.server.HTTPServer(("0.0.0.0", 8000), H).serve_forever()
    EOT
  }
  packages {
    debian {
      suite    = "bookworm"
      packages = ["python3", "ca-certificates"]
    }
  }
  entrypoint = ["/usr/bin/python3", "/srv/server.py"]
}
`)
	start := time.Now()
	run, err := bakeWith(t, dir, 0, nil, Options{PackageCache: packageCache(t)})
	if err != nil {
		t.Fatal(err)
	}
	res := run.result("py")
	layers, _ := res.Image.Layers()
	size, _ := layers[0].Size()
	lock, _ := debian.ReadLock(filepath.Join(dir, LockFileName))
	t.Logf("baked %s in %v: %d Debian packages, packages layer %d bytes compressed", res.Digest, time.Since(start).Round(time.Millisecond), len(lock.Set("py").Packages), size)

	tag := fmt.Sprintf("kiln-test/python:%d", time.Now().UnixNano())
	dockerLoad(t, res.Image, tag)
	t.Cleanup(func() { exec.Command("docker", "rmi", "-f", tag).Run() })
	out, err := exec.Command("docker", "run", "-d", "--rm", "-p", "127.0.0.1::8000", tag).Output()
	if err != nil {
		t.Fatalf("docker run: %v", err)
	}
	id := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", id).Run() })
	port, err := exec.Command("docker", "port", id, "8000/tcp").Output()
	if err != nil {
		t.Fatalf("docker port: %v", err)
	}
	addr := strings.TrimSpace(strings.Split(string(port), "\n")[0])
	var body []byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			logs, _ := exec.Command("docker", "logs", id).CombinedOutput()
			t.Fatalf("the server did not answer: %v\n%s", err, logs)
		}
		time.Sleep(100 * time.Millisecond) // polling a server that starts: no event to wait on
	}
	if !strings.HasPrefix(string(body), "python 3.11") || !strings.Contains(string(body), " CAs") || strings.Contains(string(body), " 0 CAs") {
		t.Fatalf("the server answered %q", body)
	}
	t.Logf("the server answered %q", body)
}

// newTestBaker opens dir's spec and store as bakeWith does, for calls other than Bake;
// the returned func releases the store.
func newTestBaker(t *testing.T, dir string, opts Options) (func(), *Baker, []*spec.Image) {
	t.Helper()
	cfg, diags := spec.Load(filepath.Join(dir, "kiln.hcl"), spec.Options{Environ: []string{}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	store, err := imagestore.Open(filepath.Join(dir, ".kiln"))
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := store.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBaker(store, opts)
	if err != nil {
		unlock()
		t.Fatal(err)
	}
	return unlock, b, cfg.Images
}
