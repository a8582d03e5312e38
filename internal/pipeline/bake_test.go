package pipeline

import (
	"os"
	"path/filepath"
	"testing"
)

// A commit's kiln.hcl that is a link to a host file (the daemon's token) is not read:
// its content would show in the run's diagnostics, which the read-only token reads.
func TestSpecIsReadInsideTheCheckout(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "token")
	os.WriteFile(outside, []byte("admin-token"), 0o600)
	dir := t.TempDir()
	os.Symlink(outside, filepath.Join(dir, "kiln.hcl"))
	if b, err := readSpec(dir, "kiln.hcl"); err == nil {
		t.Fatalf("read %q through a link out of the checkout", b)
	}
	os.Remove(filepath.Join(dir, "kiln.hcl"))
	os.WriteFile(filepath.Join(dir, "kiln.hcl"), []byte(`image "x" { from = "scratch" }`), 0o644)
	if _, err := readSpec(dir, "kiln.hcl"); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "d"), 0o755)
	if _, err := readSpec(dir, "d"); err == nil {
		t.Error("a directory was read as the spec")
	}
}
