package bake

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/spec"
)

const testEpoch = 1700000000

// copyTree copies the directory src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() && d.Name() == ".kiln" {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, _ := d.Info()
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// example copies examples/hello into a fresh directory and returns it.
func example(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "hello")
	copyTree(t, "../../examples/hello", dir)
	return dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

type bakeRun struct {
	results []*Result
	store   *imagestore.Store
	events  []Event
}

func (r *bakeRun) result(name string) *Result {
	for _, res := range r.results {
		if res.Name == name {
			return res
		}
	}
	return nil
}

// bake bakes every image of the spec in dir with SOURCE_DATE_EPOCH=epoch into dir/.kiln.
func bake(t *testing.T, dir string, epoch int64, vars map[string]string) (*bakeRun, error) {
	t.Helper()
	return bakeWith(t, dir, epoch, vars, Options{})
}

// bakeWith is bake with the Confine, Root and Sandbox of opts.
func bakeWith(t *testing.T, dir string, epoch int64, vars map[string]string, opts Options) (*bakeRun, error) {
	t.Helper()
	ctx := context.Background()
	cfg, diags := spec.Load(filepath.Join(dir, "kiln.hcl"), spec.Options{Vars: vars, Environ: []string{}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	store, err := imagestore.Open(filepath.Join(dir, ".kiln"))
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := store.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	env := []string{}
	if epoch >= 0 {
		env = append(env, "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10))
	}
	src, err := ReadSource(ctx, dir, env)
	if err != nil {
		t.Fatal(err)
	}
	run := &bakeRun{store: store}
	events := make(chan Event, 1000)
	opts.Source, opts.Progress = src, func(e Event) { events <- e }
	b, err := NewBaker(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	run.results, err = b.Bake(ctx, cfg.Images)
	close(events)
	for e := range events {
		run.events = append(run.events, e)
	}
	return run, err
}

func mustBake(t *testing.T, dir string, epoch int64) *bakeRun {
	t.Helper()
	run, err := bake(t, dir, epoch, nil)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// stepStates maps "image/step" to the state it finished in.
func (r *bakeRun) stepStates() map[string]State {
	out := map[string]State{}
	for _, e := range r.events {
		if e.Step != "" && e.State != StateStart {
			out[e.Image+"/"+e.Step] = e.State
		}
	}
	return out
}

func TestBakeIsReproducibleAcrossPathsAndTime(t *testing.T) {
	a := example(t)
	b := filepath.Join(t.TempDir(), "elsewhere", "deeper", "clone")
	copyTree(t, a, b)

	ra := mustBake(t, a, testEpoch)
	time.Sleep(1100 * time.Millisecond) // the wall clock moves on; the digest must not
	rb := mustBake(t, b, testEpoch)
	da, db := ra.result("hello").Digest, rb.result("hello").Digest
	if da != db {
		t.Fatalf("same inputs at two paths gave %s and %s", da, db)
	}
	// A fresh store at the first path, baked again from nothing: still the same.
	if err := os.RemoveAll(filepath.Join(a, ".kiln")); err != nil {
		t.Fatal(err)
	}
	if again := mustBake(t, a, testEpoch).result("hello").Digest; again != da {
		t.Fatalf("a cold re-bake gave %s, first bake %s", again, da)
	}

	// Another epoch is another image, with every timestamp moved to it.
	other := mustBake(t, b, testEpoch+86400).result("hello")
	if other.Digest == da {
		t.Fatal("SOURCE_DATE_EPOCH did not change the image")
	}
	checkTimestamps(t, other.Image, time.Unix(testEpoch+86400, 0), time.Unix(testEpoch+86400, 0))
}

// Without SOURCE_DATE_EPOCH an image is dated by its commit, but its layers are not: a
// commit that changes one file rebuilds one layer, and the Go build stays cached.
func TestCommitDatesTheImageNotItsLayers(t *testing.T) {
	dir := example(t)
	commit := func(msg string, when int64) {
		t.Helper()
		for _, args := range [][]string{{"add", "-A"}, {"commit", "-q", "-m", msg}} {
			cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
			date := fmt.Sprintf("@%d +0000", when)
			cmd.Env = append(os.Environ(), "GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date,
				"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("git %v: %v\n%s", args, err, out)
			}
		}
	}
	if out, err := exec.Command("git", "init", "-q", dir).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	writeFile(t, filepath.Join(dir, ".gitignore"), ".kiln/\n")
	commit("first", testEpoch)
	first := mustBake(t, dir, -1)
	checkTimestamps(t, first.result("hello").Image, time.Unix(testEpoch, 0), time.Unix(0, 0))

	spec := filepath.Join(dir, "kiln.hcl")
	b, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, spec, strings.Replace(string(b), "Hello from kiln!", "Hello again!", 1))
	commit("second", testEpoch+3600)
	second := mustBake(t, dir, -1)
	checkTimestamps(t, second.result("hello").Image, time.Unix(testEpoch+3600, 0), time.Unix(0, 0))

	states := second.stepStates()
	for step, st := range states {
		want := StateCached
		if strings.HasPrefix(step, "hello/file ") {
			want = StateBuilt
		}
		if st != want {
			t.Errorf("step %s: %s, want %s", step, st, want)
		}
	}
	l1, _ := first.result("hello").Image.Layers()
	l2, _ := second.result("hello").Image.Layers()
	same := 0
	for i := range l1 {
		d1, _ := l1[i].Digest()
		d2, _ := l2[i].Digest()
		if d1 == d2 {
			same++
		}
	}
	if same != len(l1)-1 {
		t.Errorf("%d of %d layers are shared by the two commits, want all but the file's", same, len(l1))
	}
}

// checkTimestamps asserts that img's configuration, history and annotations carry no
// time but epoch and its files none but fileTime, that layers hold no user names, and
// that tar entries are sorted.
func checkTimestamps(t *testing.T, img v1.Image, epoch, fileTime time.Time) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !cf.Created.Time.Equal(epoch) {
		t.Errorf("config created %s, want %s", cf.Created.Time, epoch)
	}
	for _, h := range cf.History {
		if !h.Created.Time.Equal(epoch) {
			t.Errorf("history %q created %s, want %s", h.CreatedBy, h.Created.Time, epoch)
		}
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Annotations[AnnotationCreated]; got != epoch.UTC().Format(time.RFC3339) {
		t.Errorf("annotation created = %q", got)
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		prev := ""
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if !h.ModTime.Equal(fileTime) {
				t.Errorf("%s: mtime %s, want %s", h.Name, h.ModTime, fileTime)
			}
			if h.Uname != "" || h.Gname != "" {
				t.Errorf("%s: owner names %q:%q leak from the build machine", h.Name, h.Uname, h.Gname)
			}
			if h.Name < prev {
				t.Errorf("tar entries not sorted: %s after %s", h.Name, prev)
			}
			prev = h.Name
		}
		rc.Close()
	}
}

func TestImageContents(t *testing.T) {
	dir := example(t)
	res := mustBake(t, dir, testEpoch).result("hello")
	if err := validate.Image(res.Image); err != nil {
		t.Fatalf("stored image is not valid: %v", err)
	}
	files := map[string]*tar.Header{}
	layers, _ := res.Image.Layers()
	if len(layers) != 3 {
		t.Fatalf("got %d layers, want one per step (3)", len(layers))
	}
	for _, l := range layers {
		rc, _ := l.Uncompressed()
		tr := tar.NewReader(rc)
		for h, err := tr.Next(); err == nil; h, err = tr.Next() {
			files[h.Name] = h
		}
		rc.Close()
	}
	for name, want := range map[string]struct {
		mode     int64
		uid, gid int
	}{
		"app/hello":              {0o755, 0, 0},
		"srv/static/index.html":  {0o644, 0, 0},
		"etc/hello/greeting.txt": {0o644, 0, 0},
		"srv/":                   {0o755, 0, 0},
		"etc/hello/":             {0o755, 0, 0},
	} {
		h := files[name]
		if h == nil {
			t.Errorf("%s missing from the image (have %v)", name, keys(files))
			continue
		}
		if h.Mode != want.mode || h.Uid != want.uid || h.Gid != want.gid {
			t.Errorf("%s: mode %o owner %d:%d, want %o %d:%d", name, h.Mode, h.Uid, h.Gid, want.mode, want.uid, want.gid)
		}
	}
	cf, _ := res.Image.ConfigFile()
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "/app/hello" {
		t.Errorf("entrypoint %q, want the go binary", got)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q", cf.Config.User)
	}
	if _, ok := cf.Config.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("exposed ports %v", cf.Config.ExposedPorts)
	}
	if !contains(cf.Config.Env, "STATIC_DIR=/srv/static") {
		t.Errorf("env %v", cf.Config.Env)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestCacheRebuildsOnlyWhatChanged(t *testing.T) {
	dir := example(t)
	first := mustBake(t, dir, testEpoch)

	again := mustBake(t, dir, testEpoch)
	if again.result("hello").Digest != first.result("hello").Digest || !again.result("hello").Cached {
		t.Fatalf("re-bake with nothing changed: digest %s (was %s), cached=%v",
			again.result("hello").Digest, first.result("hello").Digest, again.result("hello").Cached)
	}
	for step, st := range again.stepStates() {
		if st != StateCached {
			t.Errorf("%s: %s on an unchanged re-bake", step, st)
		}
	}

	// One static file changes: only the copy layer is rebuilt.
	writeFile(t, filepath.Join(dir, "static", "index.html"), "<p>changed</p>\n")
	changed := mustBake(t, dir, testEpoch)
	states := changed.stepStates()
	if states["hello/copy static -> /srv/static"] != StateBuilt || states["hello/go build ."] != StateCached ||
		states["hello/file /etc/hello/greeting.txt"] != StateCached {
		t.Errorf("after changing a static file: %v", states)
	}
	l1, _ := first.result("hello").Image.Layers()
	l2, _ := changed.result("hello").Image.Layers()
	for i := range l1 {
		d1, _ := l1[i].Digest()
		d2, _ := l2[i].Digest()
		if (d1 == d2) != (i != 1) { // layer 1 is the copy step's
			t.Errorf("layer %d: before %s, after %s", i, d1, d2)
		}
	}

	// One line of Go changes: only the binary is rebuilt.
	main := filepath.Join(dir, "main.go")
	src, _ := os.ReadFile(main)
	writeFile(t, main, strings.Replace(string(src), `greeting := "Hello from kiln!"`, `greeting := "Hi from kiln!"`, 1))
	states = mustBake(t, dir, testEpoch).stepStates()
	if states["hello/go build ."] != StateBuilt || states["hello/copy static -> /srv/static"] != StateCached {
		t.Errorf("after changing main.go: %v", states)
	}

	// A test file is not part of the binary: changing it rebuilds nothing.
	writeFile(t, filepath.Join(dir, "main_test.go"), "package main\n")
	if states := mustBake(t, dir, testEpoch).stepStates(); states["hello/go build ."] != StateCached {
		t.Errorf("after adding a test file: %v", states)
	}

	// A variable feeding ldflags is an input too.
	run, err := bake(t, dir, testEpoch, map[string]string{"version": "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	if run.stepStates()["hello/go build ."] != StateBuilt {
		t.Errorf("changing ldflags did not rebuild the binary")
	}
}

func TestGoCompileErrorNamesTheBlock(t *testing.T) {
	dir := example(t)
	good := mustBake(t, dir, testEpoch).result("hello").Digest
	writeFile(t, filepath.Join(dir, "main.go"), "package main\n\nfunc main() { undefinedThing() }\n")
	_, err := bake(t, dir, testEpoch, nil)
	var se *StepError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a StepError", err)
	}
	var be *BuildError
	if !errors.As(err, &be) || !strings.Contains(be.Output, "undefined: undefinedThing") {
		t.Fatalf("error does not carry the compiler's output: %v", err)
	}
	if se.Range.Start.Line != 17 || !strings.HasSuffix(se.Range.Filename, "kiln.hcl") {
		t.Errorf("error points at %s, want the go block (kiln.hcl line 17)", se.Range)
	}
	// The store still holds the last good image, intact.
	store, _ := imagestore.Open(filepath.Join(dir, ".kiln"))
	e, err := store.Find("hello")
	if err != nil || e.Digest != good {
		t.Fatalf("after a failed bake the store has %v, %v; want %s", e.Digest, err, good)
	}
	img, _ := store.Image(good)
	if err := validate.Image(img); err != nil {
		t.Fatal(err)
	}
}

func TestPrune(t *testing.T) {
	dir := example(t)
	old := mustBake(t, dir, testEpoch).result("hello")
	writeFile(t, filepath.Join(dir, "static", "index.html"), "<p>v2</p>\n")
	cur := mustBake(t, dir, testEpoch).result("hello")
	store, _ := imagestore.Open(filepath.Join(dir, ".kiln"))
	entries, _ := store.Entries()
	if len(entries) != 2 {
		t.Fatalf("want both bakes in the store, got %d", len(entries))
	}

	// A digest that something keeps survives.
	if res, err := store.Prune(map[v1.Hash]bool{old.Digest: true}); err != nil || len(res.Images) != 0 {
		t.Fatalf("prune with old kept removed %v (%v)", res.Images, err)
	}
	res, err := store.Prune(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 1 || res.Images[0].Digest != old.Digest || res.Blobs == 0 {
		t.Fatalf("prune removed %+v", res)
	}
	if store.HasBlob(old.Digest) {
		t.Error("old manifest blob still present")
	}
	img, err := store.Image(cur.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("current image damaged by prune: %v", err)
	}
	// The cache must not trust a pruned layer: re-baking the old content rebuilds it.
	writeFile(t, filepath.Join(dir, "static", "index.html"), "<p>A static file, copied into the image by kiln.</p>\n")
	os.WriteFile(filepath.Join(dir, "static", "index.html"), mustRead(t, "../../examples/hello/static/index.html"), 0o644)
	if got := mustBake(t, dir, testEpoch).result("hello").Digest; got != old.Digest {
		t.Errorf("re-baking the old content gave %s, want %s", got, old.Digest)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCrossPlatform(t *testing.T) {
	dir := example(t)
	spec, _ := os.ReadFile(filepath.Join(dir, "kiln.hcl"))
	writeFile(t, filepath.Join(dir, "kiln.hcl"), strings.Replace(string(spec), `from = "scratch"`, `from = "scratch"
  platform = "linux/arm64"`, 1))
	res := mustBake(t, dir, testEpoch).result("hello")
	cf, _ := res.Image.ConfigFile()
	if cf.OS != "linux" || cf.Architecture != "arm64" {
		t.Fatalf("config platform %s/%s", cf.OS, cf.Architecture)
	}
	layers, _ := res.Image.Layers()
	rc, _ := layers[0].Uncompressed() // the go step's layer
	defer rc.Close()
	tr := tar.NewReader(rc)
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		if h.Name != "app/hello" {
			continue
		}
		bin, _ := io.ReadAll(tr)
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != elf.EM_AARCH64 {
			t.Errorf("binary is for %v, want arm64", f.Machine)
		}
		return
	}
	t.Fatal("no /app/hello in the go layer")
}

// TestRelativeStateDir bakes with the store given as a relative path while the spec is
// in another directory: the Go binary must still land in the image.
func TestRelativeStateDir(t *testing.T) {
	dir := example(t)
	t.Chdir(filepath.Dir(dir))
	cfg, diags := spec.Load(filepath.Join("hello", "kiln.hcl"), spec.Options{Environ: []string{}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	store, err := imagestore.Open("state") // relative to the working directory, not the spec
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBaker(store, Options{Source: SourceInfo{Epoch: time.Unix(testEpoch, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Bake(context.Background(), cfg.Images)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := res[0].Image.Layers()
	if size, _ := layers[0].Size(); size < 100_000 {
		t.Fatalf("the go layer is %d bytes: the binary did not make it into the image", size)
	}
}
