package statedir

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// An existing state directory made readable by everyone (as older kilns made it) is
// made private, down to the SQLite WAL and the image store's blobs.
func TestPrepareFixesExistingModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".kiln")
	for _, d := range []string{dir, filepath.Join(dir, "images", "blobs", "sha256")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]os.FileMode{
		"kiln.db": 0o644, "kiln.db-wal": 0o644, "kiln.db-shm": 0o644, "project": 0o644,
		"token": 0o600, "images/blobs/sha256/abc": 0o644, "smoke.sh": 0o755,
	}
	for name, mode := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
	}
	os.Chmod(dir, 0o755)
	if err := Prepare(dir); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		info, _ := d.Info()
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: others can read it", p, info.Mode().Perm())
		}
		return nil
	})
	if info, _ := os.Stat(filepath.Join(dir, "smoke.sh")); info.Mode().Perm() != 0o700 {
		t.Errorf("an owner's execute bit was lost: %v", info.Mode().Perm())
	}
	// Files created afterwards are private as well.
	if err := os.WriteFile(filepath.Join(dir, "later"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(filepath.Join(dir, "later")); info.Mode().Perm() != 0o600 {
		t.Errorf("a file created after Prepare has mode %v, want 0600", info.Mode().Perm())
	}
}
