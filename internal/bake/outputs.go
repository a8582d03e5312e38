package bake

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// outputDir is where one output of a run step is on the host: the tree under at in the
// sandbox is the tree at rel in the directory root (the work directory, or the output's
// own). Both are read through an os.Root, so a link the command made cannot lead the
// collection out of the directory.
type outputDir struct {
	files *hostFiles // confined to the directory the command wrote
	in    string     // that directory's path in the sandbox
	rel   string     // the output in it, slash form; "." for the whole directory
	at    string     // the output's path in the sandbox and the image
}

// keptMode is the part of a mode an output keeps: permissions and the sticky bit; never
// set-uid or set-gid, which would make a build user's file a root program in the image.
func keptMode(m fs.FileMode) int64 {
	out := int64(m.Perm())
	if m&fs.ModeSticky != 0 {
		out |= 0o1000
	}
	return out
}

// collectOutputs makes the layer entries of a run step's outputs, normalised: owned by
// 0:0, modes kept (but set-uid and set-gid), times left to the layer (the bake's
// epoch), the order the layer's (sorted); regular files, directories and symlinks, and
// files linked more than once as hard links to the first of their paths. Anything else
// (a device, a pipe, a socket) is an error. budget bounds the bytes of file contents.
func collectOutputs(outs []outputDir, budget int64) ([]entry, error) {
	var entries []entry
	inodes := map[string]string{} // entry path → "dev:ino" of a file linked more than once
	for _, o := range outs {
		h := o.files
		top := h.dir
		if o.rel != "." {
			top = filepath.Join(h.dir, filepath.FromSlash(o.rel))
		}
		if _, err := h.lstat(top); err != nil {
			switch {
			case errors.Is(err, fs.ErrNotExist):
				return nil, fmt.Errorf("the output %s is missing: the command wrote nothing there", o.at)
			case errors.Is(err, ErrOutside):
				return nil, fmt.Errorf("the output %s is reached through a symlink that leads out of %s: outputs are read inside the directories the command writes", o.at, o.in)
			}
			return nil, fmt.Errorf("the output %s: %w", o.at, err)
		}
		err := h.walkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(top, p)
			if err != nil {
				return err
			}
			at := path.Join(o.at, filepath.ToSlash(rel))
			info, err := d.Info()
			if p == top {
				info, err = h.lstat(p) // the walk's root entry follows a link; its own info does not
			}
			if err != nil {
				return err
			}
			e := entry{Path: at, Mode: keptMode(info.Mode())}
			switch m := info.Mode(); {
			case m.IsDir():
				e.Type = tar.TypeDir
			case m&fs.ModeSymlink != 0:
				link, err := h.readlink(p)
				if err != nil {
					return err
				}
				e.Type, e.Mode, e.Link, e.SHA256 = tar.TypeSymlink, 0o777, link, sha256Hex([]byte(link))
				if p == top {
					entries = append(entries, e)
					return nil // a symlink as the output: kept, not followed
				}
			case m.IsRegular():
				if budget -= info.Size(); budget < 0 {
					return fmt.Errorf("the outputs hold more than %d GiB of files, the most a run step's may", maxCopyBytes>>30)
				}
				sum, err := h.sha256(p, info.Size())
				if err != nil {
					return err
				}
				e.Type, e.Size, e.SHA256 = tar.TypeReg, info.Size(), sum
				e.open = func() (io.ReadCloser, error) { return h.open(p) }
				if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
					inodes[at] = fmt.Sprintf("%d:%d", st.Dev, st.Ino)
				}
			default:
				return fmt.Errorf("%s is a %s: outputs hold regular files, directories and symlinks", at, fileKind(m))
			}
			entries = append(entries, e)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("collecting the output %s: %w", o.at, err)
		}
	}
	return hardLinks(entries, inodes), nil
}

// hardLinks sorts entries by path, as the layer will be, and turns every file of a
// group (the same key in groups) but the first into a hard link to the first, which
// the layer then holds before its links.
func hardLinks(entries []entry, groups map[string]string) []entry {
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	first := map[string]string{}
	for i := range entries {
		e := &entries[i]
		g, ok := groups[e.Path]
		if !ok || e.Type != tar.TypeReg {
			continue
		}
		if to, seen := first[g]; seen {
			e.Type, e.Link, e.Size, e.open, e.Data = tar.TypeLink, strings.TrimPrefix(to, "/"), 0, nil, nil
			continue
		}
		first[g] = e.Path
	}
	return entries
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
