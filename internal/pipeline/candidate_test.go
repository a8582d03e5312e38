package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/driver"
)

// A user's service named like a pipeline's candidates ("web-candidate") is a service
// like any other: its servers survive a restart of the daemon, and a candidate of the
// same name is none of its servers (Status does not show it, the controller does not
// remove it as surplus) and is removed at the next start.
func TestServiceNamedLikeACandidate(t *testing.T) {
	ctx := context.Background()
	d := newSimDaemon(t)
	e, _, stop := d.start()
	res, err := e.Apply(ctx, api.ApplyRequest{Services: []api.Service{d.service("web-candidate", 1)}, User: "test"})
	if err != nil || !res.OK {
		t.Fatalf("apply: %v %+v", err, res)
	}
	mine, err := d.drv.List(ctx, driver.Selector{Project: "sim", Service: "web-candidate"})
	if err != nil || len(mine) != 1 {
		t.Fatalf("servers of web-candidate: %+v, %v; want one", mine, err)
	}
	// A candidate of a service "web", as a pipeline run starts it.
	cspec := mine[0].Spec
	cspec.Role = driver.RoleCandidate
	if _, err := d.drv.Create(ctx, cspec); err != nil {
		t.Fatal(err)
	}
	st, err := e.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 1 || len(st.Services[0].Servers) != 1 || st.Services[0].Servers[0].ID != string(mine[0].ID) {
		t.Errorf("status = %+v, want web-candidate with its one server %s", st.Services, mine[0].ID)
	}
	stop()

	_, _, stop = d.start()
	defer stop()
	eventually(t, 10*time.Second, "the candidate to be removed", func() bool {
		left, _ := d.drv.List(ctx, driver.Selector{Project: "sim", Role: driver.RoleCandidate})
		return len(left) == 0
	})
	time.Sleep(200 * time.Millisecond) // what follows the removal, were it to remove more
	after, err := d.drv.List(ctx, driver.Selector{Project: "sim", Service: "web-candidate"})
	if err != nil || len(after) != 1 || after[0].ID != mine[0].ID {
		t.Errorf("after a restart, web-candidate's servers are %+v (%v), want its server %s kept", after, err, mine[0].ID)
	}
}
