package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/docker"
	"github.com/kiln-build/kiln/internal/driver/kubernetes"
	"github.com/kiln-build/kiln/internal/driver/simdriver"
)

// ErrUnknownDriver: no driver has that name.
var ErrUnknownDriver = errors.New("unknown driver")

// Default is the driver kiln runs servers on unless told otherwise.
const Default = "docker"

// opener opens one driver from its configuration.
type opener func(ctx context.Context, cfg driver.Config) (driver.Driver, error)

// drivers are kiln's drivers by name (each its Driver.Name). The simulated one is for
// tests and benchmarks: it runs no image's code and isolates nothing.
var drivers = map[string]opener{
	"docker": func(ctx context.Context, cfg driver.Config) (driver.Driver, error) {
		return docker.Open(ctx, cfg)
	},
	"kubernetes": func(ctx context.Context, cfg driver.Config) (driver.Driver, error) {
		return kubernetes.Open(ctx, cfg)
	},
	"simulated": func(ctx context.Context, cfg driver.Config) (driver.Driver, error) {
		return simdriver.Open(ctx, cfg)
	},
}

// Names are the drivers Open knows, sorted.
func Names() []string {
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Open opens the driver called name with cfg, ready to use: a driver that reaches a
// runtime has checked that it answers (else the error wraps driver.ErrUnavailable).
// ErrUnknownDriver if there is no such driver; driver.ErrUnknownOption for an option
// it does not have. The caller closes it with driver.Close.
func Open(ctx context.Context, name string, cfg driver.Config) (driver.Driver, error) {
	open, ok := drivers[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (kiln has %v)", ErrUnknownDriver, name, Names())
	}
	d, err := open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening the %s driver: %w", name, err)
	}
	return d, nil
}
