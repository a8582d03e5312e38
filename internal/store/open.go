package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrCorrupt means the state database is damaged (its header, its size or its pages);
// Open changed nothing in it. The error's text names the file, the damage and the most
// recent backup.
var ErrCorrupt = errors.New("the state database is damaged")

// ErrNewerSchema means the state database was written by a newer kiln (its schema
// version is higher than any this kiln knows); Open wrote nothing to it.
var ErrNewerSchema = errors.New("the state database was written by a newer kiln")

// sqliteMagic opens every SQLite database file.
const sqliteMagic = "SQLite format 3\x00"

// header is what Open reads from the first 100 bytes of an existing database file
// before SQLite touches it (https://www.sqlite.org/fileformat.html#the_database_header).
type header struct {
	size     int64 // the file's size
	pageSize int64
	pages    int64 // the in-header database size, 0 when it is not valid
	version  int   // PRAGMA user_version as last checkpointed into the file
}

// readHeader reads path's header with plain file reads: no SQLite connection, so
// nothing is created or written (a read-only SQLite connection to a WAL database
// creates its -wal and -shm files when they are missing). It returns ok false, and no
// error, when the file does not exist or is empty (SQLite makes a new database of it,
// or replays a WAL into it). A damaged header is ErrCorrupt.
func readHeader(path string) (h header, ok bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return h, false, nil
	}
	if err != nil {
		return h, false, fmt.Errorf("opening state database: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return h, false, fmt.Errorf("opening state database: %w", err)
	}
	h.size = fi.Size()
	if h.size == 0 {
		return h, false, nil
	}
	b := make([]byte, 100)
	if _, err := io.ReadFull(f, b); errors.Is(err, io.ErrUnexpectedEOF) {
		return h, true, corruptError(path, fmt.Sprintf("the file is %d bytes, shorter than a SQLite header", h.size))
	} else if err != nil {
		return h, true, fmt.Errorf("reading state database %s: %w", path, err)
	}
	if string(b[:16]) != sqliteMagic {
		return h, true, corruptError(path, "its first 16 bytes are not the SQLite header (the file's header is overwritten or it is not a database)")
	}
	h.pageSize = int64(binary.BigEndian.Uint16(b[16:18]))
	if h.pageSize == 1 {
		h.pageSize = 65536
	}
	if h.pageSize < 512 || h.pageSize&(h.pageSize-1) != 0 {
		return h, true, corruptError(path, fmt.Sprintf("its header gives a page size of %d, which SQLite never writes", h.pageSize))
	}
	if changes, validFor := binary.BigEndian.Uint32(b[24:28]), binary.BigEndian.Uint32(b[92:96]); changes == validFor {
		h.pages = int64(binary.BigEndian.Uint32(b[28:32]))
	}
	h.version = int(int32(binary.BigEndian.Uint32(b[60:64])))
	return h, true, nil
}

// checkSize reports a file shorter than its header says, or not a whole number of
// pages: a truncated copy. It is only meaningful when there is no WAL to replay (a
// checkpoint interrupted by a crash legitimately leaves the file short until the WAL
// is replayed), so the caller skips it then.
func (h header) checkSize(path string) error {
	if h.size%h.pageSize != 0 {
		return corruptError(path, fmt.Sprintf("the file is %d bytes, not a whole number of its %d-byte pages: it was truncated", h.size, h.pageSize))
	}
	if h.pages > 0 && h.size < h.pages*h.pageSize {
		return corruptError(path, fmt.Sprintf("the file is %d bytes but its header says %d (%d pages of %d): it was truncated", h.size, h.pages*h.pageSize, h.pages, h.pageSize))
	}
	return nil
}

// hasWAL reports whether path has a non-empty write-ahead log, i.e. commits that may
// not be in the main file yet.
func hasWAL(path string) bool {
	fi, err := os.Stat(path + "-wal")
	return err == nil && fi.Size() > 0
}

// quickCheckLimit bounds the problems PRAGMA quick_check reports; the first few say
// enough.
const quickCheckLimit = 3

// quickCheck runs PRAGMA quick_check on db, which only reads. Damage is ErrCorrupt;
// other failures (I/O, a lock) are returned as they are.
//
// Cost, measured on a 2 MB database of 10,000 events: 2.4 to 3.3 ms (Open in all
// 3.6 ms; integrity_check, which also checks every index against its table, 8.3 ms);
// on 20 MB (100,000 events) Open takes 65 ms; under the race detector about 100 times
// more. quick_check finds damaged pages, truncation and broken b-trees, which is
// what a bad disk or a bad copy does; Open can afford it on every start.
func quickCheck(ctx context.Context, db *sql.DB, path string) error {
	rows, err := db.QueryContext(ctx, fmt.Sprintf("PRAGMA quick_check(%d)", quickCheckLimit))
	if err != nil {
		return sqliteDamage(path, err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return sqliteDamage(path, err)
		}
		for _, line := range strings.Split(p, "\n") {
			if line != "ok" && line != "*** in database main ***" && line != "" {
				problems = append(problems, line)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return sqliteDamage(path, err)
	}
	if len(problems) > 0 {
		return corruptError(path, "SQLite's quick_check found: "+strings.Join(problems, "; "))
	}
	return nil
}

// sqliteDamage turns SQLite's "malformed" and "not a database" errors into ErrCorrupt.
func sqliteDamage(path string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
			return corruptError(path, "SQLite reports: "+se.Error())
		}
	}
	return fmt.Errorf("checking state database %s: %w", path, err)
}

// checkExisting checks the database file at path before anything may write to it: its
// header, its size, its schema version, then its pages. It reads only.
//
// Without a WAL the file is the whole database: the header's version is the real one
// and the pages are checked through db, which has written nothing yet. With a WAL
// (after a crash, or while another process has it open) the last commits, a newer
// schema version among them, may be only in the WAL: the version and the pages are
// then read through a read-only connection, which sees the WAL but cannot checkpoint
// it into the file when it closes, as closing a read-write one would.
func checkExisting(ctx context.Context, db *sql.DB, path string) error {
	h, ok, err := readHeader(path)
	if err != nil {
		return err
	}
	if !hasWAL(path) {
		if !ok {
			return nil // a new database
		}
		if err := h.checkSize(path); err != nil {
			return err
		}
		if h.version > len(migrations) {
			return newerSchemaError(path, h.version)
		}
		return quickCheck(ctx, db, path)
	}
	ro, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("opening state database %s: %w", path, err)
	}
	err = checkReadOnly(ctx, ro, path)
	if cerr := ro.Close(); err == nil && cerr != nil {
		return fmt.Errorf("closing the check of state database %s: %w", path, cerr)
	}
	return err
}

func checkReadOnly(ctx context.Context, ro *sql.DB, path string) error {
	var version int
	if err := ro.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return sqliteDamage(path, err)
	}
	if version > len(migrations) {
		return newerSchemaError(path, version)
	}
	return quickCheck(ctx, ro, path)
}

// refusal is Open's refusal of a file it left as it was: ErrCorrupt or ErrNewerSchema,
// with what is wrong and, once Open has closed its connection (so that the files it
// names are those left), what to do.
type refusal struct {
	kind       error
	path       string
	problem    string
	maxVersion int // for advice: the newest schema version a backup may have; 0 for any
	advice     string
}

func (r *refusal) Error() string {
	return fmt.Sprintf("%v: %s: %s; kiln did not change the file\n%s", r.kind, r.path, r.problem, r.advice)
}

func (r *refusal) Unwrap() error { return r.kind }

// corruptError is ErrCorrupt for path with what is wrong.
func corruptError(path, problem string) error {
	return &refusal{kind: ErrCorrupt, path: path, problem: problem}
}

func newerSchemaError(path string, version int) error {
	return &refusal{kind: ErrNewerSchema, path: path, maxVersion: len(migrations),
		problem: fmt.Sprintf("it has schema version %d, this kiln knows versions up to %d", version, len(migrations))}
}

// advise completes a refusal in err with what to do, from the files as they are now.
func advise(err error) {
	var r *refusal
	if !errors.As(err, &r) {
		return
	}
	r.advice = advice(r.path, r.maxVersion)
	if r.maxVersion > 0 {
		r.advice = "  run the newer kiln, or go back to this one with a backup (later changes are not in it):\n" + r.advice
	}
}

// shellQuote quotes p for a POSIX shell when it needs it.
func shellQuote(p string) string {
	if strings.Trim(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-+:@%=,") == "" {
		return p
	}
	return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
}

// advice says how to put a good database in place of path: restore the newest backup
// (of at most schema version maxVersion, when it is not 0) or, for a damaged file
// (maxVersion 0), start empty. The database's -wal and -shm go with it: left beside a
// restored copy, SQLite would replay the old WAL into it.
func advice(path string, maxVersion int) string {
	q := shellQuote
	aside := "mv " + q(path) + " " + q(path+".damaged")
	for _, side := range []string{"-wal", "-shm"} {
		if _, err := os.Lstat(path + side); err == nil {
			aside += " && mv " + q(path+side) + " " + q(path+side+".damaged")
		}
	}
	var lines []string
	backups, _ := Backups(path) // advice only: an unreadable backups directory means none to name
	for _, bk := range backups {
		if maxVersion == 0 || bk.Version <= maxVersion {
			lines = append(lines,
				fmt.Sprintf("  restore the most recent backup (schema version %d, taken %s before a schema upgrade; later changes are not in it):",
					bk.Version, bk.Taken.Format("2006-01-02 15:04:05 UTC")),
				"    "+aside+" && cp "+q(bk.Path)+" "+q(path))
			break
		}
	}
	switch {
	case len(lines) > 0:
	case maxVersion == 0:
		lines = append(lines, "  there is no backup of it in "+backupDir(path)+"/")
	default:
		lines = append(lines, fmt.Sprintf("  there is no backup of schema version %d or older in %s/", maxVersion, backupDir(path)))
	}
	if maxVersion == 0 {
		lines = append(lines, "  or move the file away and start with an empty state:", "    "+aside)
	}
	return strings.Join(lines, "\n")
}
