package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// SetPipeline records a pipeline's definition (JSON), replacing an earlier one.
func (s *Store) SetPipeline(ctx context.Context, name, definition string) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO pipelines (name, definition, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at`, name, definition, now())
	return err
}

// Pipelines returns every pipeline's definition by name.
func (s *Store) Pipelines(ctx context.Context) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT name, definition FROM pipelines ORDER BY name")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var n, d string
		if err := rows.Scan(&n, &d); err != nil {
			return nil, err
		}
		out[n] = d
	}
	return out, rows.Err()
}

// Run is one pipeline run: one commit going through the stages.
type Run struct {
	ID       int64
	Pipeline string
	Commit   string
	Message  string
	Trigger  string
	State    RunState
	Detail   string
	Created  time.Time
	Started  time.Time
	Finished time.Time
	Stages   []Stage
}

// RunState is where a pipeline run is.
type RunState string

const (
	RunQueued      RunState = "queued"
	RunRunning     RunState = "running"
	RunSucceeded   RunState = "succeeded"
	RunFailed      RunState = "failed"
	RunSuperseded  RunState = "superseded"  // a newer commit was queued before it ran
	RunInterrupted RunState = "interrupted" // kiln stopped during the run
)

// StageState is where a stage of a run is.
type StageState string

const (
	StageRunning     StageState = "running"
	StageSucceeded   StageState = "succeeded"
	StageFailed      StageState = "failed"
	StageInterrupted StageState = "interrupted"
)

// Stage is one stage of a run.
type Stage struct {
	Name     string
	State    StageState
	Log      string
	Started  time.Time
	Finished time.Time
}

// ErrRunExists means the commit already has a run in that pipeline.
var ErrRunExists = errors.New("the commit already has a run")

// QueueRun records a queued run of commit, unless the commit has one already (then
// ErrRunExists, with the existing run): one run per commit, however often it is
// triggered. Older queued runs of the pipeline are marked superseded.
func (s *Store) QueueRun(ctx context.Context, pipeline, commit, message, trigger string) (Run, error) {
	r := Run{Pipeline: pipeline, Commit: commit, Message: message, Trigger: trigger, State: RunQueued, Created: time.Now().UTC()}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO pipeline_runs (pipeline, commit_sha, message, trigger, state, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`, pipeline, commit, message, trigger, r.State, r.Created.Format(timeFormat))
		if err != nil {
			return err
		}
		if r.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE pipeline_runs SET state = ?, detail = ?, finished_at = ?
			WHERE pipeline = ? AND state = ? AND id < ?`, RunSuperseded, fmt.Sprintf("superseded by the run of %s", shortSHA(commit)), now(), pipeline, RunQueued, r.ID)
		return err
	})
	if err != nil && strings.Contains(err.Error(), "UNIQUE") {
		existing, rerr := s.runByCommit(ctx, pipeline, commit)
		if rerr != nil {
			return existing, fmt.Errorf("%w (reading it: %v)", ErrRunExists, rerr)
		}
		return existing, ErrRunExists
	}
	return r, err
}

func shortSHA(c string) string { return c[:min(12, len(c))] }

// NextRun returns the oldest queued run of pipeline and marks it running, or
// ErrNotFound if none is queued.
func (s *Store) NextRun(ctx context.Context, pipeline string) (Run, error) {
	var r Run
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		r, err = scanRun(tx.QueryRowContext(ctx, "SELECT "+runColumns+" FROM pipeline_runs WHERE pipeline = ? AND state = ? ORDER BY id LIMIT 1", pipeline, RunQueued))
		if err != nil {
			return err
		}
		r.State, r.Started = RunRunning, time.Now().UTC()
		_, err = tx.ExecContext(ctx, "UPDATE pipeline_runs SET state = ?, started_at = ? WHERE id = ?", r.State, r.Started.Format(timeFormat), r.ID)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	}
	return r, err
}

// FinishRun records how a run ended.
func (s *Store) FinishRun(ctx context.Context, id int64, state RunState, detail string) error {
	_, err := s.db.ExecContext(ctx, "UPDATE pipeline_runs SET state = ?, detail = ?, finished_at = ? WHERE id = ?", state, detail, now(), id)
	return err
}

// InterruptRuns marks runs left running by a stop as interrupted, and returns them.
func (s *Store) InterruptRuns(ctx context.Context) ([]Run, error) {
	runs, err := s.runs(ctx, "SELECT "+runColumns+" FROM pipeline_runs WHERE state = ?", RunRunning)
	if err != nil {
		return nil, err
	}
	for _, r := range runs {
		if err := s.FinishRun(ctx, r.ID, RunInterrupted, "kiln stopped during the run"); err != nil {
			return nil, err
		}
		if _, err := s.db.ExecContext(ctx, "UPDATE pipeline_stages SET state = ?, finished_at = ? WHERE run_id = ? AND state = ?", StageInterrupted, now(), r.ID, StageRunning); err != nil {
			return nil, err
		}
	}
	return runs, nil
}

// StartStage and FinishStage record a stage of a run.
func (s *Store) StartStage(ctx context.Context, run int64, name string) error {
	_, err := s.db.ExecContext(ctx, "INSERT OR REPLACE INTO pipeline_stages (run_id, name, state, started_at) VALUES (?, ?, ?, ?)", run, name, StageRunning, now())
	return err
}

func (s *Store) FinishStage(ctx context.Context, run int64, name string, state StageState, log string) error {
	_, err := s.db.ExecContext(ctx, "UPDATE pipeline_stages SET state = ?, log = ?, finished_at = ? WHERE run_id = ? AND name = ?", state, log, now(), run, name)
	return err
}

const runColumns = "id, pipeline, commit_sha, message, trigger, state, detail, created_at, COALESCE(started_at, ''), COALESCE(finished_at, '')"

func scanRun(row interface{ Scan(...any) error }) (Run, error) {
	var r Run
	var c, st, f string
	err := row.Scan(&r.ID, &r.Pipeline, &r.Commit, &r.Message, &r.Trigger, &r.State, &r.Detail, &c, &st, &f)
	r.Created, r.Started, r.Finished = parseTime(c), parseTime(st), parseTime(f)
	return r, err
}

func (s *Store) runs(ctx context.Context, q string, args ...any) ([]Run, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *Store) runByCommit(ctx context.Context, pipeline, commit string) (Run, error) {
	return scanRun(s.db.QueryRowContext(ctx, "SELECT "+runColumns+" FROM pipeline_runs WHERE pipeline = ? AND commit_sha = ?", pipeline, commit))
}

// Runs returns the runs of pipeline (all when ""), newest first, at most limit.
func (s *Store) Runs(ctx context.Context, pipeline string, limit int) ([]Run, error) {
	return s.runs(ctx, "SELECT "+runColumns+" FROM pipeline_runs WHERE (? = '' OR pipeline = ?) ORDER BY id DESC LIMIT ?", pipeline, pipeline, limit)
}

// Run returns one run with its stages.
func (s *Store) Run(ctx context.Context, id int64) (Run, error) {
	r, err := scanRun(s.db.QueryRowContext(ctx, "SELECT "+runColumns+" FROM pipeline_runs WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("run %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, err
	}
	r.Stages, err = s.stages(ctx, id, true)
	return r, err
}

// RunStages returns a run's stages without their logs.
func (s *Store) RunStages(ctx context.Context, id int64) ([]Stage, error) {
	return s.stages(ctx, id, false)
}

func (s *Store) stages(ctx context.Context, id int64, logs bool) ([]Stage, error) {
	logColumn := "''"
	if logs {
		logColumn = "log"
	}
	var out []Stage
	rows, err := s.db.QueryContext(ctx, "SELECT name, state, "+logColumn+", started_at, COALESCE(finished_at, '') FROM pipeline_stages WHERE run_id = ? ORDER BY started_at", id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var st Stage
		var a, b string
		if err := rows.Scan(&st.Name, &st.State, &st.Log, &a, &b); err != nil {
			return nil, err
		}
		st.Started, st.Finished = parseTime(a), parseTime(b)
		out = append(out, st)
	}
	return out, rows.Err()
}
