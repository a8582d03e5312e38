package canary

import (
	"fmt"
	"math"
	"time"

	"github.com/kiln-build/kiln/internal/door"
	"github.com/kiln-build/kiln/internal/spec"
)

// Figures are one group's measurements over a window.
type Figures struct {
	Requests, Errors uint64
	P50, P99         time.Duration
	latency          []uint64 // the histogram (door.GroupBuckets) they come from
}

// slower counts the requests that took longer than d: those of the buckets whose
// every value is above it.
func (f Figures) slower(d time.Duration) uint64 {
	var n uint64
	for i, c := range f.latency {
		if i > 0 && door.GroupBuckets[i-1] >= d.Seconds() {
			n += c
		}
	}
	return n
}

// ErrorRatio is the share of the requests that failed, 0 without requests.
func (f Figures) ErrorRatio() float64 {
	if f.Requests == 0 {
		return 0
	}
	return float64(f.Errors) / float64(f.Requests)
}

func (f Figures) String() string {
	if f.Requests == 0 {
		return "no request"
	}
	return fmt.Sprintf("%d requests, %s errors, p50 %s, p99 %s", f.Requests, percent(f.ErrorRatio()), ms(f.P50), ms(f.P99))
}

// Since is what a group's counters counted from before to now. Counters of another
// epoch (or lower than before) are those of a door that restarted meanwhile: now is
// counted whole.
func Since(before, now door.GroupStats) door.GroupStats {
	if now.Epoch != before.Epoch || now.Requests < before.Requests || len(before.Latency) != len(now.Latency) {
		return now
	}
	out := door.GroupStats{Epoch: now.Epoch, Requests: now.Requests - before.Requests, Latency: make([]uint64, len(now.Latency))}
	if now.Errors >= before.Errors {
		out.Errors = now.Errors - before.Errors
	}
	for i := range now.Latency {
		if now.Latency[i] >= before.Latency[i] {
			out.Latency[i] = now.Latency[i] - before.Latency[i]
		}
	}
	return out
}

// Window is one side's requests from a baseline on, read from the door's counters
// time after time: what the door counted before it restarted is kept.
type Window struct {
	begun     bool
	before    door.GroupStats // the baseline, in the counters' epoch
	last      door.GroupStats // the last read
	restarted door.GroupStats // what the window held when the door last restarted
}

// Read takes the counters as they are now and returns the window so far: nothing at
// the first read, which is the baseline.
func (w *Window) Read(now door.GroupStats) door.GroupStats {
	if !w.begun {
		w.begun, w.before, w.last = true, now, now
		return door.GroupStats{Epoch: now.Epoch, Latency: make([]uint64, len(now.Latency))}
	}
	if now.Epoch != w.before.Epoch {
		w.restarted = add(w.restarted, Since(w.before, w.last))
		w.before = door.GroupStats{Epoch: now.Epoch, Latency: make([]uint64, len(now.Latency))}
	}
	w.last = now
	return add(w.restarted, Since(w.before, now))
}

func add(a, b door.GroupStats) door.GroupStats {
	out := door.GroupStats{Epoch: b.Epoch, Requests: a.Requests + b.Requests, Errors: a.Errors + b.Errors,
		Latency: make([]uint64, max(len(a.Latency), len(b.Latency)))}
	for i := range out.Latency {
		if i < len(a.Latency) {
			out.Latency[i] += a.Latency[i]
		}
		if i < len(b.Latency) {
			out.Latency[i] += b.Latency[i]
		}
	}
	return out
}

// Measure turns a window's counters into figures. A percentile is the upper bound of
// the histogram bucket it falls in (door.GroupBuckets: within 9%), so a group is never
// reported faster than it was.
func Measure(g door.GroupStats) Figures {
	return Figures{Requests: g.Requests, Errors: g.Errors, P50: quantile(g.Latency, 0.50), P99: quantile(g.Latency, 0.99), latency: g.Latency}
}

func quantile(hist []uint64, q float64) time.Duration {
	var n uint64
	for _, c := range hist {
		n += c
	}
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for i, c := range hist {
		seen += c
		if seen >= rank {
			if i >= len(door.GroupBuckets) {
				i = len(door.GroupBuckets) - 1 // slower than every bound: the last
			}
			return time.Duration(door.GroupBuckets[i] * float64(time.Second))
		}
	}
	return 0
}

// Decision is what an analysis says of a step.
type Decision string

const (
	Pass Decision = "pass" // every rule holds, over enough requests
	Fail Decision = "fail" // a rule is broken
	Wait Decision = "wait" // not enough requests yet to judge
)

// Verdict is a judgement of the canary against the stable set.
type Verdict struct {
	Decision Decision
	// Why says which rules failed (Fail) or what is missing (Wait), with the figures.
	Why []string
}

// z is the one-sided normal quantile of the confidence an error rule fails with
// (95%): a rule on errors fails only when the canary is worse than its limit beyond
// what chance makes of its requests, so that a good version is not aborted for one
// unlucky error among few requests.
const z = 1.645

// Judge checks the canary's figures against the analysis a and the stable set's
// figures over the same window. With fewer than a.MinRequests requests on the canary
// it waits; then each rule fails only when the canary breaks it with 95% confidence:
// an error rule when the lower bound of the Wilson score interval of its error ratio
// is over the limit, a latency rule on the p-th percentile when that bound, for the
// share of its requests slower than the limit, is over 1 - p (for p99: clearly more
// than 1% of its requests are slower), so that a few slow requests among few (a cold
// start, a pause of the collector) abort nothing. The metrics are Prometheus results
// already read: any broken limit fails.
func Judge(a spec.Analysis, canary, stable Figures, metrics []Metric) Verdict {
	var why []string
	for _, m := range metrics {
		if m.Err != nil {
			continue // an unreadable metric cannot pass a step, nor fail one by itself: see Metric
		}
		if m.Max != nil && m.Value > *m.Max {
			why = append(why, fmt.Sprintf("%s = %g is above its max %g", m.Name, m.Value, *m.Max))
		}
		if m.Min != nil && m.Value < *m.Min {
			why = append(why, fmt.Sprintf("%s = %g is below its min %g", m.Name, m.Value, *m.Min))
		}
	}
	min := uint64(max(a.MinRequests, 1))
	if canary.Requests < min {
		if len(why) > 0 {
			return Verdict{Fail, why}
		}
		return Verdict{Wait, []string{fmt.Sprintf("the canary served %d of the %d requests it needs to be judged", canary.Requests, min)}}
	}
	low := wilsonLow(canary.Errors, canary.Requests)
	errs := fmt.Sprintf("%s (%d of %d)", percent(canary.ErrorRatio()), canary.Errors, canary.Requests)
	if a.MaxErrorRatio > 0 && low > a.MaxErrorRatio {
		why = append(why, fmt.Sprintf("error ratio %s is above max_error_ratio %s", errs, percent(a.MaxErrorRatio)))
	}
	if a.MaxErrorRatioOverStable > 0 && low > stable.ErrorRatio()+a.MaxErrorRatioOverStable {
		why = append(why, fmt.Sprintf("error ratio %s is above stable's %s + %s", errs, percent(stable.ErrorRatio()), percent(a.MaxErrorRatioOverStable)))
	}
	for _, r := range []struct {
		name              string
		q                 float64
		canary, stable    time.Duration
		limit, overStable time.Duration
	}{
		{"p50", 0.50, canary.P50, stable.P50, a.MaxP50, a.MaxP50OverStable},
		{"p99", 0.99, canary.P99, stable.P99, a.MaxP99, a.MaxP99OverStable},
	} {
		over := func(limit time.Duration) (string, bool) {
			k := canary.slower(limit)
			return fmt.Sprintf("%d of %d requests slower than %s", k, canary.Requests, ms(limit)), wilsonLow(k, canary.Requests) > 1-r.q
		}
		if r.limit > 0 {
			if n, ok := over(r.limit); ok {
				why = append(why, fmt.Sprintf("%s latency %s is above max_%s %s (%s)", r.name, ms(r.canary), r.name, ms(r.limit), n))
			}
		}
		if r.overStable > 0 && stable.Requests > 0 {
			if n, ok := over(r.stable + r.overStable); ok {
				why = append(why, fmt.Sprintf("%s latency %s is above stable's %s + %s (%s)", r.name, ms(r.canary), ms(r.stable), ms(r.overStable), n))
			}
		}
	}
	if len(why) > 0 {
		return Verdict{Fail, why}
	}
	for _, m := range metrics {
		if m.Err != nil {
			return Verdict{Wait, []string{fmt.Sprintf("%s: %v", m.Name, m.Err)}}
		}
	}
	return Verdict{Pass, nil}
}

// wilsonLow is the lower bound of the Wilson score interval of errors in n, at z.
func wilsonLow(errors, n uint64) float64 {
	if n == 0 {
		return 0
	}
	p, nf := float64(errors)/float64(n), float64(n)
	z2 := z * z
	centre := p + z2/(2*nf)
	margin := z * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	return max(0, (centre-margin)/(1+z2/nf))
}

// Metric is one Prometheus query's result for a step; Err when it could not be read.
type Metric struct {
	Name     string
	Value    float64
	Max, Min *float64
	Err      error
}

func percent(r float64) string { return fmt.Sprintf("%.2f%%", 100*r) }

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}
