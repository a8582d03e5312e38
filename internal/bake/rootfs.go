package bake

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// maxRootfsBytes bounds the files of an image a bake writes out as a run step's root:
// as much as an imported image's layers may hold.
const maxRootfsBytes int64 = 32 << 30

// diffIDs are the uncompressed digests of img's layers, bottom first, as its
// configuration lists them: what its filesystem is made of, whatever its compression.
// Read from the configuration, not the layers: a stored layer's DiffID can mean
// decompressing it, a second a hundred megabytes.
func diffIDs(img v1.Image) ([]v1.Hash, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("the image's configuration lists %d layers, its manifest %d", len(cf.RootFS.DiffIDs), len(m.Layers))
	}
	return cf.RootFS.DiffIDs, nil
}

// knownDiffID is a layer whose diff ID is already known (from its image's
// configuration), so that asking for it reads nothing.
type knownDiffID struct {
	v1.Layer
	id v1.Hash
}

func (l knownDiffID) DiffID() (v1.Hash, error) { return l.id, nil }

// rootfsDir returns a directory holding img's filesystem (its layers flattened,
// whiteouts applied), written out once into the state directory's
// cache/rootfs/<key of its layers> and reused by every later run step over the same
// layers. The tree is only ever read after it is written: the sandbox lays it under an
// overlay, read-only.
func (b *Baker) rootfsDir(img v1.Image) (string, error) {
	ids, err := diffIDs(img)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(b.store.StateDir(), "cache", "rootfs")
	final := filepath.Join(dir, key(map[string]any{"kind": "rootfs", "layers": ids})[:32])
	b.rootfsMu.Lock()
	defer b.rootfsMu.Unlock()
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return "", err
	}
	// What a bake killed while extracting left (bakes hold the store's lock, and
	// rootfsMu this Baker's extractions).
	if stale, _ := filepath.Glob(filepath.Join(dir, ".tmp-*")); len(stale) > 0 {
		for _, s := range stale {
			removeTree(s)
		}
	}
	tmp, err := os.MkdirTemp(dir, ".tmp-")
	if err != nil {
		return "", err
	}
	// The root of the tree is the sandbox's /: traversable by its user. cache/rootfs
	// above keeps it from anyone else.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := extractImage(img, tmp); err != nil {
		removeTree(tmp)
		return "", fmt.Errorf("writing out the builder's filesystem: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		removeTree(tmp)
		return "", err
	}
	return final, nil
}

// extractImage writes img's flattened filesystem (go-containerregistry's
// mutate.Extract: top layer first, whiteouts applied) into the empty directory dir,
// through an os.Root, so that no entry, however its names and links are made, writes
// outside dir. Modes are kept (set-uid too: the sandbox mounts the tree nosuid), owners
// too when this process is root; devices and pipes are left out, the sandbox has its
// own /dev. An entry under a path an upper layer already holds is the lower layer's,
// hidden, and skipped. Hard links are made last, their targets being anywhere in the
// stream.
func extractImage(img v1.Image, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	asRoot := os.Geteuid() == 0
	var (
		links []*tar.Header
		dirs  []*tar.Header
		total int64
	)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if name == "" {
			continue
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("the entry %q leads out of the image's root", hdr.Name)
		}
		hdr.Name = name
		if parent := path.Dir(name); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				if hidden(err) {
					continue
				}
				return err
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.Mkdir(name, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
			dirs = append(dirs, hdr)
			continue
		case tar.TypeReg:
			if total += hdr.Size; total > maxRootfsBytes {
				return fmt.Errorf("the image holds more than %d GiB of files", maxRootfsBytes>>30)
			}
			f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				if hidden(err) {
					continue
				}
				return err
			}
			_, err = io.CopyN(f, tr, hdr.Size)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		case tar.TypeSymlink:
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				if hidden(err) {
					continue
				}
				return err
			}
			if asRoot {
				root.Lchown(name, hdr.Uid, hdr.Gid)
			}
			continue
		case tar.TypeLink:
			links = append(links, hdr)
			continue
		default: // devices, pipes: not a build's business
			continue
		}
		if err := setAttrs(root, hdr, asRoot); err != nil {
			return err
		}
	}
	for _, hdr := range links {
		target := strings.TrimPrefix(path.Clean("/"+hdr.Linkname), "/")
		if err := root.Link(target, hdr.Name); err != nil && !hidden(err) && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	// Directories last: making their entries changed their times.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := setAttrs(root, dirs[i], asRoot); err != nil {
			return err
		}
	}
	return nil
}

// hidden reports an entry that a path of an upper layer stands in the way of.
func hidden(err error) bool {
	return errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTDIR)
}

func setAttrs(root *os.Root, hdr *tar.Header, asRoot bool) error {
	if asRoot {
		if err := root.Lchown(hdr.Name, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	// After the owner: chown clears the set-uid and set-gid bits.
	if err := root.Chmod(hdr.Name, fs.FileMode(hdr.Mode&0o777)|modeBits(hdr.Mode)); err != nil {
		return err
	}
	return root.Chtimes(hdr.Name, time.Unix(0, 0), hdr.ModTime)
}

// modeBits turns the set-uid, set-gid and sticky bits of a tar mode into fs's.
func modeBits(m int64) fs.FileMode {
	var out fs.FileMode
	if m&0o4000 != 0 {
		out |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= fs.ModeSticky
	}
	return out
}

// removeTree removes dir and everything in it, first making its directories writable
// (a build may leave some read-only, and an unprivileged kiln could not empty them).
func removeTree(dir string) error {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
