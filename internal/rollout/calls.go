package rollout

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/kiln-build/kiln/internal/driver"
)

// How the executor calls the runtime: on its clock, each call bounded, retried with
// backoff and jitter.

func itoa(n int64) string { return fmt.Sprint(n) }

func (e *Executor) clock() clock.Clock {
	if e.Clock == nil {
		return clock.RealClock{}
	}
	return e.Clock
}

func (e *Executor) callTimeout() time.Duration {
	if e.CallTimeout > 0 {
		return e.CallTimeout
	}
	return DefaultCallTimeout
}

// withTimeout is context.WithTimeoutCause on the executor's clock: the context ends
// after d with cause (context.DeadlineExceeded when nil; else wrapping it), or when
// cancel is called. On the real clock it is context.WithTimeoutCause itself, so the
// context has a Deadline.
func (e *Executor) withTimeout(parent context.Context, d time.Duration, cause error) (context.Context, context.CancelFunc) {
	if cause == nil {
		cause = context.DeadlineExceeded
	} else {
		cause = fmt.Errorf("%w (%s): %w", cause, d, context.DeadlineExceeded)
	}
	if e.Clock == nil {
		return context.WithTimeoutCause(parent, d, cause)
	}
	ctx, cancel := context.WithCancelCause(parent)
	timer := e.clock().NewTimer(d)
	done := make(chan struct{})
	var once sync.Once
	go func() {
		select {
		case <-timer.C():
			cancel(cause)
		case <-ctx.Done():
		case <-done:
		}
	}()
	return ctx, func() {
		once.Do(func() {
			timer.Stop()
			close(done)
			cancel(nil)
		})
	}
}

// retry makes a driver call, each attempt bounded by timeout, up to Attempts times
// while it fails, waiting an exponential backoff with jitter between attempts. It stops
// when ctx ends. A call that times out fails with ErrDriverTimeout.
func (e *Executor) retry(ctx context.Context, service, what string, timeout time.Duration, call func(ctx context.Context) error) error {
	attempts := e.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	backoff := e.Backoff
	if backoff <= 0 {
		backoff = DefaultBackoff
	}
	for n := 1; ; n++ {
		cctx, cancel := e.withTimeout(ctx, timeout, ErrDriverTimeout)
		err := call(cctx)
		if err != nil && ctx.Err() == nil && errors.Is(context.Cause(cctx), ErrDriverTimeout) && !errors.Is(err, ErrDriverTimeout) {
			err = fmt.Errorf("%w (%s): %w", ErrDriverTimeout, timeout, err)
		}
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		if errors.Is(err, driver.ErrImageNotFound) || errors.Is(err, driver.ErrSetConflict) {
			return err // not transient: the caller must load the image first, or fix the set
		}
		if n >= attempts {
			if attempts > 1 {
				return fmt.Errorf("%s, %d attempts: %w", what, n, err)
			}
			return err
		}
		// Full jitter on the upper half: the waits of servers created together spread.
		wait := min(backoff<<(n-1), MaxBackoff)
		wait = wait/2 + rand.N(wait/2+1)
		timer := e.clock().NewTimer(wait)
		e.event(service, "", "retry", "%s failed (attempt %d of %d), retrying in %s: %v", what, n, attempts, wait.Round(time.Millisecond), err)
		select {
		case <-timer.C():
		case <-ctx.Done():
			timer.Stop()
			return err
		}
	}
}
