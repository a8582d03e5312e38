package canary

import (
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/door"
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

func add(a, b door.GroupStats) door.GroupStats {
	out := door.GroupStats{Requests: a.Requests + b.Requests, Errors: a.Errors + b.Errors, Latency: make([]uint64, len(a.Latency))}
	for i := range out.Latency {
		out.Latency[i] = a.Latency[i] + b.Latency[i]
	}
	return out
}

func TestMeasure(t *testing.T) {
	// 98 fast requests and 2 slow ones: p50 is fast, p99 slow, each within a bucket.
	f := Measure(add(window(98, 0, time.Millisecond), window(2, 2, 50*time.Millisecond)))
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
	a := api.Analysis{MinRequests: 100, MaxErrorRatioOverStable: 0.01, MaxP99OverStable: 25 * time.Millisecond}
	stable := Measure(window(2000, 0, time.Millisecond))
	one := 1.0
	for _, tc := range []struct {
		name    string
		a       api.Analysis
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
		{"absolute error limit", api.Analysis{MinRequests: 10, MaxErrorRatio: 0.05}, window(200, 30, time.Millisecond), stable, nil, Fail, "above max_error_ratio 5.00%"},
		{"50ms slower at p99", a, add(window(95, 0, time.Millisecond), window(5, 0, 51*time.Millisecond)), stable, nil, Fail, "p99 latency"},
		{"10ms slower at p99", a, add(window(95, 0, time.Millisecond), window(5, 0, 11*time.Millisecond)), stable, nil, Pass, ""},
		{"absolute p50", api.Analysis{MinRequests: 1, MaxP50: 5 * time.Millisecond}, window(10, 0, 20*time.Millisecond), stable, nil, Fail, "p50 latency"},
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
