package door

import (
	"context"
	"math"
	"strconv"
	"sync"
	"time"
)

// LatencyBuckets are the upper bounds (seconds) of the door's latency histogram:
// 0.5 ms doubling to about 16 s, as kiln_frontdoor_request_duration_seconds has them.
var LatencyBuckets = func() []float64 {
	b := make([]float64, 16)
	for i := range b {
		b[i] = 0.0005 * math.Pow(2, float64(i))
	}
	return b
}()

// ServiceStats are a service's counters since the door started.
type ServiceStats struct {
	// Codes counts the answers by status code ("200", "503"...).
	Codes map[string]uint64 `json:"codes"`
	// Buckets[i] counts the requests that took at most LatencyBuckets[i] (not
	// cumulative); Count and Sum (seconds) are over all requests.
	Buckets []uint64 `json:"buckets"`
	Count   uint64   `json:"count"`
	Sum     float64  `json:"sum"`
	// InRotation are the servers new requests go to; Down, those the door's own checks
	// took out of rotation.
	InRotation []string `json:"in_rotation"`
	Down       []string `json:"down,omitempty"`
	// Groups count the requests by where they were sent: GroupStable (the rotation) and
	// GroupCanary.
	Groups map[string]GroupStats `json:"groups,omitempty"`
}

type counters struct {
	mu      sync.Mutex
	codes   map[int]uint64
	buckets []uint64
	count   uint64
	sum     float64
}

func newCounters() *counters {
	return &counters{codes: map[int]uint64{}, buckets: make([]uint64, len(LatencyBuckets)+1)}
}

func (c *counters) observe(code int, took time.Duration) {
	sec := took.Seconds()
	i := 0
	for i < len(LatencyBuckets) && sec > LatencyBuckets[i] {
		i++
	}
	c.mu.Lock()
	c.codes[code]++
	c.buckets[i]++
	c.count++
	c.sum += sec
	c.mu.Unlock()
}

func (c *counters) snapshot() ServiceStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := ServiceStats{Codes: make(map[string]uint64, len(c.codes)), Buckets: append([]uint64(nil), c.buckets...), Count: c.count, Sum: c.sum}
	for code, n := range c.codes {
		st.Codes[strconv.Itoa(code)] = n
	}
	return st
}

// Stats returns every service's counters and rotation, by name.
func (s *Server) Stats(context.Context) (map[string]ServiceStats, error) {
	s.mu.Lock()
	svcs := make(map[string]*service, len(s.services))
	for k, v := range s.services {
		svcs[k] = v
	}
	s.mu.Unlock()
	out := make(map[string]ServiceStats, len(svcs))
	for name, svc := range svcs {
		st := svc.stats.snapshot()
		st.InRotation = svc.inRotation()
		st.Down = svc.Down()
		st.Groups = map[string]GroupStats{GroupStable: svc.groups[0].snapshot(), GroupCanary: svc.groups[1].snapshot()}
		out[name] = st
	}
	return out, nil
}
