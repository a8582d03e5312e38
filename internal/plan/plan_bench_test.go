package plan

import (
	"fmt"
	"testing"

	"github.com/kiln-build/kiln/internal/driver"
)

// BenchmarkPlan1000 computes the plan of 10 services of 100 servers each (1,000
// observed servers): five services move to a new image (every server replaced), the
// other five match and keep theirs. The plan is checked once before timing.
func BenchmarkPlan1000(b *testing.B) {
	var desired []Desired
	var observed []driver.Server
	for i := range 10 {
		name := fmt.Sprintf("svc-%02d", i)
		old := spec(digestA)
		old.Service = name
		want := old
		if i%2 == 0 {
			want = spec(digestB)
			want.Service = name
		}
		want.Revision = 2
		desired = append(desired, Desired{Service: name, Revision: 2, Spec: want, Replicas: 100})
		for j := range 100 {
			s := server(i*100+j, old, driver.StateRunning)
			s.Name = fmt.Sprintf("kiln-%s-%d", name, j)
			observed = append(observed, s)
		}
	}
	p := Compute(desired, observed)
	if got := p.Count(Replace); got != 500 {
		b.Fatalf("the plan replaces %d servers, want 500", got)
	}
	kept := 0
	for _, s := range p.Services {
		kept += len(s.Keep)
	}
	if kept != 500 {
		b.Fatalf("the plan keeps %d servers, want 500", kept)
	}
	b.ReportAllocs()
	for b.Loop() {
		Compute(desired, observed)
	}
}
