package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Swarm makes this Docker engine a single-node swarm manager (`docker swarm init
// --advertise-addr 127.0.0.1`) unless it is one already, and returns the function
// that leaves it again: only a swarm this run initialized, and only when no other
// service runs in it by then (another benchmark may be using it).
func (e *Env) Swarm(ctx context.Context) (leave func(), err error) {
	state, err := e.Docker(ctx, "info", "-f", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}")
	if err != nil {
		return nil, fmt.Errorf("docker info: %w", err)
	}
	switch f := fields(state); {
	case len(f) == 2 && f[0] == "active" && f[1] == "true":
		e.Log.Info("Docker is already a swarm manager: using it, and leaving it as it is")
		return func() {}, nil
	case len(f) >= 1 && f[0] == "inactive":
		e.Log.Info("initializing a single-node swarm (docker swarm init --advertise-addr 127.0.0.1)")
		if _, err := e.Docker(ctx, "swarm", "init", "--advertise-addr", "127.0.0.1"); err != nil {
			return nil, err
		}
		return func() {
			ctx := context.WithoutCancel(ctx)
			if out, _ := e.Docker(ctx, "service", "ls", "-q"); len(fields(out)) > 0 {
				e.Log.Warn("not leaving the swarm this run initialized: other services run in it")
				return
			}
			e.Docker(ctx, "swarm", "leave", "--force")
		}, nil
	default:
		return nil, fmt.Errorf("the swarm state of this Docker engine is %q: leave Swarm out or fix it", strings.TrimSpace(state))
	}
}

// HealthImage builds from image a derived image with a Docker HEALTHCHECK (a static
// Go client, bench/loadgen/healthcheck, since kiln's images have no shell) every
// interval with retries, and tags it tag. It uses the legacy builder when buildx is
// missing, as the docker CLI then cannot speak BuildKit.
func (e *Env) HealthImage(ctx context.Context, image, tag, interval string, retries int) error {
	dir := filepath.Join(e.Work, "hc-"+strings.NewReplacer(":", "-", "/", "-").Replace(tag))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := e.Run(ctx, filepath.Join(e.Root, "bench", "loadgen"), []string{"CGO_ENABLED=0"},
		"go", "build", "-o", filepath.Join(dir, "healthcheck"), "./healthcheck"); err != nil {
		return fmt.Errorf("building the health-check binary: %w", err)
	}
	df := fmt.Sprintf("FROM %s\nCOPY healthcheck /app/healthcheck\nHEALTHCHECK --interval=%s --timeout=1s --retries=%d CMD [\"/app/healthcheck\", \"http://127.0.0.1:8080/healthz\"]\n",
		image, interval, retries)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return err
	}
	env := []string{"DOCKER_BUILDKIT=0"}
	if _, err := e.Docker(ctx, "buildx", "version"); err == nil {
		env = []string{"DOCKER_BUILDKIT=1"}
	}
	_, err := e.Run(ctx, dir, env, "docker", "build", "-q", "-t", tag, ".")
	return err
}

// RemoveSwarmService removes a Swarm service and waits (up to a minute) for its
// containers to be gone.
func (e *Env) RemoveSwarmService(ctx context.Context, name string) {
	ctx = context.WithoutCancel(ctx)
	e.Docker(ctx, "service", "rm", name)
	err := waitFor(ctx, time.Minute, 500*time.Millisecond, "the tasks of "+name+" gone", func() (bool, error) {
		out, err := e.Docker(ctx, "ps", "-aq", "--filter", "label=com.docker.swarm.service.name="+name)
		return err == nil && len(fields(out)) == 0, err
	})
	if err != nil {
		e.Log.Warn("removing a Swarm service", "service", name, "err", err)
	}
}

// ErrSkipped means a system was left out of a scenario (its tool is missing).
var ErrSkipped = errors.New("skipped")
