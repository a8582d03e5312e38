package store

import (
	"context"
	"time"
)

// Event is something that happened to a service, a pipeline or one of their servers.
type Event struct {
	ID        int64     `json:"id"`
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind,omitempty"` // the subject's kind: "service" or "pipeline"
	Service   string    `json:"service"`        // the subject's name
	ServerID  string    `json:"server_id,omitempty"`
	RolloutID int64     `json:"rollout_id,omitempty"` // the rollout it happened in, 0 for none
	Step      string    `json:"step,omitempty"`       // the rollout's step, e.g. a wave
	Tone      string    `json:"tone,omitempty"`       // how it reads: e.g. "good", "bad"; "" for neutral
	Type      string    `json:"type"`
	Message   string    `json:"message"`
}

// AddEvent records an event and returns it with its ID and time.
func (s *Store) AddEvent(ctx context.Context, e Event) (Event, error) {
	e.Time = time.Now().UTC()
	res, err := s.db.ExecContext(ctx, `INSERT INTO events (time, kind, service, server_id, rollout_id, step, tone, type, message)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Time.Format(timeFormat), e.Kind, e.Service, e.ServerID, e.RolloutID, e.Step, e.Tone, e.Type, e.Message)
	if err != nil {
		return e, err
	}
	e.ID, err = res.LastInsertId()
	return e, err
}

// Events returns events after the one with ID since, oldest first, at most limit; only
// service's when service is not "".
func (s *Store) Events(ctx context.Context, service string, since int64, limit int) ([]Event, error) {
	return s.events(ctx, `WHERE id > ? AND (? = '' OR service = ?) ORDER BY id LIMIT ?`, since, service, service, limit)
}

// events returns the events that where (a WHERE clause and what follows) selects.
func (s *Store) events(ctx context.Context, where string, args ...any) ([]Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, time, kind, service, server_id, rollout_id, step, tone, type, message FROM events `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var t string
		if err := rows.Scan(&e.ID, &t, &e.Kind, &e.Service, &e.ServerID, &e.RolloutID, &e.Step, &e.Tone, &e.Type, &e.Message); err != nil {
			return nil, err
		}
		e.Time = parseTime(t)
		out = append(out, e)
	}
	return out, rows.Err()
}

// EventQuery selects events, newest first.
type EventQuery struct {
	Service   string    // "" for every service
	Kind      string    // "service" or "pipeline"; "" for every kind
	RolloutID int64     // only the events of this rollout; 0 for any
	Type      string    // "" for every type
	After     time.Time // zero for no bound
	Before    int64     // only events with a smaller ID; 0 for no bound
	Limit     int
}

// QueryEvents returns the events q selects, newest first.
func (s *Store) QueryEvents(ctx context.Context, q EventQuery) ([]Event, error) {
	before := q.Before
	if before <= 0 {
		before = 1<<63 - 1
	}
	after := ""
	if !q.After.IsZero() {
		after = q.After.UTC().Format(timeFormat)
	}
	return s.events(ctx, `WHERE id < ? AND (? = '' OR service = ?) AND (? = '' OR kind = ?) AND (? = 0 OR rollout_id = ?)
		AND (? = '' OR type = ?) AND (? = '' OR time >= ?)
		ORDER BY id DESC LIMIT ?`, before, q.Service, q.Service, q.Kind, q.Kind, q.RolloutID, q.RolloutID, q.Type, q.Type, after, after, q.Limit)
}

// EventTypes returns the types of the events recorded, sorted.
func (s *Store) EventTypes(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT type FROM events ORDER BY type`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
