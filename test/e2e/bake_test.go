package e2e

import (
	"log"
	"net/http/httptest"

	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

const epoch = "SOURCE_DATE_EPOCH=1700000000"

// TestBakeLoadRun is the README's path: bake the example, load it into Docker, run it,
// and get an answer over HTTP.
func TestBakeLoadRun(t *testing.T) {
	dir := example(t)
	r := ok(t, dir, nil, "bake", "--load")
	digestOf(t, r.stdout, "hello")
	if !strings.Contains(r.stderr, "loaded into Docker as kiln/hello:latest") {
		t.Errorf("bake --load output:\n%s", r.stderr)
	}
	name := fmt.Sprintf("kiln-e2e-%d", time.Now().UnixNano())
	sh(t, dir, nil, "docker", "run", "-d", "--name", name, "--read-only", "--cap-drop=ALL",
		"-p", "127.0.0.1::8080", "kiln/hello:latest")
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	port := sh(t, dir, nil, "docker", "port", name, "8080/tcp")
	url := "http://" + strings.TrimSpace(strings.Split(port, "\n")[0])

	var body string
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				body = string(b)
				break
			}
		}
		if time.Now().After(deadline) {
			logs, _ := exec.Command("docker", "logs", name).CombinedOutput()
			t.Fatalf("the baked server never answered on %s: %v\n%s", url, err, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %q", body)
	}
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "Hello from kiln!") || !strings.Contains(string(b), "version: dev") {
		t.Errorf("/ = %q", b)
	}
	resp, err = http.Get(url + "/static/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "copied into the image by kiln") {
		t.Errorf("/static/ = %q", b)
	}
}

// TestReproducibleAcrossClones bakes two git clones at different paths, at different
// times, with no SOURCE_DATE_EPOCH: the commit gives the time, and the digests agree.
func TestReproducibleAcrossClones(t *testing.T) {
	src := example(t)
	git := []string{"GIT_AUTHOR_NAME=k", "GIT_AUTHOR_EMAIL=k@example.com", "GIT_COMMITTER_NAME=k",
		"GIT_COMMITTER_EMAIL=k@example.com", "GIT_AUTHOR_DATE=2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2026-01-02T03:04:05Z"}
	sh(t, src, git, "git", "init", "-q")
	sh(t, src, git, "git", "add", ".")
	sh(t, src, git, "git", "commit", "-qm", "hello")
	rev := sh(t, src, nil, "git", "rev-parse", "HEAD")

	a := filepath.Join(t.TempDir(), "a")
	b := filepath.Join(t.TempDir(), "some", "other", "path")
	sh(t, "/", nil, "git", "clone", "-q", src, a)
	da := digestOf(t, ok(t, a, nil, "bake").stdout, "hello")
	time.Sleep(1100 * time.Millisecond)
	sh(t, "/", nil, "git", "clone", "-q", src, b)
	db := digestOf(t, ok(t, b, nil, "bake").stdout, "hello")
	if da != db {
		t.Fatalf("two clones baked %s and %s", da, db)
	}

	var entries []struct {
		Digest, Revision string
		Created          time.Time
	}
	if err := json.Unmarshal([]byte(ok(t, b, nil, "images", "-json").stdout), &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Revision != rev || !entries[0].Created.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("images: %+v, want revision %s created at the commit time", entries, rev)
	}
}

// TestKilledBakeLeavesStoreIntact kills kiln bake (SIGKILL) at moments spread over a
// bake and checks after each kill that the store is whole: every image it lists is
// complete and verifies, and the next bake succeeds with the digest of a clean bake.
func TestKilledBakeLeavesStoreIntact(t *testing.T) {
	dir := example(t)
	clean := example(t)
	first := digestOf(t, ok(t, dir, []string{epoch}, "bake").stdout, "hello")

	main := filepath.Join(dir, "main.go")
	src, _ := os.ReadFile(main)
	killed := 0
	for i, delay := range []time.Duration{20, 80, 150, 250, 400, 600, 800, 1000, 1300} {
		// A new source each round, so every bake has a real go build to interrupt.
		edited := strings.Replace(string(src), `"Hello from kiln!"`, fmt.Sprintf(`"Hello, round %d!"`, i), 1)
		os.WriteFile(main, []byte(edited), 0o644)
		cmd := exec.Command(kiln, "bake")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), epoch)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay * time.Millisecond)
		if cmd.Process.Signal(syscall.SIGKILL) == nil {
			killed++
		}
		cmd.Wait()
		checkStore(t, filepath.Join(dir, ".kiln", "images"))
	}
	if killed == 0 {
		t.Fatal("no bake was killed")
	}
	// The store still serves the first image, and baking again converges.
	if r := ok(t, dir, nil, "images", "-json"); !strings.Contains(r.stdout, first) {
		t.Errorf("the first image is gone after the kills:\n%s", r.stdout)
	}
	os.WriteFile(main, src, 0o644)
	if got := digestOf(t, ok(t, dir, []string{epoch}, "bake").stdout, "hello"); got != first {
		t.Errorf("after the kills the original source bakes to %s, want %s", got, first)
	}
	os.WriteFile(filepath.Join(clean, "main.go"), []byte(strings.Replace(string(src), `"Hello from kiln!"`, `"Hello, round 8!"`, 1)), 0o644)
	os.WriteFile(main, []byte(strings.Replace(string(src), `"Hello from kiln!"`, `"Hello, round 8!"`, 1)), 0o644)
	want := digestOf(t, ok(t, clean, []string{epoch}, "bake").stdout, "hello")
	if got := digestOf(t, ok(t, dir, []string{epoch}, "bake").stdout, "hello"); got != want {
		t.Errorf("after the kills a bake gives %s, a clean store %s", got, want)
	}
	checkStore(t, filepath.Join(dir, ".kiln", "images"))
}

// checkStore opens the store as a plain OCI layout and validates every image in it,
// reading every blob.
func checkStore(t *testing.T, dir string) {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("store unreadable: %v", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatalf("store index corrupt: %v", err)
	}
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatalf("image %s: %v", d.Digest, err)
		}
		if err := validate.Image(img); err != nil {
			t.Fatalf("image %s in the store is broken: %v", d.Digest, err)
		}
	}
}

// TestBakePush pushes the example by digest to a registry the test starts (the real
// distribution protocol) and pulls it back.
func TestBakePush(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	repo := strings.TrimPrefix(srv.URL, "http://") + "/team"
	dir := example(t)
	r := ok(t, dir, nil, "bake", "--push", repo)
	digest := digestOf(t, r.stdout, "hello")
	ref := repo + "/hello@" + digest
	if !strings.Contains(r.stderr, "pushed "+ref) {
		t.Errorf("bake --push output:\n%s", r.stderr)
	}
	parsed, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(parsed)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("pulled image: %v", err)
	}
}
