package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/store"
)

// The daemon opens the runtime it is asked for and records it; asked for another while
// services are deployed, it refuses before opening anything, saying which services
// run where and what to do; with none deployed it moves.
func TestRuntimeRecorded(t *testing.T) {
	dir, _ := project(t)
	ctx := context.Background()
	open := func(runtime string, opts map[string]string) error {
		t.Helper()
		d, err := New(ctx, Options{StateDir: dir, Listen: "127.0.0.1:0", Runtime: runtime, RuntimeOptions: opts, RuntimeAt: "kiln.hcl:3,1-22"})
		if err == nil {
			if name := d.drv.Name(); name != runtime {
				t.Errorf("the daemon asked for %s runs on %s", runtime, name)
			}
			err = d.Close()
		}
		return err
	}
	recorded := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, RuntimeFile))
		return strings.TrimSpace(string(b))
	}
	if err := open("simulated", nil); err != nil {
		t.Fatal(err)
	}
	if got := recorded(); got != "simulated" {
		t.Errorf("%s = %q, want simulated", RuntimeFile, got)
	}
	err := open("simulated", map[string]string{"host": "x"})
	if !errors.Is(err, driver.ErrUnknownOption) || !strings.Contains(err.Error(), "runtime block at kiln.hcl:3,1-22") {
		t.Errorf("an option the runtime lacks: %v, want ErrUnknownOption with the block's place", err)
	}

	st, err := store.Open(ctx, filepath.Join(dir, "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := st.CreateRevision(ctx, store.Revision{Service: "web", Image: "sha256:" + strings.Repeat("a", 64), Spec: "{}"})
	if err == nil {
		err = st.SetCurrent(ctx, "web", r.Number)
	}
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	err = open("kubernetes", map[string]string{"kubeconfig": filepath.Join(dir, "none")})
	if !errors.Is(err, ErrOtherRuntime) {
		t.Fatalf("another runtime with a service deployed: %v, want ErrOtherRuntime", err)
	}
	for _, want := range []string{"services (web) run on simulated", "asked for kubernetes (runtime block at kiln.hcl:3,1-22)", "kiln destroy each service"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal %q does not say %q", err, want)
		}
	}
	if got := recorded(); got != "simulated" {
		t.Errorf("a refused start changed %s to %q", RuntimeFile, got)
	}
	if err := open("simulated", nil); err != nil {
		t.Errorf("the recorded runtime again: %v", err)
	}
}
