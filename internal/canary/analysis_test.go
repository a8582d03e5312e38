package canary

import (
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/door"
	"github.com/kiln-build/kiln/internal/spec"
)

// window is counters of n requests, errs failed, every one taking took.
func window(n, errs uint64, took time.Duration) door.GroupStats {
	g := door.GroupStats{Requests: n, Errors: errs, Latency: make([]uint64, len(door.GroupBuckets)+1)}
	i := 0
	for i < len(door.GroupBuckets) && door.GroupBuckets[i] < took.Seconds() {
		i++
	}
	g.Latency[i] = n
	return g
}

func sum(a, b door.GroupStats) door.GroupStats {
	out := door.GroupStats{Requests: a.Requests + b.Requests, Errors: a.Errors + b.Errors, Latency: make([]uint64, len(a.Latency))}
	for i := range out.Latency {
		out.Latency[i] = a.Latency[i] + b.Latency[i]
	}
	return out
}

func TestMeasure(t *testing.T) {
	// 98 fast requests and 2 slow ones: p50 is fast, p99 slow, each within a bucket.
	f := Measure(sum(window(98, 0, time.Millisecond), window(2, 2, 50*time.Millisecond)))
	if f.Requests != 100 || f.Errors != 2 || f.ErrorRatio() != 0.02 {
		t.Errorf("figures %+v", f)
	}
	if f.P50 < time.Millisecond || f.P50 > 1100*time.Microsecond {
		t.Errorf("p50 %s, want 1ms to within a bucket", f.P50)
	}
	if f.P99 < 50*time.Millisecond || f.P99 > 55*time.Millisecond {
		t.Errorf("p99 %s, want 50ms to within a bucket", f.P99)
	}
	if Measure(door.GroupStats{}).P99 != 0 {
		t.Error("an empty window has a p99")
	}
}

// A window goes on across a restart of the door: what was counted before it is kept.
func TestWindowAcrossRestart(t *testing.T) {
	var w Window
	at := func(epoch int64, n, errs uint64) door.GroupStats {
		g := window(n, errs, time.Millisecond)
		g.Epoch = epoch
		return g
	}
	w.Read(at(1, 1000, 200)) // the baseline
	if got := w.Read(at(1, 1100, 220)); got.Requests != 100 || got.Errors != 20 {
		t.Fatalf("window = %d requests, %d errors", got.Requests, got.Errors)
	}
	// The door restarts: its counters begin again, and pass the old baseline.
	got := w.Read(at(2, 1500, 100))
	if got.Requests != 1600 || got.Errors != 120 {
		t.Errorf("after a restart: %d requests, %d errors; want 100 + 1500 and 20 + 100", got.Requests, got.Errors)
	}
}

func TestSince(t *testing.T) {
	before, now := window(100, 1, time.Millisecond), window(250, 4, time.Millisecond)
	if got := Since(before, now); got.Requests != 150 || got.Errors != 3 || got.Latency[len(got.Latency)-1] != 0 {
		t.Errorf("Since = %d requests, %d errors", got.Requests, got.Errors)
	}
	// A door that restarted counts from zero: now is the window.
	if got := Since(now, before); got.Requests != 100 {
		t.Errorf("after a restart of the door: %d requests, want 100", got.Requests)
	}
}

func TestJudge(t *testing.T) {
	a := spec.Analysis{MinRequests: 100, MaxErrorRatioOverStable: 0.01, MaxP99OverStable: 25 * time.Millisecond}
	stable := Measure(window(2000, 0, time.Millisecond))
	one := 1.0
	for _, tc := range []struct {
		name    string
		a       spec.Analysis
		canary  door.GroupStats
		stable  Figures
		metrics []Metric
		want    Decision
		why     string
	}{
		{"too few requests", a, window(99, 0, time.Millisecond), stable, nil, Wait, "99 of the 100"},
		{"good", a, window(100, 0, time.Millisecond), stable, nil, Pass, ""},
		// One error in 100 is 1%, but no worse than the limit beyond chance.
		{"one unlucky error", a, window(100, 1, time.Millisecond), stable, nil, Pass, ""},
		{"20% of requests fail", a, window(100, 20, time.Millisecond), stable, nil, Fail, "error ratio 20.00% (20 of 100) is above stable's 0.00% + 1.00%"},
		{"a stable set failing as much", a, window(100, 20, time.Millisecond), Measure(window(2000, 400, time.Millisecond)), nil, Pass, ""},
		{"absolute error limit", spec.Analysis{MinRequests: 10, MaxErrorRatio: 0.05}, window(200, 30, time.Millisecond), stable, nil, Fail, "above max_error_ratio 5.00%"},
		{"50ms slower at p99", a, sum(window(95, 0, time.Millisecond), window(5, 0, 51*time.Millisecond)), stable, nil, Fail, "p99 latency"},
		// Two slow requests of 100 (a cold start): not clearly more than 1%.
		{"a cold start", a, sum(window(98, 0, time.Millisecond), window(2, 0, 200*time.Millisecond)), stable, nil, Pass, ""},
		{"one slow request in 200: p99 fast", a, sum(window(995, 0, time.Millisecond), window(5, 0, 60*time.Millisecond)), stable, nil, Pass, ""},
		{"one slow request in 50: p99 slow", a, sum(window(980, 0, time.Millisecond), window(20, 0, 60*time.Millisecond)), stable, nil, Fail, "20 of 1000 requests slower than"},
		{"one slow request in 20, many", a, sum(window(950, 0, time.Millisecond), window(50, 0, 60*time.Millisecond)), stable, nil, Fail, "50 of 1000 requests slower than"},
		{"10ms slower at p99", a, sum(window(95, 0, time.Millisecond), window(5, 0, 11*time.Millisecond)), stable, nil, Pass, ""},
		{"absolute p50", spec.Analysis{MinRequests: 1, MaxP50: 5 * time.Millisecond}, window(10, 0, 20*time.Millisecond), stable, nil, Fail, "p50 latency"},
		{"a metric over its max", a, window(100, 0, time.Millisecond), stable, []Metric{{Name: "checkout_errors", Value: 2, Max: &one}}, Fail, "checkout_errors = 2 is above its max 1"},
		{"a metric over its max, before enough requests", a, window(5, 0, time.Millisecond), stable, []Metric{{Name: "orders", Value: 0.5, Min: &one}}, Fail, "orders = 0.5 is below its min 1"},
		{"a metric unreadable", a, window(100, 0, time.Millisecond), stable, []Metric{{Name: "orders", Err: ErrNoSample}}, Wait, "orders"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Judge(tc.a, Measure(tc.canary), tc.stable, tc.metrics)
			if v.Decision != tc.want || !strings.Contains(strings.Join(v.Why, "; "), tc.why) {
				t.Errorf("Judge = %s %q, want %s with %q", v.Decision, v.Why, tc.want, tc.why)
			}
		})
	}
}
