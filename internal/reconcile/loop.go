package reconcile

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// Reconciler brings one key to its desired state, re-reading desired and observed
// state on every call.
type Reconciler interface {
	// Reconcile does one pass for key; full asks for the periodic checks too (a
	// resync's). It returns how long to wait before looking at key again even if
	// nothing happens (0: at the next event or resync), or an error, after which key is
	// retried with backoff.
	Reconcile(ctx context.Context, key string, full bool) (requeueAfter time.Duration, err error)
}

// Options configure a Loop.
type Options struct {
	// Keys lists every key, for each resync. Required.
	Keys func(ctx context.Context) ([]string, error)
	// Resync is how often every key is reconciled in full, events or not.
	Resync time.Duration
	// Workers is how many keys are reconciled at once (DefaultWorkers when 0).
	Workers int
	// RetryBase and RetryMax bound the backoff after errors: RetryBase doubled at each
	// failure in a row, up to RetryMax (1 s and 5 min when 0).
	RetryBase, RetryMax time.Duration
	// Clock is real time when nil.
	Clock clock.WithTicker
	Log   *slog.Logger
}

// DefaultWorkers is how many keys a loop reconciles at once by default.
const DefaultWorkers = 8

// Loop is a reconcile loop. Enqueue may be called before Start; nothing runs until
// Start.
type Loop struct {
	r     Reconciler
	opts  Options
	queue workqueue.TypedRateLimitingInterface[string]

	mu   sync.Mutex
	full map[string]bool // keys whose next pass is a full one
}

// New returns a loop for r; it starts no goroutine.
func New(r Reconciler, opts Options) *Loop {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = time.Second
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 5 * time.Minute
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	limiter := workqueue.NewTypedItemExponentialFailureRateLimiter[string](opts.RetryBase, opts.RetryMax)
	q := workqueue.NewTypedRateLimitingQueueWithConfig(limiter, workqueue.TypedRateLimitingQueueConfig[string]{
		Name: "", Clock: opts.Clock,
	})
	return &Loop{r: r, opts: opts, queue: q, full: map[string]bool{}}
}

// Enqueue asks for a pass over key as soon as a worker is free. It never blocks and
// never drops: a key queued already is queued once.
func (l *Loop) Enqueue(key string) { l.queue.Add(key) }

// Start resyncs every Resync and reconciles queued keys until ctx ends; then it stops
// handing out keys, waits for the passes in flight (which see ctx end) and returns nil.
func (l *Loop) Start(ctx context.Context) error {
	var workers sync.WaitGroup
	for range l.opts.Workers {
		workers.Go(func() {
			for l.next(ctx) {
			}
		})
	}
	l.resync(ctx)
	tick := l.opts.Clock.NewTicker(l.opts.Resync)
	defer func() {
		tick.Stop()
		l.queue.ShutDown()
		workers.Wait()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C():
			l.resync(ctx)
		}
	}
}

// resync queues every key for a full pass.
func (l *Loop) resync(ctx context.Context) {
	keys, err := l.opts.Keys(ctx)
	if err != nil {
		if ctx.Err() == nil {
			l.opts.Log.Error("reconcile: listing keys", "err", err)
		}
		return
	}
	l.mu.Lock()
	for _, k := range keys {
		l.full[k] = true
	}
	l.mu.Unlock()
	for _, k := range keys {
		l.queue.Add(k)
	}
}

// next reconciles one key; false once the queue is shut down.
func (l *Loop) next(ctx context.Context) bool {
	key, quit := l.queue.Get()
	if quit {
		return false
	}
	defer l.queue.Done(key)
	l.mu.Lock()
	full := l.full[key]
	delete(l.full, key)
	l.mu.Unlock()
	after, err := l.r.Reconcile(ctx, key, full)
	switch {
	case ctx.Err() != nil:
	case err != nil:
		l.queue.AddRateLimited(key)
	default:
		l.queue.Forget(key)
		if after > 0 {
			l.queue.AddAfter(key, after)
		}
	}
	return true
}
