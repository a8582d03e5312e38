package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fileState is what must not change when Open refuses a file: the bytes and mtime of
// the database and of its -wal and -shm, and the names in its directory.
type fileState struct {
	files map[string][32]byte
	mtime map[string]time.Time
	names []string
}

func stateOf(t *testing.T, path string) fileState {
	t.Helper()
	st := fileState{files: map[string][32]byte{}, mtime: map[string]time.Time{}}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st.files[p], st.mtime[p] = sha256.Sum256(b), fi.ModTime()
	}
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		st.names = append(st.names, e.Name())
	}
	return st
}

func (st fileState) assertSame(t *testing.T, path string, except ...string) {
	t.Helper()
	now := stateOf(t, path)
	if !slices.Equal(st.names, now.names) {
		t.Errorf("directory holds %v, held %v", now.names, st.names)
	}
	for p, sum := range st.files {
		if slices.Contains(except, p) {
			continue
		}
		if now.files[p] != sum {
			t.Errorf("%s changed", filepath.Base(p))
		}
		if !now.mtime[p].Equal(st.mtime[p]) {
			t.Errorf("%s mtime changed: %v → %v", filepath.Base(p), st.mtime[p], now.mtime[p])
		}
	}
}

// copyFile copies src to dst, 0600.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// v2Fixture puts testdata/kiln-v2.db (written by kiln at schema version 2, see
// testdata/README.md) at dir/kiln.db and returns that path.
func v2Fixture(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "kiln.db")
	copyFile(t, filepath.Join("testdata", "kiln-v2.db"), path)
	return path
}

// readOnly opens a database file that must not change, without creating anything
// beside it.
func readOnly(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?immutable=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func count(t *testing.T, db *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMigrationFromSchema2BacksUpAndKeepsEveryRow(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := v2Fixture(t, dir)
	s := open(t, path)

	backups, err := Backups(path)
	if err != nil || len(backups) != 1 {
		t.Fatalf("backups %+v, %v; want one", backups, err)
	}
	b := backups[0]
	if b.Version != 2 || filepath.Dir(b.Path) != filepath.Join(dir, "backups") || !strings.HasPrefix(filepath.Base(b.Path), "kiln-v2-") {
		t.Errorf("backup %+v", b)
	}
	if fi, err := os.Stat(b.Path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Dir(b.Path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("backups directory: %v, %v; want mode 0700", fi.Mode(), err)
	}
	old := readOnly(t, b.Path)
	var version int
	if err := old.QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != 2 {
		t.Errorf("backup's user_version %d, %v; want 2", version, err)
	}
	for table, want := range map[string]int{"revisions": 2, "services": 1, "rollouts": 1, "events": 3, "pipelines": 1, "pipeline_runs": 1, "pipeline_stages": 1} {
		if n := count(t, old, table); n != want {
			t.Errorf("backup's %s: %d rows, want %d", table, n, want)
		}
	}
	if _, err := old.Exec("SELECT kind FROM events"); err == nil {
		t.Error("the backup's events have a kind column: it was taken after migrating")
	}

	var now int
	if err := s.db.QueryRow("PRAGMA user_version").Scan(&now); err != nil || now != len(migrations) {
		t.Fatalf("user_version %d, %v; want %d", now, err, len(migrations))
	}
	revs, err := s.Revisions(ctx, "web")
	if err != nil || len(revs) != 2 {
		t.Fatalf("revisions %+v, %v", revs, err)
	}
	if r := revs[0]; r.Number != 2 || r.Image != "sha256:bbb" || r.Spec != `{"replicas":2}` || r.AppliedBy != "alice" || r.Commit != "c0ffee" ||
		r.Outcome != OutcomeRolledBack || r.Detail != "health check failed" || r.Created.IsZero() {
		t.Errorf("revision 2 reads back as %+v", r)
	}
	if revs[1].Outcome != OutcomeDeployed {
		t.Errorf("revision 1 reads back as %+v", revs[1])
	}
	if sv, err := s.Service(ctx, "web"); err != nil || sv.Current != 2 {
		t.Errorf("service web: %+v, %v", sv, err)
	}
	ros, err := s.Rollouts(ctx, "web")
	if err != nil || len(ros) != 1 || ros[0].State != RolloutRolledBack || ros[0].Owner != "kiln (pid 1)" || ros[0].Finished.IsZero() {
		t.Errorf("rollouts %+v, %v", ros, err)
	}
	evs, err := s.Events(ctx, "", 0, 10)
	if err != nil || len(evs) != 3 {
		t.Fatalf("events %+v, %v", evs, err)
	}
	if e := evs[0]; e.Service != "web" || e.ServerID != "web-1" || e.Type != "server_created" || e.Message != "server web-1 created" ||
		e.Kind != "service" || e.RolloutID != 0 || e.Step != "" || e.Tone != "" {
		t.Errorf("first event reads back as %+v", e)
	}
	if evs[2].Service != "api" || evs[2].Type != "drift" {
		t.Errorf("third event reads back as %+v", evs[2])
	}
	if p, err := s.Pipelines(ctx); err != nil || p["main"] != `{"stages":["bake","test"]}` {
		t.Errorf("pipelines %v, %v", p, err)
	}
	runs, err := s.Runs(ctx, "main", 10)
	if err != nil || len(runs) != 1 || runs[0].Commit != "0123456789abcdef" || runs[0].State != "succeeded" {
		t.Fatalf("runs %+v, %v", runs, err)
	}
	run, err := s.Run(ctx, runs[0].ID)
	if err != nil || len(run.Stages) != 1 || run.Stages[0].Log != "baked" || run.Stages[0].State != "succeeded" {
		t.Errorf("run %+v, %v", run, err)
	}

	// Reopening at the latest version takes no further backup.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, path)
	if again, _ := Backups(path); len(again) != 1 {
		t.Errorf("after a reopen, backups %+v", again)
	}
}

func TestANewDatabaseIsNotBackedUp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kiln.db")
	open(t, path)
	if _, err := os.Stat(backupDir(path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("backups directory of a new database: %v", err)
	}
}

func TestBackupsKeepTheLastFive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kiln.db")
	// A backup interrupted by a crash leaves its temporary file; the next one removes it.
	if err := os.MkdirAll(backupDir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(backupDir(path), "kiln-v2-20200101T000000Z.db.tmp")
	unrelated := filepath.Join(backupDir(path), "notes.txt")
	for _, p := range []string{stale, unrelated} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var taken []string
	for range 7 {
		for _, side := range []string{"", "-wal", "-shm"} {
			if err := removeIfExists(path + side); err != nil {
				t.Fatal(err)
			}
		}
		v2Fixture(t, dir)
		s, err := Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := Backups(path)
		if err != nil || len(b) == 0 {
			t.Fatalf("backups %v, %v", b, err)
		}
		taken = append(taken, b[0].Path)
	}
	backups, err := Backups(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range backups {
		got = append(got, b.Path)
	}
	want := slices.Clone(taken[2:])
	slices.Reverse(want)
	if !slices.Equal(got, want) {
		t.Errorf("backups kept:\n%s\nwant the newest five, newest first:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, p := range taken[:2] {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("old backup %s: %v, want removed", p, err)
		}
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary backup: %v, want removed", err)
	}
	if _, err := os.Stat(unrelated); err != nil {
		t.Errorf("a file that is not a backup was touched: %v", err)
	}
}

// damagedDatabase makes dir/kiln.db at the latest schema with a backup (migrated from
// the v2 fixture) and enough events to span many pages, closed cleanly.
func damagedDatabase(t *testing.T, dir string) string {
	t.Helper()
	ctx := context.Background()
	path := v2Fixture(t, dir)
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if _, err := s.AddEvent(ctx, Event{Kind: "service", Service: "web", Type: "test", Message: fmt.Sprintf("event %d: %s", i, strings.Repeat("x", 250))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDamagedDatabaseIsRefusedUnchanged(t *testing.T) {
	damage := map[string]func(t *testing.T, path string){
		"garbage over pages": func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			fi, _ := f.Stat()
			garbage := bytes.Repeat([]byte("kiln garbage "), 3*4096/13)
			if _, err := f.WriteAt(garbage, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		},
		"truncated to half": func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()/2/4096*4096); err != nil {
				t.Fatal(err)
			}
		},
		"truncated mid-page": func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()/2/4096*4096+1000); err != nil {
				t.Fatal(err)
			}
		},
		"zeroed header": func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(make([]byte, 100), 0); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, spoil := range damage {
		t.Run(name, func(t *testing.T) {
			path := damagedDatabase(t, t.TempDir())
			backups, err := Backups(path)
			if err != nil || len(backups) != 1 {
				t.Fatalf("backups %v, %v", backups, err)
			}
			spoil(t, path)
			before := stateOf(t, path)
			s, err := Open(context.Background(), path)
			if err == nil {
				s.Close()
				t.Fatal("Open accepted a damaged database")
			}
			t.Logf("Open: %v", err)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("error is not ErrCorrupt: %v", err)
			}
			for _, want := range []string{path, "kiln did not change the file", "cp " + backups[0].Path + " " + path, "mv " + path + " " + path + ".damaged"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q", want)
				}
			}
			before.assertSame(t, path)
			// Refusing is idempotent: a second Open says the same and still writes nothing.
			if _, err2 := Open(context.Background(), path); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("second Open: %v", err2)
			}
			before.assertSame(t, path)

			// The advice works: its restore command, run as printed, gives a store
			// that opens with the backup's data.
			lines := strings.Split(err.Error(), "\n")
			i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, "restore the most recent backup") })
			if i < 0 || i+1 >= len(lines) {
				t.Fatalf("no restore command in %q", err)
			}
			if out, err := exec.Command("sh", "-c", strings.TrimSpace(lines[i+1])).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v: %s", lines[i+1], err, out)
			}
			if _, err := os.Stat(path + ".damaged"); err != nil {
				t.Errorf("the damaged file was not kept aside: %v", err)
			}
			s = open(t, path)
			if revs, err := s.Revisions(context.Background(), "web"); err != nil || len(revs) != 2 {
				t.Errorf("restored store's revisions: %+v, %v", revs, err)
			}
		})
	}
}

// The size check catches a truncation the header can tell; quick_check catches one
// it cannot (here with the header's page count made invalid, as it is in files
// written by old SQLite versions).
func TestQuickCheckFindsTruncation(t *testing.T) {
	path := damagedDatabase(t, t.TempDir())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = b[:len(b)/2/4096*4096]
	b[95]++ // version-valid-for no longer matches the change counter
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	h, _, err := readHeader(path)
	if err != nil || h.pages != 0 || h.checkSize(path) != nil {
		t.Fatalf("the header still tells the size: %+v, %v", h, err)
	}
	before := stateOf(t, path)
	_, err = Open(context.Background(), path)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "quick_check") {
		t.Errorf("Open: %v", err)
	}
	before.assertSame(t, path)
}

func TestDamagedDatabaseWithoutBackupSaysSo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kiln.db")
	if err := os.WriteFile(path, []byte("this is not a database, but it is long enough to hold a header of a hundred bytes ............"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := stateOf(t, path)
	_, err := Open(context.Background(), path)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "there is no backup of it in "+backupDir(path)) {
		t.Errorf("Open: %v", err)
	}
	before.assertSame(t, path)
}

func TestNewerSchemaIsRefusedWithoutAWrite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kiln.db")
	s := open(t, path)
	if _, err := s.db.Exec(fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := stateOf(t, path)
	if len(before.files) != 1 {
		t.Fatalf("a cleanly closed database has %v beside it", before.names)
	}
	_, err := Open(ctx, path)
	t.Logf("Open: %v", err)
	if !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d, this kiln knows versions up to %d", len(migrations)+1, len(migrations))) ||
		!strings.Contains(err.Error(), "there is no backup of schema version 3 or older") ||
		!strings.Contains(err.Error(), "kiln did not change the file") {
		t.Errorf("Open: %v", err)
	}
	before.assertSame(t, path)
}

// A newer kiln that migrated and crashed before a checkpoint leaves its version in the
// WAL only; that is refused too, without checkpointing the WAL into the file.
func TestNewerSchemaInTheWALIsRefusedWithoutAWrite(t *testing.T) {
	ctx := context.Background()
	live := filepath.Join(t.TempDir(), "kiln.db")
	s := open(t, live)
	if _, err := s.db.Exec(fmt.Sprintf("PRAGMA user_version = %d", len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	// A copy taken while s is open is the files as a crash would leave them.
	path := filepath.Join(t.TempDir(), "kiln.db")
	for _, side := range []string{"", "-wal", "-shm"} {
		copyFile(t, live+side, path+side)
	}
	if h, _, err := readHeader(path); err != nil || h.version > len(migrations) {
		t.Fatalf("the file's header says version %d (%v): the test needs the newer one in the WAL only", h.version, err)
	}
	before := stateOf(t, path)
	_, err := Open(ctx, path)
	if !errors.Is(err, ErrNewerSchema) {
		t.Errorf("Open: %v", err)
	}
	// The -shm is SQLite's index of the WAL, rebuilt from it by whoever opens the
	// database after a crash (a read-only connection too); it holds no data.
	before.assertSame(t, path, path+"-shm")
}

func TestEventKindRolloutStepTone(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "kiln.db"))
	for _, e := range []Event{
		{Kind: "service", Service: "web", RolloutID: 7, Step: "wave 1", Tone: "good", Type: "server_healthy", Message: "a"},
		{Kind: "service", Service: "web", RolloutID: 8, Step: "wave 1", Tone: "bad", Type: "server_unhealthy", Message: "b"},
		{Kind: "pipeline", Service: "main", Type: "run_started", Message: "c"},
		{Kind: "service", Service: "web", RolloutID: 7, Step: "wave 2", Type: "server_healthy", Message: "d"},
	} {
		if _, err := s.AddEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	messages := func(evs []Event, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var m []string
		for _, e := range evs {
			m = append(m, e.Message)
		}
		return strings.Join(m, "")
	}
	for _, c := range []struct {
		q    EventQuery
		want string
	}{
		{EventQuery{Limit: 10}, "dcba"},
		{EventQuery{RolloutID: 7, Limit: 10}, "da"},
		{EventQuery{Kind: "pipeline", Limit: 10}, "c"},
		{EventQuery{Kind: "service", Service: "web", RolloutID: 8, Limit: 10}, "b"},
		{EventQuery{Kind: "service", Type: "server_healthy", Limit: 10}, "da"},
	} {
		if got := messages(s.QueryEvents(ctx, c.q)); got != c.want {
			t.Errorf("QueryEvents(%+v) = %q, want %q", c.q, got, c.want)
		}
	}
	evs, err := s.Events(ctx, "web", 0, 10)
	if err != nil || len(evs) != 3 {
		t.Fatalf("events %+v, %v", evs, err)
	}
	if e := evs[0]; e.Kind != "service" || e.RolloutID != 7 || e.Step != "wave 1" || e.Tone != "good" {
		t.Errorf("event reads back as %+v", e)
	}
}
