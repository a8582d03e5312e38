package registry

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/docker"
	"github.com/kiln-build/kiln/internal/driver/kubernetes"
	"github.com/kiln-build/kiln/internal/spec"
)

func TestNames(t *testing.T) {
	if got := Names(); !slices.Equal(got, []string{"docker", "kubernetes", "simulated"}) {
		t.Errorf("Names = %v", got)
	}
	if !slices.Contains(Names(), Default) {
		t.Errorf("the default driver %q is not one of %v", Default, Names())
	}
}

// Each driver is registered under its own name, and Open hands it its configuration.
func TestOpen(t *testing.T) {
	ctx := t.Context()
	d, err := Open(ctx, "simulated", driver.Config{Project: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name() != "simulated" || !driver.CapabilitiesOf(d).Sets {
		t.Errorf("Open(simulated) = %s claiming %+v", d.Name(), driver.CapabilitiesOf(d))
	}
	if err := driver.Close(d); err != nil {
		t.Error(err)
	}
	if _, err := Open(ctx, "simulated", driver.Config{Options: map[string]string{"host": "x"}}); !errors.Is(err, driver.ErrUnknownOption) {
		t.Errorf("an option the simulated driver lacks: %v, want ErrUnknownOption", err)
	}
	if _, err := Open(ctx, "nomad", driver.Config{}); !errors.Is(err, ErrUnknownDriver) {
		t.Errorf("Open(nomad) = %v, want ErrUnknownDriver", err)
	}
	// The Docker driver checks that its engine answers.
	_, err = Open(ctx, "docker", driver.Config{Options: map[string]string{"host": "tcp://127.0.0.1:1"}})
	if !errors.Is(err, driver.ErrUnavailable) {
		t.Errorf("Open(docker) of an engine that does not answer: %v, want ErrUnavailable", err)
	}
	// The Kubernetes driver checks that its API server answers.
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kubeconfig, []byte(`{"apiVersion": "v1", "kind": "Config", "current-context": "c",
		"clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
		"contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "users": [{"name": "u", "user": {"token": "t"}}]}`), 0o600)
	_, err = Open(ctx, "kubernetes", driver.Config{Options: map[string]string{"kubeconfig": kubeconfig}})
	if !errors.Is(err, driver.ErrUnavailable) {
		t.Errorf("Open(kubernetes) of an API server that does not answer: %v, want ErrUnavailable", err)
	}
	_, err = Open(ctx, "kubernetes", driver.Config{Options: map[string]string{"kubeconfig": filepath.Join(t.TempDir(), "none")}})
	if err == nil || !strings.Contains(err.Error(), "kubeconfig") {
		t.Errorf("Open(kubernetes) of a kubeconfig that is not there: %v, want an error naming it", err)
	}
}

// A spec's runtime block names a driver and takes its options: the spec's table of
// them is the drivers' own.
func TestSpecRuntimes(t *testing.T) {
	options := map[string][]string{"docker": docker.OptionNames, "kubernetes": kubernetes.OptionNames}
	for _, name := range Names() {
		if name == "simulated" {
			continue // for tests: no spec names it
		}
		want := slices.Sorted(slices.Values(options[name]))
		if got := slices.Sorted(slices.Values(spec.Runtimes[name])); !slices.Equal(got, want) || len(want) == 0 {
			t.Errorf("spec.Runtimes[%s] = %v, the driver's options are %v", name, got, want)
		}
	}
	if len(spec.Runtimes) != len(Names())-1 {
		t.Errorf("spec.Runtimes = %v, the drivers are %v", spec.Runtimes, Names())
	}
	if !slices.Contains(Names(), spec.DefaultRuntime) || spec.DefaultRuntime != Default {
		t.Errorf("the spec's default runtime %q is not the registry's default %q", spec.DefaultRuntime, Default)
	}
}
