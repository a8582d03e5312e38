package engine

import (
	"context"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/door"
)

// Traffic history kept for each front door: samples of trafficStep, the last
// trafficSamples of them (five minutes).
const (
	trafficStep    = 10 * time.Second
	trafficSamples = 30
)

// traffic keeps a short history of each front door's requests and server errors, for
// the dashboard's sparklines, from the door's counters. It is memory only: a restart
// of the daemon starts the history over.
type traffic struct {
	stats func(context.Context) (map[string]door.ServiceStats, error)

	mu      sync.Mutex
	last    map[string]trafficCount // the door's counters at the last sample
	history map[string][]api.Sample
}

type trafficCount struct{ requests, errors uint64 }

func newTraffic(stats func(context.Context) (map[string]door.ServiceStats, error)) *traffic {
	return &traffic{stats: stats, last: map[string]trafficCount{}, history: map[string][]api.Sample{}}
}

// run samples the door's counters every trafficStep until ctx ends.
func (t *traffic) run(ctx context.Context) {
	tick := time.NewTicker(trafficStep)
	defer tick.Stop()
	t.read(ctx, time.Time{}) // the baseline
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t.read(ctx, now)
		}
	}
}

func (t *traffic) read(ctx context.Context, now time.Time) {
	rctx, cancel := context.WithTimeout(ctx, trafficStep/2)
	defer cancel()
	if st, err := t.stats(rctx); err == nil {
		t.sample(now, st)
	}
}

// sample records what each door counted since the last sample; a zero now only sets
// the baseline. Counters lower than last time are a restarted door's: counted from 0.
func (t *traffic) sample(now time.Time, stats map[string]door.ServiceStats) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for service, st := range stats {
		cur := trafficCount{requests: st.Count}
		for code, n := range st.Codes {
			if len(code) == 3 && code[0] == '5' {
				cur.errors += n
			}
		}
		prev, seen := t.last[service]
		t.last[service] = cur
		if now.IsZero() {
			continue
		}
		if !seen || cur.requests < prev.requests || cur.errors < prev.errors {
			prev = trafficCount{}
		}
		s := api.Sample{Time: now.UTC(), Requests: int64(cur.requests - prev.requests), Errors: int64(cur.errors - prev.errors)}
		h := append(t.history[service], s)
		if len(h) > trafficSamples {
			h = h[len(h)-trafficSamples:]
		}
		t.history[service] = h
	}
}

// Traffic returns the recent request counts of service's front door, oldest first,
// one sample per 10 s.
func (e *Engine) Traffic(service string) []api.Sample {
	e.traffic.mu.Lock()
	defer e.traffic.mu.Unlock()
	return append([]api.Sample(nil), e.traffic.history[service]...)
}
