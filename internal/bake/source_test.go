package bake

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/imagestore"
)

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestDirtyTreeIsMarked: an image baked from a work tree that is not its commit (a
// tracked file changed, or an untracked or ignored file that a step reads) records the
// revision as <commit>-dirty, in its annotations, labels, history and SBOM. Untracked
// files that no step reads leave it clean.
func TestDirtyTreeIsMarked(t *testing.T) {
	dir := example(t)
	git(t, dir, "init", "-q")
	writeFile(t, filepath.Join(dir, ".gitignore"), ".kiln/\n*.draft\n")
	git(t, dir, "add", "-A")
	git(t, dir, "commit", "-qm", "first")
	sha := git(t, dir, "rev-parse", "HEAD")

	check := func(what, want string) {
		t.Helper()
		r := mustBake(t, dir, testEpoch).result("hello")
		if r.Revision != want {
			t.Errorf("%s: result revision %q, want %q", what, r.Revision, want)
		}
		m, _ := r.Image.Manifest()
		cf, _ := r.Image.ConfigFile()
		if got := m.Annotations[AnnotationRevision]; got != want {
			t.Errorf("%s: annotation %q, want %q", what, got, want)
		}
		if got := cf.Config.Labels[AnnotationRevision]; got != want {
			t.Errorf("%s: label %q, want %q", what, got, want)
		}
		for _, h := range cf.History {
			if h.Comment != "revision "+want {
				t.Errorf("%s: history %q has comment %q", what, h.CreatedBy, h.Comment)
			}
		}
		store, _ := imagestore.Open(filepath.Join(dir, ".kiln"))
		sbom := readBlob(t, store, r.SBOM)
		if !bytes.Contains(sbom, []byte(`"value": "`+want+`"`)) {
			t.Errorf("%s: the SBOM does not name revision %s:\n%s", what, want, sbom)
		}
	}
	check("clean", sha)

	writeFile(t, filepath.Join(dir, "notes.txt"), "not read by any step\n")
	check("an untracked file no step reads", sha)

	writeFile(t, filepath.Join(dir, "static", "index.html"), "<p>changed</p>\n")
	check("a tracked file changed", sha+DirtySuffix)
	git(t, dir, "checkout", "--", "static/index.html")

	writeFile(t, filepath.Join(dir, "static", "new.html"), "<p>new</p>\n")
	check("an untracked file copied", sha+DirtySuffix)
	os.Remove(filepath.Join(dir, "static", "new.html"))

	writeFile(t, filepath.Join(dir, "static", "page.draft"), "ignored, but copied\n")
	check("an ignored file copied", sha+DirtySuffix)
	os.Remove(filepath.Join(dir, "static", "page.draft"))

	writeFile(t, filepath.Join(dir, "helper.go"), "package main\n")
	check("an untracked Go source", sha+DirtySuffix)
	os.Remove(filepath.Join(dir, "helper.go"))

	check("clean again", sha)
}
