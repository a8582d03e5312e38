package statedir

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Modes of everything under a state directory: its owner alone may read it. Files keep
// their owner's execute bit (a checkout's scripts), nothing else.
const (
	DirMode  os.FileMode = 0o700
	FileMode os.FileMode = 0o600
)

// Prepare creates dir (0700) if needed and makes what is already in it private: when
// dir itself is readable by others (made by an older kiln, or by hand), group and other
// bits are removed from every file and directory in it. It also sets the process's umask to
// 077, so that files created later by any part of kiln (SQLite's -wal and -shm files,
// git's objects, checkouts) are private too. Symbolic links are left alone.
func Prepare(dir string) error {
	syscall.Umask(0o077)
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	// Every CLI verb calls Prepare: a directory already private was made so by kiln,
	// which creates its files private, so only a directory that is not needs the walk.
	if info, err := os.Stat(dir); err == nil && info.Mode().Perm()&0o077 == 0 {
		return ensureIgnore(dir)
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // removed while we walk (a temp file)
			}
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if info.Mode().Perm()&0o077 == 0 {
			return nil
		}
		if err := os.Chmod(p, info.Mode().Perm()&^0o077); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("making state directory %s private: %w", dir, err)
	}
	return ensureIgnore(dir)
}

// ensureIgnore keeps the state directory out of version control: it is local.
func ensureIgnore(dir string) error {
	ignore := filepath.Join(dir, ".gitignore")
	if _, err := os.Stat(ignore); os.IsNotExist(err) {
		os.WriteFile(ignore, []byte("*\n"), FileMode)
	}
	return nil
}
