package gitsource

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
)

// mirrorWith makes a mirror holding one commit of the tree built by entries, written
// object by object as `git mktree` would (no checks), and returns the mirror and the
// commit.
func mirrorWith(t *testing.T, build func(s storage.Storer) plumbing.Hash) (*Mirror, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mirror")
	repo, err := git.PlainInit(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	tree := build(repo.Storer)
	sig := object.Signature{Name: "a", Email: "a@example.com", When: time.Unix(1e9, 0)}
	c := &object.Commit{Author: sig, Committer: sig, Message: "crafted", TreeHash: tree}
	return New(dir, "", "main"), putObject(t, repo.Storer, c).String()
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
	m, commit := mirrorWith(t, func(s storage.Storer) plumbing.Hash {
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
	_, err := m.Checkout(commit, dir)
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
		m, commit := mirrorWith(t, func(s storage.Storer) plumbing.Hash {
			return putObject(t, s, &object.Tree{Entries: []object.TreeEntry{
				{Name: name, Mode: filemode.Regular, Hash: blob(t, s, "x")},
			}})
		})
		_, err := m.Checkout(commit, t.TempDir())
		if name == "" && err != nil {
			continue // go-git refuses to read such a tree at all
		}
		if !errors.Is(err, ErrUnsafeTree) {
			t.Errorf("entry %q: checkout = %v, want ErrUnsafeTree", name, err)
		}
	}

	outside := t.TempDir()
	m, commit := mirrorWith(t, func(s storage.Storer) plumbing.Hash {
		sub := putObject(t, s, &object.Tree{Entries: []object.TreeEntry{
			{Name: "run.sh", Mode: filemode.Executable, Hash: blob(t, s, "#!/bin/sh\n")},
		}})
		return putObject(t, s, &object.Tree{Entries: []object.TreeEntry{
			{Name: "out", Mode: filemode.Symlink, Hash: blob(t, s, outside)},
			{Name: "scripts", Mode: filemode.Dir, Hash: sub},
		}})
	})
	dir := t.TempDir()
	if _, err := m.Checkout(commit, dir); err != nil {
		t.Fatal(err)
	}
	if link, err := os.Readlink(filepath.Join(dir, "out")); err != nil || link != outside {
		t.Errorf("the link was not written as a link: %q, %v", link, err)
	}
	if info, err := os.Stat(filepath.Join(dir, "scripts", "run.sh")); err != nil || info.Mode().Perm()&0o100 == 0 {
		t.Errorf("the executable was not written executable: %v, %v", info, err)
	}
}
