package plan

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-build/kiln/internal/driver"
)

var update = flag.Bool("update", false, "rewrite golden files")

const (
	digestA = "sha256:aaaaaaaaaaaa0000000000000000000000000000000000000000000000000000"
	digestB = "sha256:bbbbbbbbbbbb0000000000000000000000000000000000000000000000000000"
)

func spec(image string) driver.ServerSpec {
	return withEnv(driver.ServerSpec{Service: "web", Image: image, Port: 8080,
		Writable: []string{"/tmp"}, Resources: driver.DefaultResources}, map[string]string{"A": "1"})
}

// withEnv is s with env and its digests, as the engine makes them (a plain hash here).
func withEnv(s driver.ServerSpec, env map[string]string) driver.ServerSpec {
	s.Env = env
	s.Digests = driver.Digests(env, nil, func(b []byte) string { return fmt.Sprintf("test:%x", b) })
	return s
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// server returns an observed server created from s, n minutes after t0.
func server(n int, s driver.ServerSpec, state driver.State) driver.Server {
	return driver.Server{
		ID: driver.ServerID(fmt.Sprintf("id%d", n)), Name: fmt.Sprintf("kiln-web-%d", n), Service: s.Service,
		Address:  fmt.Sprintf("127.0.0.1:%d", 30000+n),
		Revision: s.Revision, SpecHash: s.Hash(), Image: s.Image, State: state,
		Created: t0.Add(time.Duration(n) * time.Minute), Spec: s,
	}
}

func TestCompute(t *testing.T) {
	newEnv := withEnv(spec(digestA), map[string]string{"A": "2", "B": "x"})
	tampered := server(9, spec(digestA), driver.StateRunning)
	tampered.SpecHash = "0000"
	unreachable := server(2, spec(digestA), driver.StateRunning)
	unreachable.Address = ""

	tests := []struct {
		name     string
		desired  []Desired
		observed []driver.Server
	}{
		{"fresh service", []Desired{{Service: "web", Revision: 1, Spec: spec(digestA), Replicas: 3}}, nil},
		{"nothing to do", []Desired{{Service: "web", Revision: 2, Spec: spec(digestA), Replicas: 2}},
			[]driver.Server{server(1, spec(digestA), driver.StateRunning), server(2, spec(digestA), driver.StateRunning)}},
		{"new image replaces every server", []Desired{{Service: "web", Revision: 2, Spec: spec(digestB), Replicas: 2}},
			[]driver.Server{server(1, spec(digestA), driver.StateRunning), server(2, spec(digestA), driver.StateRunning)}},
		{"env change names keys, not values", []Desired{{Service: "web", Revision: 2, Spec: newEnv, Replicas: 1}},
			[]driver.Server{server(1, spec(digestA), driver.StateRunning)}},
		{"exited server is destroyed and made up for", []Desired{{Service: "web", Revision: 1, Spec: spec(digestA), Replicas: 2}},
			[]driver.Server{server(1, spec(digestA), driver.StateRunning), server(2, spec(digestA), driver.StateExited)}},
		{"scale down removes the newest", []Desired{{Service: "web", Revision: 3, Spec: spec(digestA), Replicas: 1}},
			[]driver.Server{server(2, spec(digestA), driver.StateRunning), server(1, spec(digestA), driver.StateRunning), server(3, spec(digestB), driver.StateRunning)}},
		{"scale up", []Desired{{Service: "web", Revision: 3, Spec: spec(digestA), Replicas: 3}},
			[]driver.Server{server(1, spec(digestA), driver.StateRunning)}},
		{"tampered server is replaced", []Desired{{Service: "web", Revision: 1, Spec: spec(digestA), Replicas: 1}},
			[]driver.Server{tampered}},
		{"unreachable server is replaced", []Desired{{Service: "web", Revision: 1, Spec: spec(digestA), Replicas: 2}},
			[]driver.Server{server(1, spec(digestA), driver.StateRunning), unreachable}},
		{"a setting change shows though no server changes", []Desired{{Service: "web", Revision: 2, Spec: spec(digestA), Replicas: 1,
			Settings: []string{"listen 127.0.0.1:8090 → 127.0.0.1:8093", `health http "/healthz" → "/ready"`}}},
			[]driver.Server{server(1, spec(digestA), driver.StateRunning)}},
		{"service removed from the spec", nil,
			[]driver.Server{server(1, spec(digestA), driver.StateRunning)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Compute(tt.desired, tt.observed)
			var text, js bytes.Buffer
			if err := WriteText(&text, p); err != nil {
				t.Fatal(err)
			}
			if err := WriteJSON(&js, p); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, text.String()+"\n"+js.String())
		})
	}
}

// TestPackageChangesShow: the OS package changes a caller adds to a service's plan
// (the engine, from the images' SBOMs) are in the text and the JSON.
func TestPackageChangesShow(t *testing.T) {
	p := Compute([]Desired{{Service: "web", Revision: 2, Spec: spec(digestB), Replicas: 1}},
		[]driver.Server{server(1, spec(digestA), driver.StateRunning)})
	p.Services[0].Packages = []string{"+ ca-certificates 20230311", "~ libc6 2.36-9+deb12u13 → 2.36-9+deb12u14"}
	var text, js bytes.Buffer
	if err := WriteText(&text, p); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, p); err != nil {
		t.Fatal(err)
	}
	golden(t, "a new image lists its package changes", text.String()+"\n"+js.String())
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", strings.ReplaceAll(name, " ", "_")+".golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

// TestComputeConverges applies a plan as a driver would and checks that computing
// again finds nothing to do: the plan is a fixed point after one application.
func TestComputeConverges(t *testing.T) {
	observed := []driver.Server{
		server(1, spec(digestA), driver.StateRunning), server(2, spec(digestA), driver.StateExited),
		server(3, spec(digestB), driver.StateRunning), server(4, spec(digestB), driver.StateRunning),
	}
	for replicas := 0; replicas <= 5; replicas++ {
		desired := []Desired{{Service: "web", Revision: 7, Spec: spec(digestB), Replicas: replicas}}
		p := Compute(desired, observed)
		sp, _ := p.Service("web")
		after := append([]driver.Server(nil), sp.Keep...)
		for i, c := range sp.Changes {
			if c.Action != Destroy {
				after = append(after, server(100+i, *sp.Spec, driver.StateRunning))
			}
		}
		if len(after) != replicas {
			t.Errorf("replicas %d: plan leaves %d servers", replicas, len(after))
		}
		if again := Compute(desired, after); again.HasChanges() {
			t.Errorf("replicas %d: second plan still has changes: %+v", replicas, again)
		}
	}
}
