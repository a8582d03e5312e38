package engine

import (
	"testing"

	"github.com/kiln-build/kiln/internal/door"
)

func sideStats(epoch int64, requests, errors uint64) door.GroupStats {
	g := door.GroupStats{Epoch: epoch, Requests: requests, Errors: errors, Latency: make([]uint64, len(door.GroupBuckets)+1)}
	g.Latency[10] = requests
	return g
}

// Each side's new requests go to the revision the side serves when they are read; a
// door's restart counts from zero; old revisions' series go.
func TestRevisionTraffic(t *testing.T) {
	r := newRevisionTraffic()
	sides := func(stable, canary door.GroupStats) map[string]door.GroupStats {
		return map[string]door.GroupStats{door.GroupStable: stable, door.GroupCanary: canary}
	}
	r.add("web", sides(sideStats(1, 100, 1), sideStats(1, 0, 0)), map[string]int64{door.GroupStable: 1}) // the baseline
	r.add("web", sides(sideStats(1, 300, 3), sideStats(1, 50, 5)), map[string]int64{door.GroupStable: 1, door.GroupCanary: 2})
	r.add("web", sides(sideStats(2, 40, 0), sideStats(2, 10, 0)), map[string]int64{door.GroupStable: 1, door.GroupCanary: 2})
	one, two := r.byRev[revisionKey{"web", 1}], r.byRev[revisionKey{"web", 2}]
	if one == nil || one.Requests != 240 || one.Errors != 2 || two == nil || two.Requests != 60 || two.Errors != 5 {
		t.Fatalf("revision 1: %+v; revision 2: %+v; want 200+40 requests (2 errors) and 50+10 (5)", one, two)
	}
	for rev := int64(3); rev <= 12; rev++ {
		r.add("web", sides(sideStats(2, uint64(40+rev), 0), sideStats(2, 10, 0)), map[string]int64{door.GroupStable: rev})
	}
	if _, ok := r.byRev[revisionKey{"web", 2}]; ok || r.byRev[revisionKey{"web", 12}] == nil {
		t.Errorf("series kept: %v, want revisions 3 to 12", r.byRev)
	}
}
