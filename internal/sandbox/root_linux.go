package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"syscall"
)

// imageRoot builds the sandbox's root from the tree at dir (Command.Root) and leaves
// the process in it, ready for enter. The host's /tmp, in this private mount namespace,
// becomes a small tmpfs holding an overlay: dir is its only lower layer, read as it is;
// the upper layer, in that tmpfs, takes the mount points (and nothing else: the root is
// made read-only before the program runs). Every mount point is reached one component
// at a time from the new root, without following a symlink: the setup runs as root with
// the host's filesystem still in place, and the tree's symlinks are an image's.
func imageRoot(dir string, srcs []source) (byte, error) {
	lower, err := syscall.Open(dir, oPath|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 'u', fmt.Errorf("opening the root %s: %w", dir, err)
	}
	defer syscall.Close(lower)
	const scratch = "/tmp"
	if err := syscall.Mount("tmpfs", scratch, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=16m,mode=0700"); err != nil {
		return 'u', fmt.Errorf("mounting the root's scratch space: %w", err)
	}
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.Mkdir(scratch+"/"+d, 0o755); err != nil {
			return 'u', err
		}
	}
	opts := fmt.Sprintf("lowerdir=/proc/self/fd/%d,upperdir=%s/upper,workdir=%s/work", lower, scratch, scratch)
	if os.Geteuid() != 0 {
		// In a user namespace the overlay keeps its own attributes in user.* xattrs.
		opts += ",userxattr"
	}
	root := scratch + "/root"
	if err := syscall.Mount("overlay", root, "overlay", syscall.MS_NOSUID|syscall.MS_NODEV, opts); err != nil {
		return 'u', fmt.Errorf("mounting the root %s (overlay): %w", dir, err)
	}

	if err := mountAt(root, "/proc", true, func(t string) error {
		return syscall.Mount("proc", t, "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "")
	}); err != nil {
		return 'p', fmt.Errorf("mounting /proc: %w", err)
	}
	// /tmp before the mounts, which may be under it.
	if err := mountAt(root, "/tmp", true, func(t string) error {
		return syscall.Mount("tmpfs", t, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+tmpSize+",mode=1777")
	}); err != nil {
		return 'p', fmt.Errorf("mounting /tmp: %w", err)
	}
	for _, s := range srcs {
		if s.link != "" {
			return 'p', fmt.Errorf("mounting %s: a symlink source is not mounted over an image's root", s.Source)
		}
		err := mountAt(root, s.Target, s.isDir, func(t string) error {
			from := fmt.Sprintf("/proc/self/fd/%d", s.fd.Fd())
			if err := syscall.Mount(from, t, "", syscall.MS_BIND, ""); err != nil {
				return err
			}
			s.fd.Close()
			return syscall.Mount("", root+path.Clean("/"+s.Target), "", s.remountFlags(), "")
		})
		if err != nil {
			return 'p', fmt.Errorf("mounting %s at %s: %w", s.Source, s.Target, err)
		}
	}
	if err := os.Chdir(root); err != nil {
		return 'u', err
	}
	return 0, nil
}

// mountAt makes the mount point target (a directory when dir, else a file) under root
// and calls mount with a path that names it. The path is /proc/self/fd/N of the mount
// point opened without following links, so what is mounted there is where the walk
// ended. The remount that follows a bind mount goes by name, root + target: every
// component on it was just checked not to be a symlink, and nothing runs yet that
// could change that.
func mountAt(root, target string, dir bool, mount func(string) error) error {
	fd, err := mountPoint(root, target, dir)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	return mount(fmt.Sprintf("/proc/self/fd/%d", fd))
}

// errSymlinkOnPath is a mount point reached through a symlink of the root's tree.
var errSymlinkOnPath = errors.New("is a symlink in the root's tree; mount points are reached without following links")

// mountPoint walks from root to target, one component at a time (crossing the mounts
// made so far), creating each missing one as a directory, or the last as an empty file
// when !dir, and refusing a symlink anywhere. It returns an O_PATH descriptor of the
// mount point.
func mountPoint(root, target string, dir bool) (int, error) {
	cur, err := syscall.Open(root, oPath|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	clean := strings.Trim(path.Clean("/"+target), "/")
	if clean == "" {
		return cur, nil
	}
	parts := strings.Split(clean, "/")
	for i, name := range parts {
		last := i == len(parts)-1
		wantDir := dir || !last
		next, err := step(cur, name, wantDir)
		syscall.Close(cur)
		if err != nil {
			return -1, fmt.Errorf("/%s: %w", strings.Join(parts[:i+1], "/"), err)
		}
		cur = next
	}
	return cur, nil
}

// step opens the entry name of the directory dir without following it (O_PATH, so a
// symlink opens as itself), creating it first when it is missing, and checks its kind.
func step(dir int, name string, wantDir bool) (int, error) {
	open := func() (int, error) {
		return syscall.Openat(dir, name, oPath|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	}
	fd, err := open()
	if err == syscall.ENOENT {
		if wantDir {
			err = syscall.Mkdirat(dir, name, 0o755)
		} else {
			var f int
			if f, err = syscall.Openat(dir, name, syscall.O_CREAT|syscall.O_EXCL|syscall.O_WRONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o644); err == nil {
				syscall.Close(f)
			}
		}
		if err != nil {
			return -1, err
		}
		fd, err = open()
	}
	if err != nil {
		return -1, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	switch kind := st.Mode & syscall.S_IFMT; {
	case kind == syscall.S_IFLNK:
		err = errSymlinkOnPath
	case wantDir && kind != syscall.S_IFDIR:
		err = errors.New("is not a directory")
	case !wantDir && kind == syscall.S_IFDIR:
		err = errors.New("is a directory, and a file is mounted there")
	}
	if err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// remountFlags are the flags a bind mount of s is remounted with: read-only unless
// writable, never set-uid, devices only from /dev, and the host mount's locked flags.
func (s source) remountFlags() uintptr {
	flags := syscall.MS_REMOUNT | syscall.MS_BIND | syscall.MS_NOSUID | s.flags
	if !s.Writable {
		flags |= syscall.MS_RDONLY
	}
	if !strings.HasPrefix(s.Source, "/dev/") {
		flags |= syscall.MS_NODEV
	}
	return uintptr(flags)
}
