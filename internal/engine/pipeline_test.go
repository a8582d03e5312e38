package engine

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/kiln-build/kiln/internal/api"
)

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// An apply that names pipelines, to an engine given nothing to record them, is refused
// before any revision is recorded: its pipelines are not silently dropped.
func TestApplyOfPipelinesNeedsARecorder(t *testing.T) {
	d := newSimDaemon(t)
	// Not started: the refusal needs nothing of Start.
	e := New(Options{State: d.state, Images: d.images, Driver: d.drv, Project: "sim", StateDir: d.dir, Log: d.log})
	_, err := e.Apply(t.Context(), api.ApplyRequest{Services: []api.Service{d.service("web", 1)},
		Pipelines: []api.Pipeline{{Name: "site", Branch: "main", Services: []string{"web"}}}, User: "test"})
	if !errors.Is(err, ErrNoPipelines) {
		t.Fatalf("apply = %v, want ErrNoPipelines", err)
	}
	if revs, _ := d.state.Revisions(t.Context(), "web"); len(revs) != 0 {
		t.Errorf("revisions recorded: %+v", revs)
	}
}
