package engine

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/spec"
)

// TestServiceRulesAreTheSpecs: each invalid service is refused by kiln validate (the
// spec) and by the daemon (an API client's apply) with the same message, file position
// aside, and the daemon records nothing.
func TestServiceRulesAreTheSpecs(t *testing.T) {
	d := newSimDaemon(t)
	// Not started: Apply's checks come before anything needs Start.
	e := New(Options{State: d.state, Images: d.images, Driver: d.drv, Project: "sim", StateDir: d.dir, Log: d.log})
	for _, tc := range []struct {
		name   string
		port   string // as written; "8080" when ""
		listen string // as written; "127.0.0.1:0" when ""
		hcl    string // more of the service block
		change func(*api.Service)
	}{
		{name: "negative replicas", hcl: "replicas = -1", change: func(s *api.Service) { s.Replicas = -1 }},
		{name: "too many replicas", hcl: "replicas = 1001", change: func(s *api.Service) { s.Replicas = 1001 }},
		{name: "port 0", port: "0", change: func(s *api.Service) { s.Port = 0 }},
		{name: "port too high", port: "70000", change: func(s *api.Service) { s.Port = 70000 }},
		{name: "listen without a port", listen: "localhost", change: func(s *api.Service) { s.Listen = "localhost" }},
		{name: "listen on a named port", listen: "127.0.0.1:http", change: func(s *api.Service) { s.Listen = "127.0.0.1:http" }},
		{name: "listen port too high", listen: ":70000", change: func(s *api.Service) { s.Listen = ":70000" }},
		{name: "health path not a path", hcl: `health { http = "healthz" }`, change: func(s *api.Service) { s.Health.HTTP = "healthz" }},
		{name: "health http and tcp", hcl: "health {\n http = \"/\"\n tcp = true\n}", change: func(s *api.Service) { s.Health.TCP = true }},
		{name: "health neither", hcl: `health { interval = "1s" }`, change: func(s *api.Service) { s.Health.HTTP = "" }},
		{name: "healthy threshold 0", hcl: "health {\n http = \"/\"\n healthy_threshold = 0\n}", change: func(s *api.Service) { s.Health.HealthyThreshold = 0 }},
		{name: "unhealthy threshold too high", hcl: "health {\n http = \"/\"\n unhealthy_threshold = 101\n}", change: func(s *api.Service) { s.Health.UnhealthyThreshold = 101 }},
		{name: "unknown strategy", hcl: `update { strategy = "sideways" }`, change: func(s *api.Service) { s.Update.Strategy = "sideways" }},
		{name: "rolling that cannot proceed", hcl: "update { max_surge = 0 }", change: func(s *api.Service) {
			s.Update.Strategy, s.Update.MaxSurge, s.Update.MaxUnavailable = "rolling", 0, 0
		}},
		{name: "max surge too high", hcl: "update {\n strategy = \"blue-green\"\n max_surge = 1001\n}", change: func(s *api.Service) { s.Update.MaxSurge = 1001 }},
		{name: "max unavailable negative", hcl: "update { max_unavailable = -1 }", change: func(s *api.Service) {
			s.Update.Strategy, s.Update.MaxUnavailable = "rolling", -1
		}},
		{name: "unknown drift action", hcl: `drift { action = "ignore" }`, change: func(s *api.Service) { s.Drift = "ignore" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, listen := cmp.Or(tc.port, "8080"), cmp.Or(tc.listen, "127.0.0.1:0")
			src := fmt.Sprintf("service \"web\" {\n image = %q\n port = %s\n listen = %q\n %s\n}\n", d.digest, port, listen, tc.hcl)
			_, diags := spec.Parse("kiln.hcl", []byte(src), spec.Options{Environ: []string{}, Dir: t.TempDir()})
			var errs hcl.Diagnostics
			for _, dg := range diags {
				if dg.Severity == hcl.DiagError {
					errs = append(errs, dg)
				}
			}
			if len(errs) != 1 {
				t.Fatalf("kiln validate of\n%s\nsays %d errors, want 1: %v", src, len(errs), errs)
			}
			want := "service web: " + errs[0].Summary + ": " + errs[0].Detail

			svc := d.service("web", 1)
			tc.change(&svc)
			_, err := e.Apply(t.Context(), api.ApplyRequest{Services: []api.Service{svc}, User: "test"})
			if err == nil || err.Error() != want {
				t.Errorf("the daemon says %v\nkiln validate says %s", err, want)
			}
			if revs, _ := d.state.Revisions(t.Context(), "web"); len(revs) != 0 {
				t.Errorf("revisions recorded: %+v", revs)
			}
		})
	}
	// The service every case changes is valid.
	if err := validateService(d.service("web", 1)); err != nil {
		t.Fatalf("the unchanged service is refused: %v", err)
	}
}

// A request whose spec names another runtime than the daemon's is refused, saying
// which and what to do, and records nothing; one that names none, or the daemon's, is
// taken.
func TestOtherRuntimeRefused(t *testing.T) {
	d := newSimDaemon(t)
	e := New(Options{State: d.state, Images: d.images, Driver: d.drv, Project: "sim", StateDir: d.dir, Log: d.log})
	svc := api.Service{Name: "web", Image: d.digest, Port: 8080, Replicas: 1}
	_, err := e.Apply(t.Context(), api.ApplyRequest{Services: []api.Service{svc}, Runtime: "kubernetes", Detach: true})
	if !errors.Is(err, ErrOtherRuntime) || !strings.Contains(err.Error(), "the spec's runtime is kubernetes, but this daemon runs servers on simulated") {
		t.Errorf("Apply for kubernetes on the simulated runtime: %v, want ErrOtherRuntime", err)
	}
	if _, err := e.Plan(t.Context(), api.PlanRequest{Services: []api.Service{svc}, Runtime: "docker"}); !errors.Is(err, ErrOtherRuntime) {
		t.Errorf("Plan for docker on the simulated runtime: %v, want ErrOtherRuntime", err)
	}
	if services, err := d.state.Services(t.Context()); err != nil || len(services) != 0 {
		t.Errorf("a refused apply recorded %v, %v", services, err)
	}
	for _, rt := range []string{"", "simulated"} {
		if _, err := e.Plan(t.Context(), api.PlanRequest{Services: []api.Service{svc}, Runtime: rt}); err != nil {
			t.Errorf("Plan for runtime %q: %v", rt, err)
		}
	}
}
