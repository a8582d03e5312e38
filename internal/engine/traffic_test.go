package engine

import (
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/door"
)

// The sparkline's numbers: requests and 5xx answers per interval, from the door's
// counters, the last 30 kept; a door that restarted counts from zero again.
func TestTraffic(t *testing.T) {
	tr := newTraffic(nil)
	stats := func(ok, bad uint64) map[string]door.ServiceStats {
		return map[string]door.ServiceStats{"web": {Count: ok + bad, Codes: map[string]uint64{"200": ok, "502": bad}}}
	}
	now := time.Now()
	tr.sample(time.Time{}, stats(0, 0))
	tr.sample(now, stats(7, 2))
	tr.sample(now.Add(trafficStep), stats(7, 3))
	tr.sample(now.Add(2*trafficStep), stats(1, 0)) // the door restarted
	e := &Engine{traffic: tr}
	got := e.Traffic("web")
	if len(got) != 3 || got[0].Requests != 9 || got[0].Errors != 2 || got[1].Requests != 1 || got[1].Errors != 1 ||
		got[2].Requests != 1 || got[2].Errors != 0 {
		t.Fatalf("samples %+v, want 9 requests with 2 errors, then 1 with 1, then 1 with 0", got)
	}
	for range 40 {
		tr.sample(now, stats(1, 0))
	}
	if n := len(e.Traffic("web")); n != trafficSamples {
		t.Errorf("%d samples kept, want %d", n, trafficSamples)
	}
	if e.Traffic("other") != nil {
		t.Errorf("a service without a front door has traffic")
	}
}
