package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver; pure Go, no cgo
)

// Sentinel errors, matched with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	// ErrRolloutInProgress: the service already has a running rollout.
	ErrRolloutInProgress = errors.New("a rollout of this service is already in progress")
)

// Store is the state database. It is safe for concurrent use.
type Store struct {
	db   *sql.DB
	path string
}

// Open opens (creating if needed) the database at path and brings its schema up to
// date. It does not block on another kiln beyond SQLite's busy timeout (10 s).
//
// Before anything writes to an existing file, Open reads its header and checks its
// pages (PRAGMA quick_check): a damaged file is ErrCorrupt, a schema newer than this
// kiln's is ErrNewerSchema, and in both cases the file is left byte for byte as it
// was (the version is read from the header with plain file reads, so a newer kiln's
// database is not even opened by SQLite). Before migrating an existing database to a
// newer schema, Open copies it into backups/ beside it (see Backups) and keeps the
// last five copies.
//
// Durability: WAL mode with synchronous=FULL, so every commit is fsynced before the
// call that made it returns. With WAL, synchronous=NORMAL would also survive a kill
// of kiln (the commit is in the OS's page cache), but a power loss or kernel crash
// could lose the last commits; kiln acts on what it records (a rollout started, a
// server replaced), so a commit it has acted on must survive the machine too. The
// cost is one fsync of the WAL per commit: 3.6 ms here (200 single-event commits).
func Open(ctx context.Context, path string) (*Store, error) {
	// No journal_mode in the DSN: switching to WAL is a write, made only after the checks.
	dsn := "file:" + path + "?_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening state database %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer at a time; SQLite serializes anyway
	s := &Store{db: db, path: path}
	err = checkExisting(ctx, db, path)
	if err == nil {
		err = s.migrate(ctx)
	}
	if err != nil {
		if cerr := db.Close(); cerr != nil {
			err = fmt.Errorf("%w (closing it: %v)", err, cerr)
		}
		advise(err)
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// migrate brings the schema to the latest version, each migration in a transaction.
// An existing database (version above 0) is backed up first.
func (s *Store) migrate(ctx context.Context) error {
	var version int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return sqliteDamage(s.path, err)
	}
	if version > len(migrations) {
		// checkExisting read an older one: a newer kiln migrated the file since.
		return newerSchemaError(s.path, version)
	}
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		return fmt.Errorf("state database %s: setting WAL mode: %w", s.path, err)
	}
	if mode != "wal" {
		return fmt.Errorf("state database %s: journal mode is %q, not wal", s.path, mode)
	}
	if version == len(migrations) {
		return nil
	}
	if version > 0 {
		if _, err := s.backup(ctx, version); err != nil {
			return fmt.Errorf("state database %s: backing it up before migrating from schema version %d (nothing migrated): %w", s.path, version, err)
		}
	}
	for i := version; i < len(migrations); i++ {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1))
			return err
		})
		if err != nil {
			return fmt.Errorf("state database %s: migration %d: %w", s.path, i+1, err)
		}
	}
	return nil
}

func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return rollback(tx, err)
	}
	return s.commit(ctx, tx)
}

// rollback ends tx after err, adding the rollback's own failure, if any, to err. A
// transaction database/sql already ended (its context was cancelled) is not one.
func rollback(tx *sql.Tx, err error) error {
	if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
		return errors.Join(err, fmt.Errorf("rolling back: %w", rerr))
	}
	return err
}

const timeFormat = time.RFC3339Nano

func now() string { return time.Now().UTC().Format(timeFormat) }

func parseTime(s string) time.Time {
	t, _ := time.Parse(timeFormat, s)
	return t
}

// Revision is an immutable, numbered snapshot of a service's desired state.
type Revision struct {
	Service   string
	Number    int64
	Image     string // manifest digest
	ImageName string
	Spec      string // the service's settings as JSON (see engine)
	Source    string // the spec file as applied
	AppliedBy string
	Commit    string
	Created   time.Time
	Outcome   Outcome
	Detail    string
}

// Outcome is how a revision's rollout ended.
type Outcome string

const (
	OutcomePending    Outcome = "pending"
	OutcomeDeployed   Outcome = "deployed"
	OutcomeFailed     Outcome = "failed"      // rolled out, failed, not reverted
	OutcomeRolledBack Outcome = "rolled_back" // failed and reverted to the previous revision
)

// CreateRevision records r as the service's next revision (its number is assigned) and
// returns it. It does not make it current.
func (s *Store) CreateRevision(ctx context.Context, r Revision) (Revision, error) {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(number), 0) + 1 FROM revisions WHERE service = ?", r.Service).Scan(&r.Number); err != nil {
			return err
		}
		r.Created, r.Outcome = time.Now().UTC(), OutcomePending
		_, err := tx.ExecContext(ctx, `INSERT INTO revisions
			(service, number, image, image_name, spec, source, applied_by, git_commit, created_at, outcome)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Service, r.Number, r.Image, r.ImageName, r.Spec, r.Source, r.AppliedBy, r.Commit, r.Created.Format(timeFormat), r.Outcome)
		return err
	})
	if err != nil {
		return Revision{}, fmt.Errorf("recording revision of %s: %w", r.Service, err)
	}
	return r, nil
}

const revisionColumns = "service, number, image, image_name, spec, source, applied_by, git_commit, created_at, outcome, detail"

func scanRevision(row interface{ Scan(...any) error }) (Revision, error) {
	var r Revision
	var created string
	err := row.Scan(&r.Service, &r.Number, &r.Image, &r.ImageName, &r.Spec, &r.Source, &r.AppliedBy, &r.Commit, &created, &r.Outcome, &r.Detail)
	r.Created = parseTime(created)
	return r, err
}

// Revision returns revision number of service.
func (s *Store) Revision(ctx context.Context, service string, number int64) (Revision, error) {
	r, err := scanRevision(s.db.QueryRowContext(ctx, "SELECT "+revisionColumns+" FROM revisions WHERE service = ? AND number = ?", service, number))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("revision %d of service %q: %w", number, service, ErrNotFound)
	}
	return r, err
}

// Revisions returns every revision of service, newest first.
func (s *Store) Revisions(ctx context.Context, service string) ([]Revision, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+revisionColumns+" FROM revisions WHERE service = ? ORDER BY number DESC", service)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Revision
	for rows.Next() {
		r, err := scanRevision(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// SetOutcome records how a revision's rollout ended.
func (s *Store) SetOutcome(ctx context.Context, service string, number int64, o Outcome, detail string) error {
	_, err := s.db.ExecContext(ctx, "UPDATE revisions SET outcome = ?, detail = ? WHERE service = ? AND number = ?", o, detail, service, number)
	return err
}

// Service is a service kiln manages and the revision that should be running.
type Service struct {
	Name    string
	Current int64
	Created time.Time
	Updated time.Time
}

// SetCurrent makes revision number the one that should be running for service.
func (s *Store) SetCurrent(ctx context.Context, service string, number int64) error {
	t := now()
	_, err := s.db.ExecContext(ctx, `INSERT INTO services (name, current, created_at, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET current = excluded.current, updated_at = excluded.updated_at`, service, number, t, t)
	return err
}

// Services returns every service, by name.
func (s *Store) Services(ctx context.Context) ([]Service, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT name, current, created_at, updated_at FROM services ORDER BY name")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Service
	for rows.Next() {
		var sv Service
		var c, u string
		if err := rows.Scan(&sv.Name, &sv.Current, &c, &u); err != nil {
			return nil, err
		}
		sv.Created, sv.Updated = parseTime(c), parseTime(u)
		out = append(out, sv)
	}
	return out, rows.Err()
}

// Service returns one service.
func (s *Store) Service(ctx context.Context, name string) (Service, error) {
	var sv Service
	var c, u string
	err := s.db.QueryRowContext(ctx, "SELECT name, current, created_at, updated_at FROM services WHERE name = ?", name).Scan(&sv.Name, &sv.Current, &c, &u)
	if errors.Is(err, sql.ErrNoRows) {
		return sv, fmt.Errorf("service %q: %w", name, ErrNotFound)
	}
	sv.Created, sv.Updated = parseTime(c), parseTime(u)
	return sv, err
}

// DeleteService forgets a service's desired state; its revisions stay as history.
func (s *Store) DeleteService(ctx context.Context, name string) error {
	_, err := s.db.ExecContext(ctx, "DELETE FROM services WHERE name = ?", name)
	return err
}

// KeptImages returns the image digests that must stay in the image store: those of
// the keep newest revisions of every service, and of every current revision.
func (s *Store) KeptImages(ctx context.Context, keep int) (map[string]bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT image FROM revisions r WHERE
		(SELECT COUNT(*) FROM revisions n WHERE n.service = r.service AND n.number > r.number) < ?
		OR EXISTS (SELECT 1 FROM services sv WHERE sv.name = r.service AND sv.current = r.number)`, keep)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, err
		}
		out[d] = true
	}
	return out, rows.Err()
}

// Rollout is the move of a service from one revision to another.
type Rollout struct {
	ID       int64
	Service  string
	From, To int64
	Strategy string
	State    RolloutState
	Detail   string
	Owner    string // who runs it, e.g. "kiln serve pid 123"
	Started  time.Time
	Finished time.Time
}

// RolloutState is where a rollout is.
type RolloutState string

const (
	RolloutRunning    RolloutState = "running"
	RolloutSucceeded  RolloutState = "succeeded"
	RolloutFailed     RolloutState = "failed"
	RolloutRolledBack RolloutState = "rolled_back"
)

// StartRollout records a running rollout. It fails with ErrRolloutInProgress, naming
// the running one, if the service already has one.
func (s *Store) StartRollout(ctx context.Context, r Rollout) (Rollout, error) {
	r.State, r.Started = RolloutRunning, time.Now().UTC()
	res, err := s.db.ExecContext(ctx, `INSERT INTO rollouts (service, from_revision, to_revision, strategy, state, owner, started_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, r.Service, r.From, r.To, r.Strategy, r.State, r.Owner, r.Started.Format(timeFormat))
	if err != nil {
		if strings.Contains(err.Error(), "UNIQUE") {
			if cur, err2 := s.RunningRollout(ctx, r.Service); err2 == nil {
				return r, fmt.Errorf("%w: revision %d → %d, started %s by %s", ErrRolloutInProgress, cur.From, cur.To, cur.Started.Format(time.RFC3339), cur.Owner)
			}
			return r, ErrRolloutInProgress
		}
		return r, err
	}
	r.ID, err = res.LastInsertId()
	return r, err
}

// FinishRollout records how a rollout ended.
func (s *Store) FinishRollout(ctx context.Context, id int64, state RolloutState, detail string) error {
	_, err := s.db.ExecContext(ctx, "UPDATE rollouts SET state = ?, detail = ?, finished_at = ? WHERE id = ?", state, detail, now(), id)
	return err
}

const rolloutColumns = "id, service, from_revision, to_revision, strategy, state, detail, owner, started_at, COALESCE(finished_at, '')"

func scanRollout(row interface{ Scan(...any) error }) (Rollout, error) {
	var r Rollout
	var started, finished string
	err := row.Scan(&r.ID, &r.Service, &r.From, &r.To, &r.Strategy, &r.State, &r.Detail, &r.Owner, &started, &finished)
	r.Started, r.Finished = parseTime(started), parseTime(finished)
	return r, err
}

// RunningRollout returns the service's running rollout.
func (s *Store) RunningRollout(ctx context.Context, service string) (Rollout, error) {
	r, err := scanRollout(s.db.QueryRowContext(ctx, "SELECT "+rolloutColumns+" FROM rollouts WHERE service = ? AND state = 'running'", service))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("running rollout of %q: %w", service, ErrNotFound)
	}
	return r, err
}

// RunningRollouts returns every rollout still marked running: after a crash, the ones
// to resume.
func (s *Store) RunningRollouts(ctx context.Context) ([]Rollout, error) {
	return s.rollouts(ctx, "SELECT "+rolloutColumns+" FROM rollouts WHERE state = 'running' ORDER BY id")
}

// Rollouts returns the rollouts of service, newest first.
func (s *Store) Rollouts(ctx context.Context, service string) ([]Rollout, error) {
	return s.rollouts(ctx, "SELECT "+rolloutColumns+" FROM rollouts WHERE service = ? ORDER BY id DESC", service)
}

func (s *Store) rollouts(ctx context.Context, q string, args ...any) ([]Rollout, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Rollout
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ImageUse is a revision that runs an image.
type ImageUse struct {
	Image    string
	Service  string
	Revision int64
	Current  bool
}

// ImageUses returns every revision with its image, newest first.
func (s *Store) ImageUses(ctx context.Context) ([]ImageUse, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT r.image, r.service, r.number,
		EXISTS (SELECT 1 FROM services sv WHERE sv.name = r.service AND sv.current = r.number)
		FROM revisions r ORDER BY r.service, r.number DESC`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ImageUse
	for rows.Next() {
		var u ImageUse
		if err := rows.Scan(&u.Image, &u.Service, &u.Revision, &u.Current); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
