package bake

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// ErrOutside means a confined bake was asked to read a path outside its root.
var ErrOutside = errors.New("outside the directory the bake is confined to")

// hostFiles opens the paths a spec names. Unconfined (root nil) it is the host's
// filesystem, as a bake of one's own spec wants. Confined, every path is opened through
// an os.Root at dir: absolute paths elsewhere, ".." out of dir and symlinks (intermediate
// or final) that lead out of dir are errors, so a commit cannot bake host files into an
// image. Paths in and out are host paths either way.
type hostFiles struct {
	dir   string
	root  *os.Root
	reads *readSet // the files read through it, if recording
}

// readSet is the host paths of the files a bake read, so that an image read from an
// untracked file is marked dirty. Safe for concurrent use.
type readSet struct {
	mu    sync.Mutex
	paths map[string]bool
}

// recording returns h, noting every file read through it in the returned set.
func (h *hostFiles) recording() (*hostFiles, *readSet) {
	rs := &readSet{paths: map[string]bool{}}
	c := *h
	c.reads = rs
	return &c, rs
}

func (h *hostFiles) note(p string) {
	if h.reads == nil {
		return
	}
	h.reads.mu.Lock()
	h.reads.paths[filepath.Clean(p)] = true
	h.reads.mu.Unlock()
}

// list is the paths read, sorted.
func (rs *readSet) list() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return slices.Sorted(maps.Keys(rs.paths))
}

func openHostFiles(dir string, confine bool) (*hostFiles, error) {
	if !confine {
		return &hostFiles{}, nil
	}
	if dir == "" {
		return nil, errors.New("a confined bake needs Options.Root, the directory it may read")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("opening the bake's root: %w", err)
	}
	return &hostFiles{dir: dir, root: r}, nil
}

func (h *hostFiles) close() {
	if h.root != nil {
		h.root.Close()
	}
}

func (h *hostFiles) confined() bool { return h.root != nil }

// rel is p relative to the root, in the slash form os.Root.FS takes.
func (h *hostFiles) rel(p string) (string, error) {
	r, err := filepath.Rel(h.dir, p)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) || filepath.IsAbs(r) {
		return "", fmt.Errorf("%s: %w %s", p, ErrOutside, h.dir)
	}
	return filepath.ToSlash(r), nil
}

// escaped turns os.Root's refusal of a path that leads out of the root (through a
// symbolic link) into ErrOutside, which says what the rule is.
func (h *hostFiles) escaped(p string, err error) error {
	if err != nil && strings.Contains(err.Error(), "path escapes from parent") {
		return fmt.Errorf("%s: a symbolic link on the way leads %w %s", p, ErrOutside, h.dir)
	}
	return err
}

// inside reports whether p is lexically inside the root (always, unconfined).
func (h *hostFiles) inside(p string) bool {
	_, err := h.rel(p)
	return !h.confined() || err == nil
}

func (h *hostFiles) lstat(p string) (fs.FileInfo, error) {
	if !h.confined() {
		return os.Lstat(p)
	}
	r, err := h.rel(p)
	if err != nil {
		return nil, err
	}
	v, err := h.root.Lstat(r)
	return v, h.escaped(p, err)
}

func (h *hostFiles) stat(p string) (fs.FileInfo, error) {
	if !h.confined() {
		return os.Stat(p)
	}
	r, err := h.rel(p)
	if err != nil {
		return nil, err
	}
	v, err := h.root.Stat(r)
	return v, h.escaped(p, err)
}

func (h *hostFiles) open(p string) (*os.File, error) {
	h.note(p)
	if !h.confined() {
		return os.Open(p)
	}
	r, err := h.rel(p)
	if err != nil {
		return nil, err
	}
	v, err := h.root.Open(r)
	return v, h.escaped(p, err)
}

func (h *hostFiles) readFile(p string) ([]byte, error) {
	h.note(p)
	if !h.confined() {
		return os.ReadFile(p)
	}
	r, err := h.rel(p)
	if err != nil {
		return nil, err
	}
	v, err := h.root.ReadFile(r)
	return v, h.escaped(p, err)
}

func (h *hostFiles) readlink(p string) (string, error) {
	h.note(p)
	if !h.confined() {
		return os.Readlink(p)
	}
	r, err := h.rel(p)
	if err != nil {
		return "", err
	}
	v, err := h.root.Readlink(r)
	return v, h.escaped(p, err)
}

// walkDir is filepath.WalkDir, through the root when confined.
func (h *hostFiles) walkDir(p string, fn fs.WalkDirFunc) error {
	if !h.confined() {
		return filepath.WalkDir(p, fn)
	}
	r, err := h.rel(p)
	if err != nil {
		return err
	}
	return fs.WalkDir(h.root.FS(), r, func(rp string, d fs.DirEntry, err error) error {
		return fn(filepath.Join(h.dir, filepath.FromSlash(rp)), d, err)
	})
}

// glob is filepath.Glob, through the root when confined.
func (h *hostFiles) glob(pattern string) ([]string, error) {
	if !h.confined() {
		return filepath.Glob(pattern)
	}
	r, err := h.rel(pattern)
	if err != nil {
		return nil, nil // nothing outside the root matches
	}
	matches, err := fs.Glob(h.root.FS(), r)
	for i, m := range matches {
		matches[i] = filepath.Join(h.dir, filepath.FromSlash(m))
	}
	return matches, err
}

// sub is the directory p as an fs.FS; the files opened through it are noted as read.
func (h *hostFiles) sub(p string) (fs.FS, error) {
	var fsys fs.FS
	if !h.confined() {
		fsys = os.DirFS(p)
	} else {
		r, err := h.rel(p)
		if err != nil {
			return nil, err
		}
		if fsys, err = fs.Sub(h.root.FS(), r); err != nil {
			return nil, err
		}
	}
	return notingFS{fsys: fsys, h: h, dir: p}, nil
}

type notingFS struct {
	fsys fs.FS
	h    *hostFiles
	dir  string
}

func (n notingFS) Open(name string) (fs.File, error) {
	n.h.note(filepath.Join(n.dir, filepath.FromSlash(name)))
	return n.fsys.Open(name)
}

// sha256 hashes the regular file p, which must hold size bytes: a file that grows while
// read, or that is not what its size says (a /proc file), is an error, not a endless read.
func (h *hostFiles) sha256(p string, size int64) (string, error) {
	f, err := h.open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hash := sha256.New()
	n, err := io.Copy(hash, io.LimitReader(f, size+1))
	if err != nil {
		return "", err
	}
	if n != size {
		return "", fmt.Errorf("%s changed size while being read (%d bytes, expected %d): bake again", p, n, size)
	}
	return hex.EncodeToString(hash.Sum(nil)), nil
}
