package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// keepBackups is how many backups Open keeps; older ones are removed after a new one
// is taken.
const keepBackups = 5

const backupTime = "20060102T150405Z"

// Backup is a copy of the state database taken by Open before it migrated the schema.
type Backup struct {
	Path    string
	Version int // the schema version it holds
	Taken   time.Time
}

// backupDir is where the backups of the database at path are: backups/ beside it.
func backupDir(path string) string { return filepath.Join(filepath.Dir(path), "backups") }

// backupName matches the names backup gives: kiln-v3-20261201T233000Z.db, with -2, -3
// ... when two are taken in the same second.
func backupName(path string) *regexp.Regexp {
	stem := strings.TrimSuffix(filepath.Base(path), ".db")
	return regexp.MustCompile(`^` + regexp.QuoteMeta(stem) + `-v(\d+)-(\d{8}T\d{6}Z)(?:-(\d+))?\.db$`)
}

// Backups returns the backups of the database at path, newest first; none (and no
// error) when there is no backups directory. It only reads.
func Backups(path string) ([]Backup, error) {
	dir := backupDir(path)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing backups: %w", err)
	}
	re := backupName(path)
	type found struct {
		Backup
		seq int
	}
	var all []found
	for _, e := range ents {
		m := re.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		v, err1 := strconv.Atoi(m[1])
		t, err2 := time.Parse(backupTime, m[2])
		seq, _ := strconv.Atoi(m[3]) // "" is the first of its second
		if err1 != nil || err2 != nil {
			continue
		}
		all = append(all, found{Backup{Path: filepath.Join(dir, e.Name()), Version: v, Taken: t}, seq})
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].Taken.Equal(all[j].Taken) {
			return all[i].Taken.After(all[j].Taken)
		}
		return all[i].seq > all[j].seq
	})
	out := make([]Backup, len(all))
	for i, f := range all {
		out[i] = f.Backup
	}
	return out, nil
}

// backup copies the database, at schema version, into backups/ with VACUUM INTO (a
// consistent snapshot, taken through the open connection, WAL included), 0600 in a
// 0700 directory. The copy is written under a temporary name, synced and renamed, so
// a backup that has its name is whole. It then keeps the newest keepBackups. It
// returns the backup's path.
func (s *Store) backup(ctx context.Context, version int) (string, error) {
	dir := backupDir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", err
	}
	stem := strings.TrimSuffix(filepath.Base(s.path), ".db")
	base := fmt.Sprintf("%s-v%d-%s", stem, version, time.Now().UTC().Format(backupTime))
	final := filepath.Join(dir, base+".db")
	// A second backup in the same second is numbered after every one of that second,
	// pruned ones included, so that names sort as they were taken.
	if seq := lastSeq(dir, base); seq > 0 {
		final = filepath.Join(dir, fmt.Sprintf("%s-%d.db", base, seq+1))
	}
	tmp := final + ".tmp"
	// VACUUM INTO accepts an empty file, so it is made first with the mode wanted.
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := s.vacuumInto(ctx, tmp, final); err != nil {
		return "", errors.Join(err, removeIfExists(tmp))
	}
	if err := pruneBackups(s.path, keepBackups); err != nil {
		return final, err
	}
	return final, nil
}

// lastSeq returns the highest number among backups named base (1 for base.db itself,
// n for base-n.db, base-n.db.tmp), 0 when there is none. Pruned ones are not seen,
// so the caller's second is not over yet: the newest of it is kept.
func lastSeq(dir, base string) int {
	ents, _ := os.ReadDir(dir) // an unreadable directory fails the backup's own create
	last := 0
	for _, e := range ents {
		rest, ok := strings.CutPrefix(strings.TrimSuffix(e.Name(), ".tmp"), base)
		if !ok {
			continue
		}
		if rest == ".db" {
			last = max(last, 1)
		} else if n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rest, "-"), ".db")); err == nil && strings.HasSuffix(rest, ".db") {
			last = max(last, n)
		}
	}
	return last
}

func (s *Store) vacuumInto(ctx context.Context, tmp, final string) error {
	if _, err := s.db.ExecContext(ctx, "VACUUM INTO ?", tmp); err != nil {
		return err
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return syncFile(filepath.Dir(final))
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	return errors.Join(err, f.Close())
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// pruneBackups removes all but the newest keep backups of the database at path, and
// any temporary file a backup interrupted by a crash left.
func pruneBackups(path string, keep int) error {
	backups, err := Backups(path)
	if err != nil {
		return err
	}
	var errs []error
	for _, b := range backups[min(keep, len(backups)):] {
		errs = append(errs, removeIfExists(b.Path))
	}
	ents, err := os.ReadDir(backupDir(path))
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	re := backupName(path)
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), ".tmp"); ok && re.MatchString(name) {
			errs = append(errs, removeIfExists(filepath.Join(backupDir(path), e.Name())))
		}
	}
	return errors.Join(errs...)
}
