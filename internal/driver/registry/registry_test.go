package registry

import (
	"errors"
	"slices"
	"testing"

	"github.com/kiln-build/kiln/internal/driver"
)

func TestNames(t *testing.T) {
	if got := Names(); !slices.Equal(got, []string{"docker", "simulated"}) {
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
	if _, err := Open(ctx, "kubernetes", driver.Config{}); !errors.Is(err, ErrUnknownDriver) {
		t.Errorf("Open(kubernetes) = %v, want ErrUnknownDriver", err)
	}
	// The Docker driver checks that its engine answers.
	_, err = Open(ctx, "docker", driver.Config{Options: map[string]string{"host": "tcp://127.0.0.1:1"}})
	if !errors.Is(err, driver.ErrUnavailable) {
		t.Errorf("Open(docker) of an engine that does not answer: %v, want ErrUnavailable", err)
	}
}
