package imagestore

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), ".kiln"))
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := s.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
	return s
}

// put stores a random image and records it as name's current image, with an SBOM of
// its own.
func put(t *testing.T, s *Store, name string) (v1.Descriptor, v1.Hash) {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := s.PutImage(img)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := img.Digest(); desc.Digest != want {
		t.Fatalf("PutImage gave %s, the image is %s", desc.Digest, want)
	}
	sbom, err := s.WriteBytes([]byte(`{"bomFormat":"CycloneDX","name":"` + name + `","digest":"` + desc.Digest.String() + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Record(name, desc, sbom, time.Now()); err != nil {
		t.Fatal(err)
	}
	return desc, sbom
}

func TestRecordFindEntries(t *testing.T) {
	s := open(t)
	if _, err := s.Find("web"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Find in an empty store: %v, want ErrNotFound", err)
	}
	old, _ := put(t, s, "web")
	cur, sbom := put(t, s, "web")
	other, _ := put(t, s, "worker")

	entries, err := s.Entries()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("%d entries, want 3", len(entries))
	}
	for i, want := range []struct {
		d       v1.Hash
		current bool
	}{{old.Digest, false}, {cur.Digest, true}, {other.Digest, true}} {
		if entries[i].Digest != want.d || entries[i].Current != want.current {
			t.Errorf("entry %d: %s current=%v, want %s current=%v", i, entries[i].Digest, entries[i].Current, want.d, want.current)
		}
	}
	if entries[1].SBOM != sbom || entries[1].Size <= cur.Size || entries[1].Baked.IsZero() {
		t.Errorf("entry %+v: want SBOM %s, a size beyond the manifest's, a bake time", entries[1], sbom)
	}

	for ref, want := range map[string]v1.Hash{
		"web":                               cur.Digest,
		"web@" + old.Digest.String():        old.Digest,
		"web@" + old.Digest.Hex[:8]:         old.Digest,
		old.Digest.String():                 old.Digest,
		"sha256:" + other.Digest.Hex[:12]:   other.Digest,
		other.Digest.Hex[:12]:               other.Digest,
		"worker@sha256:" + other.Digest.Hex: other.Digest,
	} {
		e, err := s.Find(ref)
		if err != nil || e.Digest != want {
			t.Errorf("Find(%q) = %s, %v; want %s", ref, e.Digest, err, want)
		}
	}
	for _, ref := range []string{"nope", "worker@" + old.Digest.String(), "abc", "0000000000"} {
		if _, err := s.Find(ref); !errors.Is(err, ErrNotFound) {
			t.Errorf("Find(%q): %v, want ErrNotFound", ref, err)
		}
	}

	// Recording an earlier image again makes it current.
	if err := s.Record("web", old, v1.Hash{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if e, err := s.Find("web"); err != nil || e.Digest != old.Digest || e.SBOM != (v1.Hash{}) {
		t.Errorf("after re-recording: Find(web) = %+v, %v; want %s without SBOM", e, err, old.Digest)
	}
	if entries, _ := s.Entries(); len(entries) != 3 {
		t.Errorf("re-recording an image listed it twice: %d entries", len(entries))
	}
}

func TestImageAndBlob(t *testing.T) {
	s := open(t)
	img, err := random.Image(1024, 3)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := s.PutImage(img)
	if err != nil {
		t.Fatal(err)
	}
	// Stored but not recorded: Image finds it, Find does not.
	got, err := s.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(got); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Find(desc.Digest.String()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Find of an unrecorded image: %v, want ErrNotFound", err)
	}
	missing := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	if _, err := s.Image(missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("Image of a missing digest: %v, want ErrNotFound", err)
	}
	if _, err := s.Blob(missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("Blob of a missing digest: %v, want ErrNotFound", err)
	}
}

func TestBlobWriter(t *testing.T) {
	s := open(t)
	w, err := s.NewBlobWriter()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "hello")
	h, n, err := w.Commit(v1.Hash{})
	if err != nil || n != 5 {
		t.Fatalf("Commit = %s, %d, %v", h, n, err)
	}
	w.Abort() // after Commit, nothing
	r, err := s.Blob(h)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != "hello" {
		t.Errorf("blob holds %q", b)
	}
	if again, err := s.WriteBytes([]byte("hello")); err != nil || again != h {
		t.Errorf("WriteBytes of the same content = %s, %v; want %s", again, err, h)
	}

	// Content of another digest than the one asked for is not stored.
	w, _ = s.NewBlobWriter()
	io.WriteString(w, "other")
	want := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("1", 64)}
	if _, _, err := w.Commit(want); err == nil || s.HasBlob(want) {
		t.Errorf("Commit of the wrong content: %v, stored %v", err, s.HasBlob(want))
	}
	// An aborted blob leaves nothing behind.
	w, _ = s.NewBlobWriter()
	io.WriteString(w, "gone")
	w.Abort()
	temps, _ := filepath.Glob(filepath.Join(s.Dir(), "blobs", "sha256", ".*.tmp"))
	if len(temps) != 0 {
		t.Errorf("temp files left: %v", temps)
	}
}

func TestPrune(t *testing.T) {
	s := open(t)
	old, oldSBOM := put(t, s, "web")
	kept, _ := put(t, s, "web")
	cur, curSBOM := put(t, s, "web")
	stray, err := s.WriteBytes([]byte("nobody uses this"))
	if err != nil {
		t.Fatal(err)
	}

	res, err := s.Prune(map[v1.Hash]bool{kept.Digest: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 1 || res.Images[0].Digest != old.Digest || res.Blobs == 0 || res.Bytes == 0 {
		t.Fatalf("Prune removed %+v, want the old image and its blobs", res)
	}
	for _, h := range []v1.Hash{old.Digest, oldSBOM, stray} {
		if s.HasBlob(h) {
			t.Errorf("blob %s survived the prune", h)
		}
	}
	for _, h := range []v1.Hash{kept.Digest, cur.Digest} {
		img, err := s.Image(h)
		if err != nil {
			t.Errorf("image %s: %v", h, err)
		} else if err := validate.Image(img); err != nil {
			t.Errorf("image %s after prune: %v", h, err)
		}
	}
	if !s.HasBlob(curSBOM) {
		t.Error("the current image's SBOM was pruned")
	}
	if res, err := s.Prune(map[v1.Hash]bool{kept.Digest: true}); err != nil || len(res.Images) != 0 || res.Blobs != 0 {
		t.Errorf("a second prune removed %+v (%v)", res, err)
	}
}

// Taking the lock removes what a killed writer left; a second taker waits.
func TestLock(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), ".kiln"))
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.NewBlobWriter() // a writer killed mid-blob
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "partial")
	os.MkdirAll(s.TempDir(), 0o700)
	os.WriteFile(filepath.Join(s.TempDir(), "build-output"), []byte("x"), 0o600)

	unlock, err := s.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	temps, _ := filepath.Glob(filepath.Join(s.Dir(), "blobs", "sha256", ".*.tmp"))
	outputs, _ := filepath.Glob(filepath.Join(s.TempDir(), "*"))
	if len(temps)+len(outputs) != 0 {
		t.Errorf("left after Lock: %v %v", temps, outputs)
	}

	// Another holder (a flock is per open file, so another Store stands for another
	// process) waits until ctx ends.
	other, _ := Open(s.StateDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := other.Lock(ctx); err == nil || !errors.Is(err, context.Canceled) {
		t.Errorf("Lock while held: %v, want it to end with ctx", err)
	}
	unlock()
	unlock2, err := other.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	unlock2()
}

// A layer holds files with their in-image modes, so the store is its owner's only; a
// store made by an older kiln (public blobs) is fixed when opened.
func TestStoreIsPrivate(t *testing.T) {
	s := open(t)
	put(t, s, "web")
	state := s.StateDir()
	checkPrivate(t, state)

	err := filepath.WalkDir(s.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return os.Chmod(p, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(state, "lock"), 0o644)
	if _, err := Open(state); err != nil {
		t.Fatal(err)
	}
	checkPrivate(t, state)
}

func checkPrivate(t *testing.T, state string) {
	t.Helper()
	for _, top := range []string{"images", "lock"} {
		filepath.WalkDir(filepath.Join(state, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				t.Error(err)
				return nil
			}
			info, _ := d.Info()
			want := filePerm
			if d.IsDir() {
				want = dirPerm
			}
			if info.Mode().Perm() != want {
				t.Errorf("%s: mode %o, want %o", p, info.Mode().Perm(), want)
			}
			return nil
		})
	}
}
