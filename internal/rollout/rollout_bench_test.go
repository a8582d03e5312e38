package rollout_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/simdriver"
	"github.com/kiln-build/kiln/internal/rollout"
)

// recordingDoor is a front door that keeps the set in rotation and records every
// admission; it has no requests in flight, so draining is immediate.
type recordingDoor struct {
	mu       sync.Mutex
	in       map[string]bool
	admitted []string
}

var _ rollout.Door = (*recordingDoor)(nil)

func (d *recordingDoor) Update(ctx context.Context, add, remove []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range add {
		d.in[a] = true
		d.admitted = append(d.admitted, a)
	}
	for _, r := range remove {
		delete(d.in, r)
	}
	return nil
}

func (d *recordingDoor) Has(addr string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.in[addr]
}

// BenchmarkRollout100 rolls a service of 100 simulated servers (each a real HTTP
// listener) from one image to the other, one server at a time (max_surge 1): every
// iteration creates, health-checks (one GET), admits, drains and destroys 100
// servers. The first rollout, which starts the fleet, is checked and not timed.
func BenchmarkRollout100(b *testing.B) {
	const n = 100
	ctx := context.Background()
	drv := simdriver.New()
	b.Cleanup(func() { drv.Close() })
	client := &http.Client{Timeout: 5 * time.Second}
	ex := &rollout.Executor{Driver: drv, Healthy: func(ctx context.Context, t rollout.Target, s driver.Server) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Address+"/healthz", nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health check: %d", resp.StatusCode)
		}
		return nil
	}}
	door := &recordingDoor{in: map[string]bool{}}
	// Two images, one per revision in turn, given to the simulated runtime.
	var images []string
	for _, name := range []string{"a", "b"} {
		img, err := mutate.Config(empty.Image, v1.Config{Env: []string{"IMAGE=" + name}})
		if err != nil {
			b.Fatal(err)
		}
		h, err := img.Digest()
		if err != nil {
			b.Fatal(err)
		}
		if err := drv.EnsureImage(context.Background(), h.String(), func() (v1.Image, error) { return img, nil }); err != nil {
			b.Fatal(err)
		}
		images = append(images, h.String())
	}
	rev := int64(0)
	roll := func() {
		rev++
		spec := driver.ServerSpec{Project: "bench", Service: "web", Revision: rev, Image: images[rev%2], Port: 8080,
			User: "65532", Resources: driver.DefaultResources}
		t := rollout.Target{Service: "web", Revision: rev, Spec: spec, Replicas: n,
			Settings: rollout.Settings{Strategy: "rolling", MaxSurge: 1, ProgressDeadline: time.Minute}}
		if err := ex.Run(ctx, door, t); err != nil {
			b.Fatalf("rollout to revision %d: %v", rev, err)
		}
	}
	roll()
	roll()
	servers, _ := drv.List(ctx, driver.Selector{Project: "bench", Service: "web"})
	if len(servers) != n || len(door.in) != n || len(door.admitted) != 2*n {
		b.Fatalf("after two rollouts: %d servers, %d in rotation, %d admissions; want %d, %d, %d", len(servers), len(door.in), len(door.admitted), n, n, 2*n)
	}
	for _, s := range servers {
		if s.Revision != rev || !door.in[s.Address] {
			b.Fatalf("server %s: revision %d (want %d), in rotation %v", s.Name, s.Revision, rev, door.in[s.Address])
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		roll()
	}
	b.ReportMetric(float64(len(door.admitted)-2*n)/float64(b.N)/n, "admissions/server")
}
