package engine

import (
	"errors"
	"testing"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/store"
)

// TestRollbackTarget is the table of the one rule for where a rollback with no revision
// given goes: the newest earlier revision that deployed with other settings.
func TestRollbackTarget(t *testing.T) {
	spec := func(greeting string, rb *api.RollbackRecord) string {
		s, err := encodeSpec(api.Service{Name: "web", Replicas: 1, Env: map[string]string{"GREETING": greeting}}, rb)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rev := func(n int64, outcome store.Outcome, greeting string) store.Revision {
		return store.Revision{Service: "web", Number: n, Outcome: outcome, Spec: spec(greeting, nil)}
	}
	// back is a revision a rollback to revision `to` recorded, with that one's settings.
	back := func(n int64, greeting string, to int64) store.Revision {
		return store.Revision{Service: "web", Number: n, Outcome: store.OutcomeDeployed, Spec: spec(greeting, &api.RollbackRecord{To: to, By: "alice"})}
	}
	deployed, failed, rolledBack, pending := store.OutcomeDeployed, store.OutcomeFailed, store.OutcomeRolledBack, store.OutcomePending
	for _, tc := range []struct {
		name    string
		revs    []store.Revision // newest first
		current int64
		want    int64 // 0: none
	}{
		{"the previous deployed", []store.Revision{rev(2, deployed, "b"), rev(1, deployed, "a")}, 2, 1},
		{"a failed one skipped", []store.Revision{rev(3, deployed, "c"), rev(2, failed, "b"), rev(1, deployed, "a")}, 3, 1},
		{"a rolled back one skipped", []store.Revision{rev(3, deployed, "c"), rev(2, rolledBack, "b"), rev(1, deployed, "a")}, 3, 1},
		{"a pending one skipped", []store.Revision{rev(3, deployed, "c"), rev(2, pending, "b"), rev(1, deployed, "a")}, 3, 1},
		{"the same settings skipped", []store.Revision{rev(3, deployed, "a"), rev(2, failed, "b"), rev(1, deployed, "a")}, 3, 0},
		{"the same settings as a rollback's", []store.Revision{back(3, "a", 1), rev(2, deployed, "b"), rev(1, deployed, "a")}, 3, 2},
		{"a rollback's settings skipped", []store.Revision{rev(4, deployed, "b"), back(3, "b", 2), rev(2, deployed, "b"), rev(1, deployed, "a")}, 4, 1},
		{"later revisions are not earlier", []store.Revision{rev(3, rolledBack, "c"), rev(2, deployed, "b"), rev(1, deployed, "a")}, 2, 1},
		{"only the current one", []store.Revision{rev(1, deployed, "a")}, 1, 0},
		{"none earlier deployed", []store.Revision{rev(3, deployed, "c"), rev(2, failed, "b"), rev(1, rolledBack, "a")}, 3, 0},
		{"none at all", nil, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cur store.Revision
			for _, r := range tc.revs {
				if r.Number == tc.current {
					cur = r
				}
			}
			got, err := rollbackTarget(tc.revs, cur)
			if tc.want == 0 {
				if !errors.Is(err, errNoPrevious) {
					t.Errorf("rollbackTarget = revision %d, %v; want errNoPrevious", got.Number, err)
				}
				return
			}
			if err != nil || got.Number != tc.want {
				t.Errorf("rollbackTarget = revision %d, %v; want revision %d", got.Number, err, tc.want)
			}
		})
	}
}

// A revision a rollback recorded says so as data, and its settings read as any other's;
// one recorded before kiln kept that data is known by its applied_by.
func TestRollbackRecorded(t *testing.T) {
	svc := api.Service{Name: "web", Replicas: 2, Port: 8080}
	plain, _ := encodeSpec(svc, nil)
	if want, _ := encodeSpec(svc, nil); plain != want {
		t.Fatal("encodeSpec is not deterministic")
	}
	rb := &api.RollbackRecord{To: 3, By: "alice (ops)"}
	spec, _ := encodeSpec(svc, rb)
	r := store.Revision{Service: "web", Number: 5, Spec: spec, AppliedBy: rollbackAppliedBy(*rb)}
	if got := rollbackOf(r); got == nil || *got != *rb {
		t.Errorf("rollbackOf = %+v, want %+v", got, rb)
	}
	if got, err := decodeService(r); err != nil || comparable(got) != comparable(svc) {
		t.Errorf("decodeService = %+v, %v; want %+v", got, err, svc)
	}
	if !sameSettings(r, store.Revision{Spec: plain}) {
		t.Error("a rollback's revision does not have the settings it went back to")
	}
	for appliedBy, want := range map[string]*api.RollbackRecord{
		"bob (rollback to revision 2)":                          {To: 2, By: "bob"},
		"bob (rollback to revision 1) (rollback to revision 2)": {To: 2, By: "bob (rollback to revision 1)"},
		"bob":                            nil,
		"bob (rollback to revision x)":   nil,
		"pipeline hello (commit abc123)": nil,
	} {
		got := rollbackOf(store.Revision{Spec: plain, AppliedBy: appliedBy})
		if (got == nil) != (want == nil) || got != nil && *got != *want {
			t.Errorf("rollbackOf(applied by %q, no record) = %+v, want %+v", appliedBy, got, want)
		}
	}
}
