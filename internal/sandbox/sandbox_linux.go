package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
)

// initArg is the argv[0] that tells Init it is a sandbox's first process.
const initArg = "kiln-sandbox-init"

// The child reads its config from fd 3 and reports a failure before exec on fd 4 (which
// closes on exec): a first byte of 'u' means the sandbox could not be made, 'x' that the
// program could not be executed.
const (
	configFD = 3
	statusFD = 4
)

// tmpSize bounds the sandbox's /tmp, which is memory.
const tmpSize = "4g"

type config struct {
	Path     string
	LookPath bool
	Args     []string
	Env      []string
	Dir      string
	Mounts   []Mount
	Root     string
	Network  bool
	Umask    int
}

func run(ctx context.Context, c *Command) error {
	if !initialized {
		return fmt.Errorf("%w: sandbox.Init was not called first in main (or TestMain)", ErrUnavailable)
	}
	if !filepath.IsAbs(c.Path) && (!c.LookPath || c.Path == "" || strings.Contains(c.Path, "/")) {
		return fmt.Errorf("sandbox: program path %q is not absolute", c.Path)
	}
	if c.Root != "" && !filepath.IsAbs(c.Root) {
		return fmt.Errorf("sandbox: root %q is not absolute", c.Root)
	}
	cfg, err := json.Marshal(config{Path: c.Path, LookPath: c.LookPath, Args: c.Args, Env: c.Env, Dir: c.Dir,
		Mounts: c.Mounts, Root: c.Root, Network: c.Network, Umask: c.Umask})
	if err != nil {
		return err
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer cfgW.Close()
	stR, stW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return err
	}
	defer stR.Close()

	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = []string{initArg}
	cmd.Env = []string{}
	cmd.ExtraFiles = []*os.File{cfgR, stW}
	cmd.Stdout, cmd.Stderr = c.Stdout, c.Stderr
	cmd.SysProcAttr = procAttr(c.Network, c.Root != "")
	err = cmd.Start()
	cfgR.Close()
	stW.Close()
	if err != nil {
		return fmt.Errorf("%w: creating namespaces: %v", ErrUnavailable, err)
	}
	_, werr := cfgW.Write(cfg)
	cfgW.Close()
	status, _ := io.ReadAll(stR) // EOF once the program is executed, or the child is gone
	err = cmd.Wait()
	switch {
	case len(status) > 0 && status[0] == 'u':
		return fmt.Errorf("%w: %s", ErrUnavailable, status[1:])
	case len(status) > 0:
		return fmt.Errorf("sandbox: %s", status[1:])
	case werr != nil && err == nil:
		return fmt.Errorf("sandbox: sending its configuration: %w", werr)
	}
	return err
}

// procAttr makes the child in new mount, network (unless network), pid, IPC and UTS
// namespaces. As root, the child sets up as root and then becomes UID. Otherwise it is
// also in a new user namespace where UID is the caller's own uid (the one mapping an
// unprivileged process may make), keeping through exec only the two capabilities the
// setup needs (three over an image's root: an overlay's mount makes its work directory
// with mode 0 and reads it with CAP_DAC_OVERRIDE, which in that namespace reaches only
// the caller's own files); it drops them before it executes the program.
func procAttr(network, imageRoot bool) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
		Pdeathsig:  syscall.SIGKILL,
	}
	if !network {
		a.Cloneflags |= syscall.CLONE_NEWNET
	}
	if os.Geteuid() != 0 {
		a.Cloneflags |= syscall.CLONE_NEWUSER
		a.UidMappings = []syscall.SysProcIDMap{{ContainerID: UID, HostID: os.Geteuid(), Size: 1}}
		a.GidMappings = []syscall.SysProcIDMap{{ContainerID: GID, HostID: os.Getegid(), Size: 1}}
		a.GidMappingsEnableSetgroups = false
		a.AmbientCaps = []uintptr{capSysAdmin, capSetpcap}
		if imageRoot {
			a.AmbientCaps = append(a.AmbientCaps, capDacOverride)
		}
	}
	return a
}

const (
	capDacOverride = 1
	capSetpcap     = 8
	capSysAdmin    = 21

	prCapbsetDrop        = 24
	prSetNoNewPrivs      = 38
	prCapAmbient         = 47
	prCapAmbientClearAll = 4

	oPath = 0x200000 // O_PATH on the architectures kiln builds for; syscall lacks it
)

// Own makes the directory dir (not what is in it) writable by the sandbox's user: as
// root, by giving it to UID; otherwise UID is the caller inside the sandbox already.
func Own(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return os.Lchown(dir, UID, GID)
}

// OwnTree gives dir and everything in it to the sandbox's user, when this process is
// root: for trees kiln wrote privately (umask 077) that a sandboxed program must read,
// such as a pipeline's checkout and the module cache. Their modes stay private; what
// is already the user's is left alone, so a second call costs a walk of stats.
func OwnTree(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) == UID && int(st.Gid) == GID {
			return nil
		}
		return os.Lchown(p, UID, GID)
	})
}

// child is the sandbox's first process. It returns only when this process is not one.
func child() {
	if len(os.Args) != 1 || os.Args[0] != initArg {
		return
	}
	runtime.LockOSThread()
	status := os.NewFile(statusFD, "status")
	syscall.CloseOnExec(statusFD)
	code, err := setup()
	status.Write(append([]byte{code}, err.Error()...))
	os.Exit(127)
}

// source is a mount's source, opened before the new root hides it.
type source struct {
	Mount
	fd    *os.File // O_PATH
	link  string   // when the source is a symlink: made as a symlink, not mounted
	isDir bool
	flags uintptr // mount flags the host mount has and a remount must keep
}

// setup builds the sandbox and executes the program; it returns only on failure.
func setup() (byte, error) {
	// The daemon's umask is 077 (its state is private); the mount points made here must
	// be reachable by the unprivileged user.
	syscall.Umask(0o022)
	var cfg config
	f := os.NewFile(configFD, "config")
	err := json.NewDecoder(f).Decode(&cfg)
	f.Close()
	if err != nil {
		return 'u', fmt.Errorf("reading the configuration: %w", err)
	}
	// Nothing mounted from here on reaches the host.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return 'u', fmt.Errorf("making mounts private: %w", err)
	}
	mounts := cfg.Mounts
	for _, d := range []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"} {
		mounts = append(mounts, Mount{Source: d, Writable: true})
	}
	var srcs []source
	for _, m := range mounts {
		if m.Target == "" {
			m.Target = m.Source
		}
		s, err := open(m)
		if err != nil {
			return 'u', err
		}
		srcs = append(srcs, s)
	}
	sort.SliceStable(srcs, func(i, j int) bool { return len(srcs[i].Target) < len(srcs[j].Target) })
	if cfg.Root != "" {
		if code, err := imageRoot(cfg.Root, srcs); err != nil {
			return code, err
		}
		return enter(cfg, syscall.MS_BIND)
	}

	// The new root: a small tmpfs of mount points, read-only once built.
	const root = "/tmp"
	if err := syscall.Mount("tmpfs", root, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=16m,mode=0755"); err != nil {
		return 'u', fmt.Errorf("mounting the new root: %w", err)
	}
	for _, d := range []string{"proc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return 'u', err
		}
	}
	if err := syscall.Mount("proc", root+"/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return 'u', fmt.Errorf("mounting /proc: %w", err)
	}
	// /tmp before the mounts, which may be under it.
	if err := syscall.Mount("tmpfs", root+"/tmp", "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+tmpSize+",mode=1777"); err != nil {
		return 'u', fmt.Errorf("mounting /tmp: %w", err)
	}
	for _, s := range srcs {
		if err := s.mount(root); err != nil {
			return 'u', err
		}
	}
	if err := os.Chdir(root); err != nil {
		return 'u', err
	}
	return enter(cfg, 0)
}

// enter makes the directory it is in the root, read-only (remounted with extra flags),
// and executes the program in it as UID. It returns only on failure.
func enter(cfg config, extra uintptr) (byte, error) {
	if err := syscall.PivotRoot(".", "."); err != nil {
		return 'u', fmt.Errorf("pivot_root: %w", err)
	}
	if err := syscall.Unmount(".", syscall.MNT_DETACH); err != nil {
		return 'u', fmt.Errorf("detaching the host's root: %w", err)
	}
	if err := syscall.Mount("", "/", "", syscall.MS_REMOUNT|syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NODEV|extra, ""); err != nil {
		return 'u', fmt.Errorf("making the new root read-only: %w", err)
	}
	dir := cfg.Dir
	if dir == "" {
		dir = "/"
	}
	if err := os.Chdir(dir); err != nil {
		return 'u', err
	}
	if err := syscall.Sethostname([]byte("sandbox")); err != nil {
		return 'u', fmt.Errorf("setting the hostname: %w", err)
	}
	if err := dropPrivileges(); err != nil {
		return 'u', err
	}
	// What the program writes (its build cache, its output) is its own alone, unless
	// the caller asks for another mask.
	umask := 0o077
	if cfg.Umask != 0 {
		umask = cfg.Umask & 0o777
	}
	syscall.Umask(umask)
	if cfg.LookPath && !strings.Contains(cfg.Path, "/") {
		return 'x', execPath(cfg.Path, cfg.Args, cfg.Env)
	}
	err := syscall.Exec(cfg.Path, cfg.Args, cfg.Env)
	return 'x', fmt.Errorf("executing %s: %w", cfg.Path, err)
}

// execPath executes the program name found first in env's PATH, as execvp does: a
// directory where it is missing is skipped, one where it may not be executed is
// remembered. It returns only on failure.
func execPath(name string, args, env []string) error {
	search := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			search = v
		}
	}
	denied := false
	for _, dir := range filepath.SplitList(search) {
		if dir == "" {
			dir = "."
		}
		err := syscall.Exec(filepath.Join(dir, name), args, env)
		switch err {
		case syscall.EACCES:
			denied = true
		case syscall.ENOENT, syscall.ENOTDIR:
		default:
			return fmt.Errorf("executing %s: %w", filepath.Join(dir, name), err)
		}
	}
	if denied {
		return fmt.Errorf("executing %s: found in PATH (%s) but not executable", name, search)
	}
	return fmt.Errorf("executing %s: not found in PATH (%s)", name, search)
}

func open(m Mount) (source, error) {
	s := source{Mount: m}
	info, err := os.Lstat(m.Source)
	if err != nil {
		return s, err
	}
	if info.Mode()&os.ModeSymlink != 0 {
		s.link, err = os.Readlink(m.Source)
		return s, err
	}
	s.isDir = info.IsDir()
	fd, err := syscall.Open(m.Source, oPath|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return s, fmt.Errorf("opening %s: %w", m.Source, err)
	}
	s.fd = os.NewFile(uintptr(fd), m.Source)
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(fd, &st); err != nil {
		return s, fmt.Errorf("statfs %s: %w", m.Source, err)
	}
	// In a user namespace these flags of the host's mount are locked: a remount that
	// dropped them would be refused.
	const stRelatime = 0x1000
	s.flags = uintptr(st.Flags) & (syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC | syscall.MS_NOATIME | syscall.MS_NODIRATIME)
	if st.Flags&stRelatime != 0 {
		s.flags |= syscall.MS_RELATIME
	}
	if st.Flags&syscall.MS_RDONLY != 0 {
		s.flags |= syscall.MS_RDONLY
	}
	return s, nil
}

// mount makes s appear at its target under root: bound from the descriptor opened
// before root hid anything, then remounted with the sandbox's flags.
func (s source) mount(root string) error {
	t := filepath.Join(root, s.Target)
	if s.link != "" {
		if err := os.MkdirAll(filepath.Dir(t), 0o755); err != nil {
			return err
		}
		return os.Symlink(s.link, t)
	}
	if s.isDir {
		if err := os.MkdirAll(t, 0o755); err != nil {
			return err
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(t), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(t, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		f.Close()
	}
	from := fmt.Sprintf("/proc/self/fd/%d", s.fd.Fd())
	if err := syscall.Mount(from, t, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("mounting %s: %w", s.Source, err)
	}
	s.fd.Close()
	if err := syscall.Mount("", t, "", s.remountFlags(), ""); err != nil {
		return fmt.Errorf("remounting %s: %w", s.Source, err)
	}
	return nil
}

// dropPrivileges leaves the process with no capability it could use or regain: the
// bounding set emptied, UID and GID with no supplementary groups, and no_new_privs so no
// set-uid program or file capability gives any back.
func dropPrivileges() error {
	for c := 0; c <= 63; c++ {
		if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prCapbsetDrop, uintptr(c), 0); e != 0 && e != syscall.EINVAL {
			return fmt.Errorf("dropping capability %d: %w", c, e)
		}
	}
	if os.Geteuid() == 0 {
		if err := syscall.Setgroups(nil); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(GID); err != nil {
			return fmt.Errorf("setgid: %w", err)
		}
		if err := syscall.Setuid(UID); err != nil {
			return fmt.Errorf("setuid: %w", err)
		}
	} else if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prCapAmbient, prCapAmbientClearAll, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("clearing ambient capabilities: %w", e)
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0); e != 0 {
		return fmt.Errorf("setting no_new_privs: %w", e)
	}
	if os.Geteuid() != UID || os.Getegid() != GID {
		return errors.New("the sandbox's user is not in effect")
	}
	return nil
}
