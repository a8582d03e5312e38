package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"modernc.org/sqlite"
)

// writeHooks holds each store's write hook (see SetWriteHook), beside the Store rather
// than in it: fault injection is for tests only.
var writeHooks sync.Map // *Store → *writeHook

type writeHook struct {
	h  func(ctx context.Context, op string) error
	mu sync.Mutex
	op string // what the transaction committing next wrote first, e.g. "insert events"
	// checked: tx already called h for the transaction committing next.
	checked bool
}

// SQLite's codes for the write a pre-update hook reports.
const (
	sqliteDelete = 9
	sqliteInsert = 18
	sqliteUpdate = 23
)

// SetWriteHook sets a fault injection point for tests: h is called before every write
// to the state commits, with what it writes ("insert events", "update rollouts"; a
// transaction of several statements is "transaction: " and its first write), and a
// non-nil error aborts it. In a transaction (tx) the write fails with h's error;
// outside one it fails with SQLite's error for a commit that its hook refused. h runs
// while the store's connection is held: it must not use the store. nil removes it.
// Not for production use: the daemon never sets one.
func (s *Store) SetWriteHook(h func(ctx context.Context, op string) error) {
	if h == nil {
		writeHooks.Delete(s)
		s.registerHooks(nil)
		return
	}
	w := &writeHook{h: h}
	writeHooks.Store(s, w)
	s.registerHooks(w)
}

// registerHooks installs w's SQLite hooks on the store's connection (it keeps one), or
// removes them when w is nil.
func (s *Store) registerHooks(w *writeHook) {
	ctx := context.Background()
	c, err := s.db.Conn(ctx)
	if err != nil {
		panic("store: write hook: " + err.Error())
	}
	defer c.Close()
	err = c.Raw(func(dc any) error {
		r, ok := dc.(sqlite.HookRegisterer)
		if !ok {
			return fmt.Errorf("the SQLite driver has no hooks")
		}
		if w == nil {
			r.RegisterPreUpdateHook(nil)
			r.RegisterCommitHook(nil)
			r.RegisterRollbackHook(nil)
			return nil
		}
		r.RegisterPreUpdateHook(func(d sqlite.SQLitePreUpdateData) {
			verb := map[int32]string{sqliteDelete: "delete", sqliteInsert: "insert", sqliteUpdate: "update"}[d.Op]
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.op == "" {
				w.op = verb + " " + d.TableName
			}
		})
		r.RegisterCommitHook(func() int32 {
			w.mu.Lock()
			op, checked := w.op, w.checked
			w.op, w.checked = "", false
			w.mu.Unlock()
			if checked || op == "" {
				return 0
			}
			if w.h(ctx, op) != nil {
				return 1 // SQLite turns the commit into a rollback
			}
			return 0
		})
		r.RegisterRollbackHook(func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.op, w.checked = "", false
		})
		return nil
	})
	if err != nil {
		panic("store: write hook: " + err.Error())
	}
}

// commit commits tx, unless the write hook refuses it.
func (s *Store) commit(ctx context.Context, tx *sql.Tx) error {
	v, ok := writeHooks.Load(s)
	if !ok {
		return tx.Commit()
	}
	w := v.(*writeHook)
	w.mu.Lock()
	op := w.op
	w.mu.Unlock()
	if err := w.h(ctx, "transaction: "+op); err != nil {
		tx.Rollback()
		return err
	}
	w.mu.Lock()
	w.checked = true
	w.mu.Unlock()
	return tx.Commit()
}
