package gitsource

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Limits on what a commit's tree may hold: a pipeline writes trees it did not choose.
const (
	maxCheckoutBytes = 2 << 30 // all files together
	maxCheckoutFiles = 200_000 // entries of every kind
)

// ErrUnsafeTree means a commit's tree cannot be written out safely: an entry's name
// would leave the checkout or collide with another, or the tree is too big.
var ErrUnsafeTree = errors.New("the commit's tree cannot be checked out safely")

// writeTree writes tree into root: directories, regular and executable files, and
// symbolic links as links (never followed here). Every write goes through root, so
// nothing lands outside it whatever the tree holds, and the tree is checked as git's
// fsck would: an entry named "", ".", "..", ".git" or with a "/" or NUL in it, or two
// entries of one name in a directory (a link and a directory both called "a", which
// `git mktree` accepts), is refused before anything of that directory is written.
// Submodules are skipped.
func writeTree(root *os.Root, tree *object.Tree) error {
	w := treeWriter{root: root}
	return w.write(tree, "")
}

type treeWriter struct {
	root         *os.Root
	files, bytes int64
}

func (w *treeWriter) write(tree *object.Tree, dir string) error {
	seen := make(map[string]bool, len(tree.Entries))
	for _, e := range tree.Entries {
		if err := checkEntryName(e.Name); err != nil {
			return fmt.Errorf("%w: %s in %q", ErrUnsafeTree, err, "/"+dir)
		}
		key := strings.ToLower(e.Name) // as git does on case-insensitive checkouts
		if seen[key] {
			return fmt.Errorf("%w: two entries named %q in %q", ErrUnsafeTree, e.Name, "/"+dir)
		}
		seen[key] = true
	}
	for _, e := range tree.Entries {
		if w.files++; w.files > maxCheckoutFiles {
			return fmt.Errorf("%w: more than %d entries", ErrUnsafeTree, maxCheckoutFiles)
		}
		name := path.Join(dir, e.Name)
		switch e.Mode {
		case filemode.Dir:
			sub, err := tree.Tree(e.Name)
			if err != nil {
				return fmt.Errorf("reading %s: %w", name, err)
			}
			if err := w.root.Mkdir(name, 0o755); err != nil {
				return err
			}
			if err := w.write(sub, name); err != nil {
				return err
			}
		case filemode.Symlink:
			f, err := tree.TreeEntryFile(&e)
			if err != nil {
				return fmt.Errorf("reading %s: %w", name, err)
			}
			if f.Size > 4096 {
				return fmt.Errorf("%w: the link %s is %d bytes long", ErrUnsafeTree, name, f.Size)
			}
			target, err := f.Contents()
			if err != nil {
				return fmt.Errorf("reading %s: %w", name, err)
			}
			if err := w.root.Symlink(target, name); err != nil {
				return err
			}
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			f, err := tree.TreeEntryFile(&e)
			if err != nil {
				return fmt.Errorf("reading %s: %w", name, err)
			}
			if w.bytes += f.Size; w.bytes > maxCheckoutBytes {
				return fmt.Errorf("%w: its files hold more than %d bytes", ErrUnsafeTree, int64(maxCheckoutBytes))
			}
			perm := os.FileMode(0o644)
			if e.Mode == filemode.Executable {
				perm = 0o755
			}
			if err := w.file(f, name, perm); err != nil {
				return err
			}
		default:
			// A submodule: not part of this tree.
		}
	}
	return nil
}

func (w *treeWriter) file(f *object.File, name string, perm os.FileMode) error {
	r, err := f.Reader()
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	defer r.Close()
	out, err := w.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, io.LimitReader(r, f.Size)); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// checkEntryName says what is wrong with a tree entry's name, if anything.
func checkEntryName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("an entry is named %q", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("the entry name %q has a slash or NUL in it", name)
	case strings.EqualFold(name, ".git"):
		return fmt.Errorf("an entry is named %q", name)
	}
	return nil
}
