package bake

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"strings"

	"github.com/kiln-build/kiln/internal/spec"
)

// maxCopyBytes bounds the file contents one copy step reads: generous for any real
// tree, but a spec cannot make a bake read without end.
const maxCopyBytes int64 = 4 << 30

// copyEntries walks a copy step's source and returns the layer entries it becomes, with
// the owner and modes of the spec, not of the disk: only the executable bit of a file
// carries over when no mode is given. Symlinks are copied as symlinks, never followed.
func copyEntries(c *spec.Copy, h *hostFiles) ([]entry, error) {
	budget := maxCopyBytes
	root, err := h.lstat(c.Path)
	if err != nil {
		return nil, fmt.Errorf("copy %s: %w", c.Source, err)
	}
	if !root.IsDir() {
		to := c.To
		if strings.HasSuffix(to, "/") {
			to = path.Join(to, filepath.Base(c.Path))
		}
		e, err := fileEntry(c, h, c.Path, to, root, &budget)
		if err != nil {
			return nil, fmt.Errorf("copy %s: %w", c.Source, err)
		}
		return []entry{e}, nil
	}
	base := path.Clean(c.To)
	entries := []entry{{Path: base, Type: tar.TypeDir, Mode: dirMode(c), UID: c.Owner.UID, GID: c.Owner.GID}}
	err = h.walkDir(c.Path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == c.Path {
			return nil
		}
		rel, _ := filepath.Rel(c.Path, p)
		rel = filepath.ToSlash(rel)
		if excluded(c.Exclude, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		to := path.Join(base, rel)
		if d.IsDir() {
			entries = append(entries, entry{Path: to, Type: tar.TypeDir, Mode: dirMode(c), UID: c.Owner.UID, GID: c.Owner.GID})
			return nil
		}
		e, err := fileEntry(c, h, p, to, info, &budget)
		if err != nil {
			return err
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copy %s: %w", c.Source, err)
	}
	return entries, nil
}

// excluded reports whether rel, or any directory above it, matches a pattern.
func excluded(patterns []string, rel string) bool {
	for _, pat := range patterns {
		for p := rel; p != "."; p = path.Dir(p) {
			if ok, _ := path.Match(pat, p); ok {
				return true
			}
			if ok, _ := path.Match(pat, path.Base(p)); ok {
				return true
			}
		}
	}
	return false
}

func dirMode(c *spec.Copy) int64 {
	if c.Mode != nil {
		m := int64(*c.Mode)
		// a directory must stay traversable by whoever may read its files
		return m | (m&0o444)>>2
	}
	return 0o755
}

// fileEntry makes the entry for one regular file or symlink on disk, taking its size
// from budget. Anything else (a pipe, socket or device) is an error: its content is not a
// file's, and reading a device such as /dev/zero would not end.
func fileEntry(c *spec.Copy, h *hostFiles, p, to string, info fs.FileInfo, budget *int64) (entry, error) {
	e := entry{Path: to, UID: c.Owner.UID, GID: c.Owner.GID}
	switch m := info.Mode(); {
	case m&fs.ModeSymlink != 0:
		link, err := h.readlink(p)
		if err != nil {
			return e, err
		}
		e.Type, e.Mode, e.Link = tar.TypeSymlink, 0o777, link
		sum := sha256.Sum256([]byte(link))
		e.SHA256 = hex.EncodeToString(sum[:])
	case m.IsRegular():
		if *budget -= info.Size(); *budget < 0 {
			return e, fmt.Errorf("%s: the copy holds more than %d GiB of files, the most one copy may", p, maxCopyBytes>>30)
		}
		sum, err := h.sha256(p, info.Size())
		if err != nil {
			return e, err
		}
		e.Type, e.Size, e.SHA256 = tar.TypeReg, info.Size(), sum
		e.open = func() (io.ReadCloser, error) { return h.open(p) }
		switch {
		case c.Mode != nil:
			e.Mode = int64(*c.Mode)
		case m&0o111 != 0:
			e.Mode = 0o755
		default:
			e.Mode = 0o644
		}
	default:
		return e, fmt.Errorf("%s is a %s: copy takes regular files, directories and symlinks", p, fileKind(m))
	}
	return e, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file (" + m.Type().String() + ")"
}

// fileStepEntries is the single entry of a file step.
func fileStepEntries(f *spec.File) []entry {
	sum := sha256.Sum256([]byte(f.Content))
	return []entry{{
		Path:   f.Path,
		Type:   tar.TypeReg,
		Mode:   int64(f.Mode),
		UID:    f.Owner.UID,
		GID:    f.Owner.GID,
		Size:   int64(len(f.Content)),
		Data:   []byte(f.Content),
		SHA256: hex.EncodeToString(sum[:]),
	}}
}

// entriesKey is the cache key of a layer made of entries: their paths, types, modes,
// owners and content digests, not where they came from on disk.
func entriesKey(kind string, epoch int64, entries []entry) string {
	type rec struct {
		P    string
		T    byte
		M    int64
		U, G int
		L    string
		S    string
	}
	recs := make([]rec, len(entries))
	for i, e := range entries {
		recs[i] = rec{e.Path, e.Type, e.Mode, e.UID, e.GID, e.Link, e.SHA256}
	}
	return key(map[string]any{"kind": kind, "epoch": epoch, "entries": recs})
}

func fileRecords(entries []entry) []fileRecord {
	var out []fileRecord
	for _, e := range entries {
		if e.Type == tar.TypeReg {
			out = append(out, fileRecord{Path: e.Path, SHA256: e.SHA256, Size: e.Size})
		}
	}
	return out
}
