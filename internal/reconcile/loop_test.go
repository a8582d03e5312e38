package reconcile

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// recorder is a Reconciler that reports each pass on a channel and answers with what
// the test puts in reply.
type recorder struct {
	mu      sync.Mutex
	running map[string]int
	worst   int
	passes  chan pass
	reply   func(key string, n int) (time.Duration, error)
	counts  map[string]int
	release chan struct{} // when non-nil, each pass waits for it
}

type pass struct {
	key  string
	full bool
}

func newRecorder() *recorder {
	return &recorder{running: map[string]int{}, passes: make(chan pass, 100), counts: map[string]int{},
		reply: func(string, int) (time.Duration, error) { return 0, nil }}
}

func (r *recorder) Reconcile(ctx context.Context, key string, full bool) (time.Duration, error) {
	r.mu.Lock()
	r.running[key]++
	r.worst = max(r.worst, r.running[key])
	r.counts[key]++
	n := r.counts[key]
	release := r.release
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.running[key]--
		r.mu.Unlock()
	}()
	r.passes <- pass{key, full}
	if release != nil {
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	return r.reply(key, n)
}

func start(t *testing.T, r Reconciler, clk *clocktesting.FakeClock, keys ...string) (*Loop, context.CancelFunc, chan error) {
	t.Helper()
	l := New(r, Options{Keys: func(context.Context) ([]string, error) { return keys, nil }, Resync: time.Minute, Clock: clk})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Start(ctx) }()
	return l, cancel, done
}

func TestResyncIsFullAndEventsAreNot(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	r := newRecorder()
	l, cancel, done := start(t, r, clk, "a", "b")
	got := map[pass]bool{<-r.passes: true, <-r.passes: true}
	if !got[pass{"a", true}] || !got[pass{"b", true}] {
		t.Fatalf("the first resync passed %v, want a and b in full", got)
	}
	l.Enqueue("a")
	if p := <-r.passes; p != (pass{"a", false}) {
		t.Fatalf("an event passed %+v, want a, not full", p)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A key is never reconciled by two workers at once; keys enqueued while it runs are
// coalesced into one more pass.
func TestOneWorkerPerKeyAndCoalescing(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	r := newRecorder()
	r.release = make(chan struct{})
	l, cancel, done := start(t, r, clk, "a")
	<-r.passes // the resync's pass, held
	for range 10 {
		l.Enqueue("a")
	}
	r.release <- struct{}{}
	<-r.passes // one more pass for the ten events
	r.release <- struct{}{}
	select {
	case p := <-r.passes:
		t.Fatalf("an extra pass %+v: events were not coalesced", p)
	default:
	}
	cancel()
	<-done
	if r.worst != 1 {
		t.Fatalf("%d passes of one key ran at once", r.worst)
	}
}

// A pass that asks to be requeued is, after the time it asked; an error is retried
// with doubling backoff; Start returns only after the pass in flight has ended.
func TestRequeueAndRetry(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	r := newRecorder()
	r.reply = func(key string, n int) (time.Duration, error) {
		switch n {
		case 1:
			return 30 * time.Second, nil
		case 2, 3:
			return 0, errors.New("runtime unavailable")
		}
		return 0, nil
	}
	_, cancel, done := start(t, r, clk, "a")
	<-r.passes // 1: requeue after 30 s
	waitAndStep(clk, 29*time.Second)
	expectNone(t, r)
	waitAndStep(clk, time.Second)
	<-r.passes // 2: error: retried after 1 s
	waitAndStep(clk, time.Second)
	<-r.passes // 3: error: retried after 2 s
	waitAndStep(clk, time.Second)
	expectNone(t, r)
	waitAndStep(clk, time.Second)
	<-r.passes // 4
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// waitAndStep steps the fake clock by d once a key waits on it: besides the resync
// ticker and the queue's heartbeat, the queue's timer for its next delayed key.
func waitAndStep(clk *clocktesting.FakeClock, d time.Duration) {
	for clk.Waiters() < 3 {
		time.Sleep(time.Millisecond)
	}
	clk.Step(d)
}

// expectNone fails if a pass starts soon: checked at a point where none may run.
func expectNone(t *testing.T, r *recorder) {
	t.Helper()
	select {
	case p := <-r.passes:
		t.Fatalf("unexpected pass %+v", p)
	case <-time.After(50 * time.Millisecond):
	}
}
