package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRevisionsAndServices(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kiln.db")
	s := open(t, path)
	for i, img := range []string{"sha256:a", "sha256:b", "sha256:c"} {
		r, err := s.CreateRevision(ctx, Revision{Service: "web", Image: img, ImageName: "web", Spec: "{}", AppliedBy: "me"})
		if err != nil {
			t.Fatal(err)
		}
		if r.Number != int64(i+1) {
			t.Fatalf("revision number %d, want %d", r.Number, i+1)
		}
	}
	if _, err := s.CreateRevision(ctx, Revision{Service: "api", Image: "sha256:z"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetCurrent(ctx, "web", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOutcome(ctx, "web", 3, OutcomeRolledBack, "health check failed"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Everything survives a reopen, and migrations do not run twice.
	s = open(t, path)
	sv, err := s.Service(ctx, "web")
	if err != nil || sv.Current != 2 {
		t.Fatalf("service web: %+v, %v", sv, err)
	}
	revs, _ := s.Revisions(ctx, "web")
	if len(revs) != 3 || revs[0].Number != 3 || revs[0].Outcome != OutcomeRolledBack || revs[0].Detail != "health check failed" {
		t.Fatalf("revisions: %+v", revs)
	}
	if _, err := s.Revision(ctx, "web", 9); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing revision: %v", err)
	}
	kept, _ := s.KeptImages(ctx, 1)
	if !kept["sha256:c"] || !kept["sha256:b"] || kept["sha256:a"] || !kept["sha256:z"] {
		t.Errorf("kept images %v, want the newest of each service and every current one", kept)
	}
}

func TestOneRolloutPerService(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "kiln.db"))
	r, err := s.StartRollout(ctx, Rollout{Service: "web", From: 1, To: 2, Strategy: "rolling", Owner: "test"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.StartRollout(ctx, Rollout{Service: "web", From: 1, To: 3, Strategy: "rolling"})
	if !errors.Is(err, ErrRolloutInProgress) || !strings.Contains(err.Error(), "by test") {
		t.Fatalf("second rollout: %v", err)
	}
	if _, err := s.StartRollout(ctx, Rollout{Service: "api", To: 1, Strategy: "rolling"}); err != nil {
		t.Fatalf("another service's rollout: %v", err)
	}
	running, _ := s.RunningRollouts(ctx)
	if len(running) != 2 {
		t.Fatalf("running: %+v", running)
	}
	if err := s.FinishRollout(ctx, r.ID, RolloutSucceeded, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartRollout(ctx, Rollout{Service: "web", From: 2, To: 3, Strategy: "rolling"}); err != nil {
		t.Fatalf("after the first finished: %v", err)
	}
	all, _ := s.Rollouts(ctx, "web")
	if len(all) != 2 || all[1].State != RolloutSucceeded || all[1].Finished.IsZero() {
		t.Errorf("rollouts: %+v", all)
	}
}

func TestEvents(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "kiln.db"))
	for _, svc := range []string{"web", "api", "web"} {
		if _, err := s.AddEvent(ctx, Event{Service: svc, Type: "test", Message: "m"}); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := s.Events(ctx, "", 0, 10)
	web, _ := s.Events(ctx, "web", 0, 10)
	after, _ := s.Events(ctx, "", all[0].ID, 10)
	if len(all) != 3 || len(web) != 2 || len(after) != 2 {
		t.Errorf("all %d, web %d, after first %d", len(all), len(web), len(after))
	}
}
