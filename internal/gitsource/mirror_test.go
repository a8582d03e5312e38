package gitsource

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// commitFile commits content as name on the work tree's current branch.
func commitFile(t *testing.T, repo *git.Repository, dir, name, content, msg string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Add(name); err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "a", Email: "a@example.com", When: time.Unix(1.7e9, 0)}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// Fetch clones the branch the first time and fetches it afterwards: the head moves
// with the source, an earlier commit is found by a short hash, and one that is not in
// the source is an error. Checkout writes the commit's files, not the head's.
func TestMirrorFetchAndCheckout(t *testing.T) {
	src := t.TempDir()
	repo, err := git.PlainInitWithOptions(src, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")}})
	if err != nil {
		t.Fatal(err)
	}
	first := commitFile(t, repo, src, "a.txt", "one\n", "first\n\nwith a body")
	m := New(filepath.Join(t.TempDir(), "mirror"), src, "main")
	c, err := m.Fetch(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Hash != first || c.Subject != "first" || !c.When.Equal(time.Unix(1.7e9, 0)) {
		t.Errorf("head = %+v, want %s, subject \"first\"", c, first)
	}
	second := commitFile(t, repo, src, "a.txt", "two\n", "second")
	if c, err = m.Fetch(t.Context(), ""); err != nil || c.Hash != second {
		t.Errorf("head after a commit = %+v, %v; want %s", c, err, second)
	}
	if c, err = m.Fetch(t.Context(), first[:12]); err != nil || c.Hash != first {
		t.Errorf("commit %s = %+v, %v", first[:12], c, err)
	}
	if _, err = m.Fetch(t.Context(), strings.Repeat("0", 40)); err == nil || !strings.Contains(err.Error(), "is not in") {
		t.Errorf("an unknown commit = %v, want it not found", err)
	}
	dir := t.TempDir()
	if _, err := m.Checkout(first, dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a.txt")); err != nil || string(b) != "one\n" {
		t.Errorf("checked out a.txt = %q, %v; want the first commit's", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".git")); !os.IsNotExist(err) {
		t.Errorf("the checkout has a .git: %v", err)
	}
	if BranchRef("main") != "refs/heads/main" {
		t.Errorf("BranchRef(main) = %s", BranchRef("main"))
	}
}
