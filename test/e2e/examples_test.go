package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// copyExample copies examples/name to dir (made), without its state directory.
func copyExample(t *testing.T, name, dir string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-r", "../../examples/"+name, dir).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	os.RemoveAll(filepath.Join(dir, ".kiln"))
	return dir
}

// exampleDeployment is newDeployment on examples/name: its service renamed, a free
// front door, the package cache shared by the tests.
func exampleDeployment(t *testing.T, name string) *deployment {
	t.Helper()
	d := newDeployment(t)
	os.RemoveAll(d.dir)
	copyExample(t, name, d.dir)
	packageCache(t, d.dir)
	editSpec(t, d.dir, `service "`+name+`"`, `service "`+d.service+`"`)
	return d
}

// noHeals fails the test if the service's servers were found drifted or healed: a
// deployment of an example as it is must stay as it was deployed.
func noHeals(t *testing.T, d *deployment) {
	t.Helper()
	r := d.kiln(nil, "events", "-json", "--service", d.service)
	for _, line := range strings.Split(r.stdout, "\n") {
		var ev struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && (ev.Type == "drift" || ev.Type == "heal") {
			t.Errorf("%s event: %s", ev.Type, ev.Message)
		}
	}
}

// TestExamplesReproducible bakes each example on OS packages from two clones at
// different paths, one with a cold cache (nothing downloaded yet: every package
// fetched and verified) and one with a warm one, and again warm in the first: the
// same digest every time, and the committed lock left as it is. Then, without the
// lock, the first bake writes one and the next honours it byte for byte.
func TestExamplesReproducible(t *testing.T) {
	for _, name := range []string{"python", "node", "c"} {
		t.Run(name, func(t *testing.T) {
			cold := copyExample(t, name, filepath.Join(t.TempDir(), "a", name))
			warm := copyExample(t, name, filepath.Join(t.TempDir(), "b", "deeper", "clone", name))
			packageCache(t, warm)
			lock, err := os.ReadFile(filepath.Join(cold, "kiln.lock.hcl"))
			if err != nil {
				t.Fatalf("examples/%s has no kiln.lock.hcl: %v", name, err)
			}
			bake := func(dir string) string {
				t.Helper()
				r := ok(t, dir, []string{epoch}, "bake")
				return digestOf(t, r.stdout, name)
			}
			d1 := bake(cold)
			d2 := bake(warm)
			d3 := bake(cold)
			if d1 != d2 || d1 != d3 {
				t.Errorf("digests differ: cold %s, warm clone %s, warm again %s", d1, d2, d3)
			}
			for _, dir := range []string{cold, warm} {
				if after, _ := os.ReadFile(filepath.Join(dir, "kiln.lock.hcl")); !bytes.Equal(after, lock) {
					t.Errorf("the bake in %s changed the committed lock", dir)
				}
			}
			t.Logf("examples/%s: %s from a cold cache, a warm clone elsewhere and warm again", name, d1)

			// No lock: the first bake writes it, the next one uses it as it is.
			fresh := copyExample(t, name, filepath.Join(t.TempDir(), "c", name))
			os.Remove(filepath.Join(fresh, "kiln.lock.hcl"))
			packageCache(t, fresh)
			bake(fresh)
			written, err := os.ReadFile(filepath.Join(fresh, "kiln.lock.hcl"))
			if err != nil {
				t.Fatalf("the first bake wrote no lock: %v", err)
			}
			bake(fresh)
			if again, _ := os.ReadFile(filepath.Join(fresh, "kiln.lock.hcl")); !bytes.Equal(again, written) {
				t.Errorf("the second bake rewrote the lock the first one wrote")
			}
			if n := strings.Count(string(written), "package \""); n == 0 {
				t.Errorf("the written lock pins no package:\n%s", written)
			}
		})
	}
}

// TestNodeApp deploys examples/node as it is (Debian's nodejs from its packages
// step) and rolls out a new greeting under load with no failed request.
func TestNodeApp(t *testing.T) {
	d := exampleDeployment(t, "node")
	d.startDaemon("revision 1 deployed", "up")
	if body := d.get("/"); !strings.Contains(body, "Hello from Node on kiln!") || !strings.Contains(body, "version: dev") {
		t.Fatalf("front door answered %q", body)
	}
	if body := d.get("/healthz"); body != "ok\n" {
		t.Errorf("/healthz answered %q", body)
	}
	os.WriteFile(filepath.Join(d.dir, "app", "greeting.txt"), []byte("Hello again from Node!\n"), 0o644)
	l := startLoad(d.url, 8)
	r := d.kiln(nil, "apply", "-auto-approve")
	l.finish(t, "node rollout")
	if r.code != 0 || !strings.Contains(r.stdout, "revision 2 deployed") {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if body := d.get("/"); !strings.Contains(body, "Hello again from Node!") {
		t.Errorf("after the rollout the front door answers %q", body)
	}
	sbom := d.kiln(nil, "sbom", "node")
	if !strings.Contains(sbom.stdout, `"purl": "pkg:deb/debian/nodejs@`) {
		t.Errorf("the SBOM does not list nodejs:\n%.2000s", sbom.stdout)
	}
	noHeals(t, d)
}

// TestCApp deploys examples/c as it is: a C program compiled by gcc in a builder image
// of Debian packages, copied alone onto an empty base, answering through its front door;
// the served image holds no compiler (it is the binary, under 2 MB).
func TestCApp(t *testing.T) {
	d := exampleDeployment(t, "c")
	d.startDaemon("revision 1 deployed", "up")
	if body := d.get("/"); !strings.Contains(body, "Hello from C!") || !strings.Contains(body, "version: dev") {
		t.Fatalf("front door answered %q", body)
	}
	if body := d.get("/healthz"); body != "ok\n" {
		t.Errorf("/healthz answered %q", body)
	}
	imgs := d.kiln(nil, "images", "-json")
	var entries []struct {
		Name    string `json:"name"`
		Size    int64  `json:"size"`
		Current bool   `json:"current"`
	}
	if err := json.Unmarshal([]byte(imgs.stdout), &entries); err != nil {
		t.Fatalf("kiln images -json: %v\n%s", err, imgs.stdout)
	}
	served := slices.IndexFunc(entries, func(e struct {
		Name    string `json:"name"`
		Size    int64  `json:"size"`
		Current bool   `json:"current"`
	}) bool {
		return e.Name == "c" && e.Current
	})
	if served < 0 || entries[served].Size > 2<<20 {
		t.Errorf("the served image c is not the lone binary:\n%s", imgs.stdout)
	}
	// A change of the source: compiled again in the builder, rolled out under load.
	editFile(t, filepath.Join(d.dir, "src", "hello.c"), `env("GREETING", "Hello from C!")`, `env("GREETING", "Hello again from C!")`)
	l := startLoad(d.url, 8)
	r := d.kiln(nil, "apply", "-auto-approve")
	l.finish(t, "c rollout")
	if r.code != 0 || !strings.Contains(r.stdout, "revision 2 deployed") {
		t.Fatalf("apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if body := d.get("/"); !strings.Contains(body, "Hello again from C!") {
		t.Errorf("after the rollout the front door answers %q", body)
	}
	noHeals(t, d)
}
