package engine

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-build/kiln/internal/api"
)

// Traffic history kept for each front door: samples of trafficStep, the last
// trafficSamples of them (five minutes).
const (
	trafficStep    = 10 * time.Second
	trafficSamples = 30
)

// traffic counts each front door's requests and server errors and keeps a short
// history of them, for the dashboard's sparklines. It is memory only: a restart starts
// the history over.
type traffic struct {
	mu      sync.Mutex
	live    map[string]*trafficCount
	history map[string][]api.Sample
}

type trafficCount struct{ requests, errors atomic.Int64 }

func newTraffic() *traffic {
	return &traffic{live: map[string]*trafficCount{}, history: map[string][]api.Sample{}}
}

func (t *traffic) count(service string) *trafficCount {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.live[service]
	if c == nil {
		c = &trafficCount{}
		t.live[service] = c
	}
	return c
}

// middleware counts the requests of service's front door and those answered 5xx.
func (t *traffic) middleware(service string) func(http.Handler) http.Handler {
	c := t.count(service)
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
			h.ServeHTTP(sw, r)
			c.requests.Add(1)
			if sw.code >= 500 {
				c.errors.Add(1)
			}
		})
	}
}

// run samples the counters every trafficStep until ctx ends.
func (t *traffic) run(ctx context.Context) {
	tick := time.NewTicker(trafficStep)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t.sample(now)
		}
	}
}

func (t *traffic) sample(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for service, c := range t.live {
		s := api.Sample{Time: now.UTC(), Requests: c.requests.Swap(0), Errors: c.errors.Swap(0)}
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

// statusWriter remembers the status code a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
