package bake

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/kiln-build/kiln/internal/spec"
)

// copyFromKey is the cache key of a copy out of an image whose filesystem is layers:
// those, and everything the step says. Nothing is read to compute it.
func copyFromKey(c *spec.CopyFrom, layers []v1.Hash, epoch int64) string {
	return key(map[string]any{
		"kind": "copy-from", "layers": layers, "source": c.Source, "to": c.To,
		"mode": c.Mode, "owner": c.Owner, "exclude": c.Exclude, "epoch": epoch,
	})
}

// maxLinkHops bounds the symlinks followed to resolve a copy's source in an image.
const maxLinkHops = 40

// copyFromImage returns the entries of c, a copy out of src (another image of the
// spec, already baked): its final filesystem, whiteouts applied, its names from names
// (headers.go: only the layers above those it already knows are read) and the contents
// of the files copied from go-containerregistry's mutate.Extract, top layer first and no
// further than the last of them, into temporary files under tmpDir until done removes
// them.
//
// The source path is resolved in the image as a process in it would open it: symlinks
// on the way, and a symlink as the source itself, are followed, within the image's root.
// Inside a copied directory, symlinks are kept as symlinks, and hard links between its
// files as hard links. Owner and mode are the spec's, the mode being the one the file
// has in the image (less set-uid and set-gid) when the spec gives none.
func copyFromImage(c *spec.CopyFrom, src v1.Image, tmpDir string, names headerCache) (entries []entry, done func(), err error) {
	hdrs, err := names.layerHeaders(src)
	if err != nil {
		return nil, nil, fmt.Errorf("reading image %s: %w", c.Image, err)
	}
	from, err := resolveIn(hdrs, c.Source)
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: %w", c.Image, err)
	}
	top := hdrs[from]
	want := map[string][]int{} // a source file's path → the entries that take its content
	groups := map[string]string{}
	add := func(srcPath, to string, h *tar.Header) error {
		e := entry{Path: to, UID: c.Owner.UID, GID: c.Owner.GID}
		switch h.Typeflag {
		case tar.TypeDir:
			e.Type = tar.TypeDir
		case tar.TypeSymlink:
			e.Type, e.Mode, e.Link, e.SHA256 = tar.TypeSymlink, 0o777, h.Linkname, sha256Hex([]byte(h.Linkname))
		case tar.TypeReg, tar.TypeLink:
			target := srcPath
			if h.Typeflag == tar.TypeLink {
				target = "/" + strings.TrimPrefix(path.Clean("/"+h.Linkname), "/")
				t := hdrs[target]
				if t == nil || t.Typeflag != tar.TypeReg {
					return fmt.Errorf("%s is a hard link to %s, which is not a file of the image", srcPath, target)
				}
				h = t
			}
			e.Type, e.Size = tar.TypeReg, h.Size
			want[target] = append(want[target], len(entries))
			groups[to] = target
		default:
			return fmt.Errorf("%s is not a regular file, directory or symlink (tar type %q): a copy takes those", srcPath, h.Typeflag)
		}
		if e.Type != tar.TypeSymlink {
			e.Mode = fromMode(c, h)
		}
		entries = append(entries, e)
		return nil
	}
	if top.Typeflag != tar.TypeDir {
		to := c.To
		if strings.HasSuffix(to, "/") {
			to = path.Join(to, path.Base(c.Source)) // named as the spec names it, link or not
		}
		if err := add(from, to, top); err != nil {
			return nil, nil, err
		}
	} else {
		base := path.Clean(c.To)
		if err := add(from, base, top); err != nil {
			return nil, nil, err
		}
		prefix := strings.TrimSuffix(from, "/") + "/"
		var budget int64 = maxCopyBytes
		for _, p := range slices.Sorted(maps.Keys(hdrs)) {
			rel, ok := strings.CutPrefix(p, prefix)
			if !ok || excluded(c.Exclude, rel) {
				continue
			}
			if budget -= hdrs[p].Size; budget < 0 {
				return nil, nil, fmt.Errorf("the copy holds more than %d GiB of files, the most one copy may", maxCopyBytes>>30)
			}
			if err := add(p, path.Join(base, rel), hdrs[p]); err != nil {
				return nil, nil, err
			}
		}
	}
	if len(want) == 0 {
		return hardLinks(entries, nil), func() {}, nil
	}
	dir, err := os.MkdirTemp(tmpDir, "copy-from-")
	if err != nil {
		return nil, nil, err
	}
	done = func() { os.RemoveAll(dir) }
	if err := saveContents(src, want, entries, dir); err != nil {
		done()
		return nil, nil, fmt.Errorf("reading image %s: %w", c.Image, err)
	}
	return hardLinks(entries, groups), done, nil
}

// fromMode is the mode an entry copied from an image has: the spec's, else the image's
// (permissions and the sticky bit).
func fromMode(c *spec.CopyFrom, h *tar.Header) int64 {
	if c.Mode == nil {
		return keptMode(os.FileMode(h.Mode&0o777) | modeBits(h.Mode&0o1000))
	}
	if h.Typeflag == tar.TypeDir {
		m := int64(*c.Mode)
		return m | (m&0o444)>>2 // a directory stays traversable by whoever may read its files
	}
	return int64(*c.Mode)
}

// imageHeaders reads the names of img's final filesystem: each path ("/a/b") to its
// header. The root is a directory even when no layer names it.
func imageHeaders(img v1.Image) (map[string]*tar.Header, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	hdrs := map[string]*tar.Header{"/": {Typeflag: tar.TypeDir, Mode: 0o755}}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		p := path.Clean("/" + h.Name)
		hdrs[p] = h
		// A file's parents are directories even when no layer names them.
		for d := path.Dir(p); hdrs[d] == nil; d = path.Dir(d) {
			hdrs[d] = &tar.Header{Typeflag: tar.TypeDir, Mode: 0o755}
		}
	}
	return hdrs, nil
}

// resolveIn follows p through the symlinks of an image's filesystem (absolute targets
// from its root, ".." stopping at it) to the entry it names.
func resolveIn(hdrs map[string]*tar.Header, p string) (string, error) {
	hops := 0
	parts := strings.Split(strings.Trim(path.Clean(p), "/"), "/")
	cur := "/"
	for i := 0; i < len(parts); i++ {
		if parts[i] == "" {
			continue
		}
		next := path.Join(cur, parts[i])
		h := hdrs[next]
		if h == nil {
			return "", fmt.Errorf("there is no %s in the image (%s is missing)", p, next)
		}
		if h.Typeflag == tar.TypeSymlink {
			if hops++; hops > maxLinkHops {
				return "", fmt.Errorf("%s: too many symlinks", p)
			}
			target := h.Linkname
			if !path.IsAbs(target) {
				target = path.Join(cur, target)
			}
			rest := append(strings.Split(strings.Trim(path.Clean(target), "/"), "/"), parts[i+1:]...)
			parts, i, cur = rest, -1, "/"
			continue
		}
		if i < len(parts)-1 && h.Typeflag != tar.TypeDir {
			return "", fmt.Errorf("there is no %s in the image (%s is not a directory)", p, next)
		}
		cur = next
	}
	return cur, nil
}

// saveContents reads img's filesystem again and writes the content of each file of want
// once into dir, pointing the entries that take it (by index) at it, with its digest.
func saveContents(img v1.Image, want map[string][]int, entries []entry, dir string) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	n := 0
	for len(want) > 0 {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		p := path.Clean("/" + h.Name)
		idx, ok := want[p]
		if !ok || h.Typeflag != tar.TypeReg {
			continue
		}
		delete(want, p)
		n++
		file := filepath.Join(dir, strconv.Itoa(n))
		sum, err := saveFile(file, tr, h.Size)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, i := range idx {
			entries[i].SHA256 = sum
			entries[i].open = func() (io.ReadCloser, error) { return os.Open(file) }
		}
	}
	for p := range want {
		return fmt.Errorf("%s was named, but its content is not in the image", p)
	}
	return nil
}

func saveFile(name string, r io.Reader, size int64) (string, error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, filePerm)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = errors.New("short read")
	}
	return hex.EncodeToString(h.Sum(nil)), err
}
