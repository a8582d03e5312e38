package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// PIDFile is the file in the state directory that names the running daemon's process.
const PIDFile = "kiln.pid"

// ErrRunning means another daemon holds the state directory: New's error wraps it.
var ErrRunning = errors.New("a kiln daemon is already running")

// pidFile is the daemon's claim on a state directory: kiln.pid (0600) holds its PID and
// stays flock-ed while it runs. The lock, not the PID, says whether a daemon runs: the
// kernel releases it when the process ends, even by kill -9, so a file left behind is
// recognised as stale and a reused PID is never mistaken for a daemon.
type pidFile struct {
	path string
	f    *os.File
}

// claimPIDFile takes the state directory's PID file for this process. It fails with
// ErrRunning (and the holder's PID, 0 if unreadable) when a daemon holds it.
// A stale file is taken over; stale reports that one was found.
func claimPIDFile(stateDir string) (p *pidFile, holder int, stale bool, err error) {
	path := filepath.Join(stateDir, PIDFile)
	for range 3 {
		_, statErr := os.Stat(path)
		existed := statErr == nil
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, 0, false, fmt.Errorf("PID file: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				pid, _ := readPID(path)
				return nil, pid, false, ErrRunning
			}
			return nil, 0, false, fmt.Errorf("locking the PID file: %w", err)
		}
		// A daemon that was exiting may have removed the file after we opened it: then
		// the lock is on a file nobody else sees, so take the one at path instead.
		if !samePath(f, path) {
			f.Close()
			continue
		}
		stale = existed
		// Written in place, not by temp file and rename: the lock belongs to this inode.
		b := []byte(strconv.Itoa(os.Getpid()) + "\n")
		if err := f.Truncate(0); err == nil {
			if _, err = f.WriteAt(b, 0); err == nil {
				err = f.Sync()
			}
		}
		if err != nil {
			f.Close()
			return nil, 0, false, fmt.Errorf("writing the PID file: %w", err)
		}
		return &pidFile{path: path, f: f}, 0, stale, nil
	}
	return nil, 0, false, fmt.Errorf("PID file %s keeps being removed: is another kiln stopping?", path)
}

// release removes the file, then lets the lock go.
func (p *pidFile) release() {
	os.Remove(p.path)
	p.f.Close()
}

// Running reports the PID of the daemon that holds stateDir's PID file: 0 and no error
// when none runs (a file left behind by a daemon that died is removed, and stale says
// so). It does not block.
func Running(stateDir string) (pid int, stale bool, err error) {
	path := filepath.Join(stateDir, PIDFile)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return 0, false, fmt.Errorf("reading the PID file: %w", err)
		}
		pid, err := readPID(path)
		if err != nil {
			return 0, false, fmt.Errorf("a kiln daemon holds %s, but it names no PID: %w", path, err)
		}
		return pid, false, nil
	}
	// Nobody holds it: the daemon that wrote it is gone.
	if samePath(f, path) {
		os.Remove(path)
	}
	return 0, true, nil
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s holds %q, not a PID", path, strings.TrimSpace(string(b)))
	}
	return pid, nil
}

// samePath reports whether the open file f is still the file at path.
func samePath(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}
