package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestPIDFile(t *testing.T) {
	dir := t.TempDir()
	if pid, stale, err := Running(dir); pid != 0 || stale || err != nil {
		t.Fatalf("no PID file: %d %v %v, want none running", pid, stale, err)
	}
	p, _, stale, err := claimPIDFile(dir)
	if err != nil || stale {
		t.Fatalf("claim: %v (stale %v)", err, stale)
	}
	path := filepath.Join(dir, PIDFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("PID file: %v %v, want mode 0600", fi, err)
	}
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("PID file holds %q, want %d", b, os.Getpid())
	}
	// The lock is per open file: a second claim, even from this process, is refused.
	if _, holder, _, err := claimPIDFile(dir); !errors.Is(err, ErrRunning) || holder != os.Getpid() {
		t.Errorf("second claim: %v, holder %d; want ErrRunning by %d", err, holder, os.Getpid())
	}
	if pid, _, err := Running(dir); pid != os.Getpid() || err != nil {
		t.Errorf("running daemon: %d %v, want %d", pid, err, os.Getpid())
	}
	p.release()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after release the PID file is still there: %v", err)
	}

	// A file left by a daemon that died (no lock held) is stale, whatever PID it names.
	os.WriteFile(path, []byte("1\n"), 0o600)
	if pid, stale, err := Running(dir); pid != 0 || !stale || err != nil {
		t.Errorf("stale file: %d %v %v, want none running, stale", pid, stale, err)
	}
	os.WriteFile(path, []byte("1\n"), 0o600)
	p, _, stale, err = claimPIDFile(dir)
	if err != nil || !stale {
		t.Fatalf("claim over a stale file: %v (stale %v)", err, stale)
	}
	p.release()
}
