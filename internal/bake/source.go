package bake

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SourceInfo is what an image records of the source it was baked from.
type SourceInfo struct {
	// Epoch is the image's creation time: its configuration, history, annotations and
	// SBOM carry it.
	Epoch time.Time
	// FileTime is the modification time of every file in the layers kiln writes. It does
	// not follow the commit time, so a layer whose content did not change between two
	// commits is the same layer, and its step a cache hit.
	FileTime time.Time
	Revision string // the commit, if the spec is in a git work tree
	URL      string // the origin remote, without credentials
	// Modified is true when tracked files of the work tree differ from the commit, as
	// Go's vcs.modified: the images are then marked "-dirty" (see RevisionFor).
	Modified bool

	top     string          // the work tree's top directory, as a path from the spec's
	tracked map[string]bool // the paths under top that git tracks
}

// DirtySuffix marks the revision of an image baked from a work tree that is not its
// commit, as `git describe --dirty` does.
const DirtySuffix = "-dirty"

// RevisionFor is the revision recorded in an image whose bake read the files paths: the
// commit, with DirtySuffix when tracked files were modified or one of paths is in the
// work tree but not tracked (an untracked or ignored file); "" outside git.
func (s SourceInfo) RevisionFor(paths []string) string {
	if s.Revision == "" {
		return ""
	}
	if s.Modified {
		return s.Revision + DirtySuffix
	}
	if s.top == "" {
		return s.Revision
	}
	for _, p := range paths {
		rel, err := filepath.Rel(s.top, p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			continue // outside the work tree: not the commit's to vouch for
		}
		if !s.tracked[filepath.ToSlash(rel)] {
			return s.Revision + DirtySuffix
		}
	}
	return s.Revision
}

// ReadSource determines the times and revision for a spec in dir. The epoch is
// SOURCE_DATE_EPOCH if set, else the time of the last commit, else the Unix epoch; file
// times are SOURCE_DATE_EPOCH if set, else the Unix epoch. environ is consulted for
// SOURCE_DATE_EPOCH (os.Environ() if nil).
func ReadSource(ctx context.Context, dir string, environ []string) (SourceInfo, error) {
	if environ == nil {
		environ = os.Environ()
	}
	var info SourceInfo
	epochSet, fileTimeSet := false, false
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "SOURCE_DATE_EPOCH="); ok && v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return info, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds since 1970", v)
			}
			info.Epoch = time.Unix(n, 0).UTC()
			epochSet, fileTimeSet = true, true
		}
	}
	out, err := exec.CommandContext(ctx, "git", "-C", dir, "log", "-1", "--format=%H %ct").Output()
	if err == nil {
		if rev, ct, ok := strings.Cut(strings.TrimSpace(string(out)), " "); ok {
			info.Revision = rev
			if n, err := strconv.ParseInt(ct, 10, 64); err == nil && !epochSet {
				info.Epoch = time.Unix(n, 0).UTC()
				epochSet = true
			}
		}
		if out, err := exec.CommandContext(ctx, "git", "-C", dir, "config", "--get", "remote.origin.url").Output(); err == nil {
			info.URL = redact(strings.TrimSpace(string(out)))
		}
		if err := readWorkTree(ctx, dir, &info); err != nil {
			return info, err
		}
	}
	if !epochSet {
		info.Epoch = time.Unix(0, 0).UTC()
	}
	info.FileTime = time.Unix(0, 0).UTC()
	if fileTimeSet {
		info.FileTime = info.Epoch
	}
	return info, nil
}

// readWorkTree notes whether tracked files were modified, and which files are tracked,
// in the work tree holding dir.
func readWorkTree(ctx context.Context, dir string, info *SourceInfo) error {
	git := func(args ...string) ([]byte, error) {
		out, err := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...).Output()
		if err != nil {
			return nil, fmt.Errorf("reading the git work tree of %s: git %s: %w", dir, strings.Join(args, " "), err)
		}
		return out, nil
	}
	prefix, err := git("rev-parse", "--show-prefix")
	if err != nil {
		return err
	}
	top, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// The top as a path from dir (not git's, which resolves symlinks), so that it
	// compares with the paths a spec names.
	for p := strings.TrimSuffix(strings.TrimSpace(string(prefix)), "/"); p != "" && p != "."; p = path.Dir(p) {
		top = filepath.Dir(top)
	}
	status, err := git("status", "--porcelain", "--untracked-files=no", "--ignore-submodules=none")
	if err != nil {
		return err
	}
	files, err := git("ls-files", "-z", "--full-name", "--", ":/")
	if err != nil {
		return err
	}
	info.Modified = len(bytes.TrimSpace(status)) > 0
	info.top = top
	info.tracked = map[string]bool{}
	for _, f := range strings.Split(string(files), "\x00") {
		if f != "" {
			info.tracked[f] = true
		}
	}
	return nil
}

// CommitSource is the SourceInfo of a commit made at when, from the repository at
// remote, for a caller that has the commit at hand; the same as ReadSource gives for a
// checkout of it without SOURCE_DATE_EPOCH.
func CommitSource(revision string, when time.Time, remote string) SourceInfo {
	return SourceInfo{Epoch: time.Unix(when.Unix(), 0).UTC(), FileTime: time.Unix(0, 0).UTC(), Revision: revision, URL: redact(remote)}
}

// redact removes credentials from a remote URL, and drops remotes that are local paths:
// they mean nothing outside this machine and would make images differ between clones.
func redact(remote string) string {
	if strings.HasPrefix(remote, "/") || strings.HasPrefix(remote, ".") || strings.HasPrefix(remote, "file:") {
		return ""
	}
	u, err := url.Parse(remote)
	if err != nil || u.User == nil {
		return remote
	}
	u.User = nil
	return u.String()
}
