package health

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultInterval is the time between probes when WaitHealthy is given none.
const DefaultInterval = time.Second

// ErrDefinitive means the server answered its health check, and said it was not
// healthy, Check.FailAfter times in a row.
var ErrDefinitive = errors.New("the server answers its health check with a failure")

// StartInterval is the time between probes until a server has passed its first one,
// while it does not answer: a server that is not listening yet costs a few
// milliseconds, not a whole interval (Docker's --health-start-interval plays the same
// part). Such a probe is a refused connection; examples/hello listens within about
// 10 ms of its container's start, and probed every 50 ms its first pass came some
// 40 ms late at every step of a rollout.
const StartInterval = 10 * time.Millisecond

// StartAnswerInterval is the time between probes before a first pass once the server
// answers that it is not healthy (a 503 while it warms up): Check.FailAfter such
// answers in a row fail the gate no sooner than FailAfter × 50 ms.
const StartAnswerInterval = 50 * time.Millisecond

// WaitHealthy is the health gate of a rollout: it probes the server at addr every
// interval (every StartInterval, or StartAnswerInterval, until a probe first passes)
// and returns nil once healthyThreshold probes in a row have passed and every probe has
// kept passing for minHealthy after that. A failed probe starts the count over,
// except within startPeriod of the call: a server still starting may fail, and those
// failures are ignored (they neither count nor break a run of passes).
//
// With c.FailAfter, that many definitive answers in a row after startPeriod (the server
// answers, and says it is not healthy) end the wait at once with an error wrapping
// ErrDefinitive.
//
// WaitHealthy has no deadline of its own: the caller bounds it with ctx (the progress
// deadline). When ctx ends it returns an error wrapping ctx's error and, if a probe
// failed, the last probe error, so that the user sees why the server never became
// healthy.
func WaitHealthy(ctx context.Context, addr string, c Check, interval, minHealthy, startPeriod time.Duration, healthyThreshold int) error {
	if (c.HTTPPath == "") == !c.TCP {
		return ErrInvalidCheck
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	healthyThreshold = max(healthyThreshold, 1)

	start := time.Now()
	var (
		passes     int       // probes passed in a row
		definitive int       // definitive answers in a row
		healthyAt  time.Time // when passes reached healthyThreshold; zero before
		lastErr    error     // the last failed probe, for the final error
		lastPassed time.Time // when a probe last passed; zero before the first
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return notHealthy(ctx, lastErr, healthyAt, minHealthy)
		case <-timer.C:
		}
		probed := time.Now()
		err := Probe(ctx, addr, c)
		if dl, ok := ctx.Deadline(); ok && err != nil && !time.Now().Before(dl) {
			// The probe was cut short by ctx's deadline (its dial or read timed out
			// with it), even if ctx does not say so yet: the probe before explains more.
			<-ctx.Done()
		}
		if ctx.Err() != nil {
			return notHealthy(ctx, lastErr, healthyAt, minHealthy)
		}
		now := time.Now()
		switch {
		case err == nil:
			passes, definitive = passes+1, 0
			if passes == healthyThreshold {
				healthyAt = now
			}
		case probed.Sub(start) < startPeriod:
			lastErr = err // ignored, but still the best explanation if ctx ends
		default:
			lastErr = err
			passes, healthyAt = 0, time.Time{}
			if definitive++; !IsDefinitive(err) {
				definitive = 0
			}
			if c.FailAfter > 0 && definitive >= c.FailAfter {
				return fmt.Errorf("%w: %w, %d times in a row", ErrDefinitive, err, definitive)
			}
		}
		if err == nil && !healthyAt.IsZero() && now.Sub(healthyAt) >= minHealthy {
			return nil
		}
		// Probe on the interval (faster until the first pass), but probe again as soon as
		// min_healthy is reached.
		next := probed.Add(interval)
		if passes == 0 && healthyAt.IsZero() && lastPassed.IsZero() {
			every := StartInterval
			if IsDefinitive(err) {
				every = StartAnswerInterval
			}
			next = probed.Add(min(interval, every))
		}
		if err == nil {
			lastPassed = now
		}
		if end := healthyAt.Add(minHealthy); !healthyAt.IsZero() && end.Before(next) {
			next = end
		}
		timer.Reset(max(time.Until(next), 0))
	}
}

func notHealthy(ctx context.Context, lastErr error, healthyAt time.Time, minHealthy time.Duration) error {
	cause := context.Cause(ctx)
	switch {
	case !healthyAt.IsZero():
		return fmt.Errorf("%w: healthy for %s of min_healthy %s", cause, time.Since(healthyAt).Round(time.Millisecond), minHealthy)
	case lastErr != nil:
		return fmt.Errorf("%w: last probe: %w", cause, lastErr)
	}
	return cause
}
