package kubernetes_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/driver"
)

// Evict goes through the Eviction API: a PodDisruptionBudget that allows no
// disruption holds it up (here until its context ends, saying why); once the budget
// is gone it evicts.
func TestEvictHonoursDisruptionBudgets(t *testing.T) {
	e := start(t, 1)
	ctx := t.Context()
	d := e.open(t, "p", nil)
	spec, members := runningSet(t, d, "pdb", 2)
	ref := driver.SetOf(spec)
	pdb := map[string]any{"metadata": map[string]any{"name": "pdb"}, "spec": map[string]any{"minAvailable": 2,
		"selector": map[string]any{"matchLabels": map[string]string{"kiln.dev/service": "pdb"}}}}
	path := "/apis/policy/v1/namespaces/" + namespace + "/poddisruptionbudgets"
	if err := e.cluster.Do(ctx, "POST", path, pdb, nil); err != nil {
		t.Fatal(err)
	}
	// The disruption controller has counted the pods once the budget says so.
	if err := e.cluster.Wait(ctx, path+"/pdb", func(obj map[string]any) bool {
		st, _ := obj["status"].(map[string]any)
		return st["currentHealthy"] == float64(2)
	}); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err := d.Evict(short, members[0].ID)
	if err == nil || !strings.Contains(err.Error(), "PodDisruptionBudget") {
		t.Errorf("Evict under a budget that allows no disruption: %v, want it held up", err)
	}
	if err := e.cluster.Do(ctx, "DELETE", path+"/pdb", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.Evict(ctx, members[0].ID); err != nil {
		t.Fatalf("Evict without the budget: %v", err)
	}
	if left, _ := d.Members(ctx, ref); len(left) != 1 {
		t.Errorf("after the eviction the set has %v, want 1 member", left)
	}
	d.DeleteSet(context.WithoutCancel(ctx), ref)
}
