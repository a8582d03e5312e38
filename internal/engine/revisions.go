package engine

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-build/kiln/internal/canary"
	"github.com/kiln-build/kiln/internal/door"
)

// revisionTraffic counts each revision's requests, errors and latency through its
// front door, for the metrics a canary is watched by: the door counts by side (stable,
// canary), and each read of its counters adds what a side served since the last read
// to the revision the side had then. Reads come with every scrape and every tick of a
// canary's analysis, so a revision's counts are right to within one of those. Memory
// only, counted from the daemon's start.
type revisionTraffic struct {
	mu    sync.Mutex
	last  map[string]map[string]door.GroupStats // by service, by side: the counters last read
	byRev map[revisionKey]*door.GroupStats
}

// keptRevisions is how many of a service's newest revisions have series: the older
// ones, replaced long ago, leave /metrics.
const keptRevisions = 10

type revisionKey struct {
	service  string
	revision int64
}

func newRevisionTraffic() *revisionTraffic {
	return &revisionTraffic{last: map[string]map[string]door.GroupStats{}, byRev: map[revisionKey]*door.GroupStats{}}
}

// add counts what each side of service's door served since the last read, to the
// revision revisionOf gives it (none: not counted).
func (r *revisionTraffic) add(service string, groups map[string]door.GroupStats, revisionOf map[string]int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	last := r.last[service]
	if last == nil {
		last = map[string]door.GroupStats{}
		r.last[service] = last
	}
	for side, now := range groups {
		before, seen := last[side]
		last[side] = now
		rev, ok := revisionOf[side]
		if !seen || !ok || rev == 0 {
			continue // the first read is the baseline
		}
		d := canary.Since(before, now)
		c := r.byRev[revisionKey{service, rev}]
		if c == nil {
			c = &door.GroupStats{Latency: make([]uint64, len(door.GroupBuckets)+1)}
			r.byRev[revisionKey{service, rev}] = c
			for k := range r.byRev { // the series of a service's last keptRevisions only
				if k.service == service && k.revision <= rev-keptRevisions {
					delete(r.byRev, k)
				}
			}
		}
		c.Requests += d.Requests
		c.Errors += d.Errors
		for i := range min(len(c.Latency), len(d.Latency)) {
			c.Latency[i] += d.Latency[i]
		}
	}
}

var (
	revisionRequestsDesc = prometheus.NewDesc("kiln_revision_requests_total", "Requests a revision answered through its service's front door, since the daemon started.", []string{"service", "revision"}, nil)
	revisionErrorsDesc   = prometheus.NewDesc("kiln_revision_errors_total", "Requests of a revision answered 5xx or failed by a server, since the daemon started.", []string{"service", "revision"}, nil)
	revisionLatencyDesc  = prometheus.NewDesc("kiln_revision_request_duration_seconds", "Latency of a revision's requests through its service's front door.", []string{"service", "revision"}, nil)
	canaryWeightDesc     = prometheus.NewDesc("kiln_canary_weight_percent", "The share of a service's requests its canary takes, while one is on trial.", []string{"service", "revision"}, nil)
	canaryStepDesc       = prometheus.NewDesc("kiln_canary_step", "The step a service's canary is at (from 1), while one is on trial.", []string{"service", "revision"}, nil)
)

// collect reports every revision's counters; the histogram's buckets are the door's
// doubled (every 8th bound of door.GroupBuckets).
func (r *revisionTraffic) collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, c := range r.byRev {
		rev := strconv.FormatInt(k.revision, 10)
		ch <- prometheus.MustNewConstMetric(revisionRequestsDesc, prometheus.CounterValue, float64(c.Requests), k.service, rev)
		ch <- prometheus.MustNewConstMetric(revisionErrorsDesc, prometheus.CounterValue, float64(c.Errors), k.service, rev)
		buckets := map[float64]uint64{}
		var cum uint64
		for i, n := range c.Latency {
			cum += n
			if i < len(door.GroupBuckets) && i%8 == 7 {
				buckets[door.GroupBuckets[i]] = cum
			}
		}
		// The sum is not kept (the door counts by bucket): estimated from the bounds.
		var sum float64
		for i, n := range c.Latency {
			sum += float64(n) * door.GroupBuckets[min(i, len(door.GroupBuckets)-1)]
		}
		ch <- prometheus.MustNewConstHistogram(revisionLatencyDesc, c.Requests, sum, buckets, k.service, rev)
	}
}

// revisionsOf says which revision each side of service's door serves: the stable
// side the trial's stable revision while a canary is on trial, else the service's
// target; the canary side the canary's.
func (e *Engine) revisionsOf(service string) map[string]int64 {
	e.mu.Lock()
	t, hasTarget := e.targets[service]
	tr := e.trials[service]
	e.mu.Unlock()
	out := map[string]int64{}
	if hasTarget {
		out[door.GroupStable] = t.Revision
	}
	if tr != nil {
		if st := tr.get(); tr.isRunning(st.Revision) && st.From != 0 {
			out[door.GroupStable], out[door.GroupCanary] = st.From, st.Revision
		}
	}
	return out
}

// collectCanaries reports the weight and step of every canary on trial.
func (e *Engine) collectCanaries(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	trials := make(map[string]*trial, len(e.trials))
	for k, v := range e.trials {
		trials[k] = v
	}
	e.mu.Unlock()
	for service, tr := range trials {
		st := tr.get()
		if !tr.isRunning(st.Revision) {
			continue
		}
		rev := strconv.FormatInt(st.Revision, 10)
		ch <- prometheus.MustNewConstMetric(canaryWeightDesc, prometheus.GaugeValue, st.Weight, service, rev)
		ch <- prometheus.MustNewConstMetric(canaryStepDesc, prometheus.GaugeValue, float64(st.Step), service, rev)
	}
}
