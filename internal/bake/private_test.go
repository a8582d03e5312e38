package bake

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/internal/imagestore"
)

// A layer holds files with their in-image modes; neither the store nor bake's step cache
// may make them readable by every user of the host.
func TestBakeIsPrivate(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "kiln.hcl"), `image "a" {
  from = "scratch"
  file "/etc/secret" {
    content = "s3cret\n"
    mode    = "0600"
  }
}
`)
	mustBake(t, dir, testEpoch)
	state := filepath.Join(dir, ".kiln")
	checkPrivate(t, state)

	// A state directory made by an older kiln (public blobs and cache entries) is fixed
	// when the store is opened and a bake starts.
	for _, top := range []string{"images", "cache"} {
		err := filepath.WalkDir(filepath.Join(state, top), func(p string, d fs.DirEntry, err error) error {
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
	}
	os.Chmod(filepath.Join(state, "lock"), 0o644)
	store, err := imagestore.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewBaker(store, Options{}); err != nil {
		t.Fatal(err)
	}
	checkPrivate(t, state)
	if info, err := os.Stat(filepath.Join(state, "cache")); err != nil {
		t.Error(err)
	} else if info.Mode().Perm() != dirPerm {
		t.Errorf("cache: mode %o, want %o", info.Mode().Perm(), dirPerm)
	}
}

func checkPrivate(t *testing.T, state string) {
	t.Helper()
	for _, top := range []string{"images", "cache/layers", "lock"} {
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
