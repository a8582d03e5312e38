package engine

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage"

	"github.com/kiln-build/kiln/internal/api"
)

// mirrorWith makes a pipeline's mirror holding one commit of the tree built by entries,
// written object by object as `git mktree` would (no checks), and returns the engine,
// the pipeline and the commit.
func mirrorWith(t *testing.T, build func(s storage.Storer) plumbing.Hash) (*Engine, api.Pipeline, string) {
	t.Helper()
	state := t.TempDir()
	def := api.Pipeline{Name: "p", Branch: "main"}
	repo, err := git.PlainInit(filepath.Join(state, "pipelines", def.Name, "mirror"), true)
	if err != nil {
		t.Fatal(err)
	}
	tree := build(repo.Storer)
	sig := object.Signature{Name: "a", Email: "a@example.com", When: time.Unix(1e9, 0)}
	c := &object.Commit{Author: sig, Committer: sig, Message: "crafted", TreeHash: tree}
	return &Engine{opts: Options{StateDir: state}}, def, putObject(t, repo.Storer, c).String()
}

func putObject(t *testing.T, s storage.Storer, o interface {
	Encode(plumbing.EncodedObject) error
}) plumbing.Hash {
	t.Helper()
	obj := s.NewEncodedObject()
	if err := o.Encode(obj); err != nil {
		t.Fatal(err)
	}
	h, err := s.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func blob(t *testing.T, s storage.Storer, content string) plumbing.Hash {
	t.Helper()
	obj := s.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	w, _ := obj.Writer()
	w.Write([]byte(content))
	w.Close()
	h, err := s.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A tree with a link and a directory of the same name (accepted by `git mktree`, and
// by go-git, which does not fsck) must not write through the link to outside the
// checkout.
func TestCheckoutRefusesLinkAndDirectoryOfOneName(t *testing.T) {
	outside := t.TempDir()
	e, def, commit := mirrorWith(t, func(s storage.Storer) plumbing.Hash {
		inner := putObject(t, s, &object.Tree{Entries: []object.TreeEntry{
			{Name: "pwned", Mode: filemode.Regular, Hash: blob(t, s, "written outside\n")},
		}})
		return putObject(t, s, &object.Tree{Entries: []object.TreeEntry{
			{Name: "a", Mode: filemode.Symlink, Hash: blob(t, s, outside)},
			{Name: "a", Mode: filemode.Dir, Hash: inner},
			{Name: "kiln.hcl", Mode: filemode.Regular, Hash: blob(t, s, "")},
		}})
	})
	dir := t.TempDir()
	_, err := e.checkout(def, commit, dir)
	if _, statErr := os.Stat(filepath.Join(outside, "pwned")); statErr == nil {
		t.Fatal("the checkout wrote a file outside its directory")
	}
	if !errors.Is(err, ErrUnsafeTree) {
		t.Fatalf("checkout = %v, want ErrUnsafeTree", err)
	}
}

// Names git's fsck refuses are refused, and a link out of the checkout is written as
// a link, never followed.
func TestCheckoutEntryNames(t *testing.T) {
	for _, name := range []string{"..", ".", ".git", ".GIT", "a/b", ""} {
		e, def, commit := mirrorWith(t, func(s storage.Storer) plumbing.Hash {
			return putObject(t, s, &object.Tree{Entries: []object.TreeEntry{
				{Name: name, Mode: filemode.Regular, Hash: blob(t, s, "x")},
			}})
		})
		_, err := e.checkout(def, commit, t.TempDir())
		if name == "" && err != nil {
			continue // go-git refuses to read such a tree at all
		}
		if !errors.Is(err, ErrUnsafeTree) {
			t.Errorf("entry %q: checkout = %v, want ErrUnsafeTree", name, err)
		}
	}

	outside := t.TempDir()
	e, def, commit := mirrorWith(t, func(s storage.Storer) plumbing.Hash {
		sub := putObject(t, s, &object.Tree{Entries: []object.TreeEntry{
			{Name: "run.sh", Mode: filemode.Executable, Hash: blob(t, s, "#!/bin/sh\n")},
		}})
		return putObject(t, s, &object.Tree{Entries: []object.TreeEntry{
			{Name: "out", Mode: filemode.Symlink, Hash: blob(t, s, outside)},
			{Name: "scripts", Mode: filemode.Dir, Hash: sub},
		}})
	})
	dir := t.TempDir()
	if _, err := e.checkout(def, commit, dir); err != nil {
		t.Fatal(err)
	}
	if link, err := os.Readlink(filepath.Join(dir, "out")); err != nil || link != outside {
		t.Errorf("the link was not written as a link: %q, %v", link, err)
	}
	if info, err := os.Stat(filepath.Join(dir, "scripts", "run.sh")); err != nil || info.Mode().Perm()&0o100 == 0 {
		t.Errorf("the executable was not written executable: %v, %v", info, err)
	}
}

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
