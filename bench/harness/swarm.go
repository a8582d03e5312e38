package harness

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
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

// parseLdd returns the absolute paths of the shared libraries ldd lists (the vDSO,
// which is no file, left out).
func parseLdd(out string) []string {
	var paths []string
	for _, l := range splitLines(out) {
		f := fields(l)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			paths = append(paths, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			paths = append(paths, f[0])
		}
	}
	return paths
}

// writeRootfs writes a tar of a root filesystem holding files (absolute host paths,
// at the same paths; symbolic links followed) and the empty directories dirs, with
// every parent directory.
func writeRootfs(w io.Writer, files, dirs []string) error {
	tw := tar.NewWriter(w)
	made := map[string]bool{}
	var mkdir func(d string, mode int64) error
	mkdir = func(d string, mode int64) error {
		if d == "." || d == "" || made[d] {
			return nil
		}
		if err := mkdir(path.Dir(d), 0o755); err != nil {
			return err
		}
		made[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode})
	}
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "/tmp" {
			mode = 0o1777
		}
		if err := mkdir(strings.TrimPrefix(d, "/"), mode); err != nil {
			return err
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean(f), "/")
		if err := mkdir(path.Dir(name), 0o755); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(b))}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	return tw.Close()
}

// HAProxyImage makes an image of this machine's HAProxy (Debian's haproxy package,
// `apt-get install -y haproxy`): its binary and the shared libraries ldd names,
// imported with `docker import` and tagged tag. It returns HAProxy's version.
func (e *Env) HAProxyImage(ctx context.Context, tag string) (string, error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		return "", errors.New("HAProxy is not installed, and Swarm's rows need it in front of the service: install Debian's package (apt-get install -y haproxy) or leave Swarm out (-systems)")
	}
	out, err := e.Run(ctx, e.Work, nil, "ldd", bin)
	if err != nil {
		return "", fmt.Errorf("listing HAProxy's libraries: %w", err)
	}
	if strings.Contains(out, "not found") {
		return "", fmt.Errorf("HAProxy needs libraries this machine lacks: %s", out)
	}
	tarPath := filepath.Join(e.Work, "haproxy-rootfs.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		return "", err
	}
	err = writeRootfs(f, append([]string{bin}, parseLdd(out)...), []string{"/tmp", "/etc", "/run"})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("writing HAProxy's root filesystem: %w", err)
	}
	if _, err := e.Docker(ctx, "import", "-c", "ENV LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/lib:/usr/lib",
		"-c", `ENTRYPOINT ["`+bin+`"]`, tarPath, tag); err != nil {
		return "", err
	}
	v, err := e.Docker(ctx, "run", "--rm", "--name", e.ID+"-haproxy-version", tag, "-v")
	if err != nil {
		e.Docker(context.WithoutCancel(ctx), "rmi", tag)
		return "", fmt.Errorf("the HAProxy image does not run: %w", err)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(v), "\n")
	return strings.TrimSpace(first), nil
}

// haproxyConfig is HAProxy's configuration in front of the Swarm service svc of n
// tasks (endpoint mode dnsrr): it finds the tasks through Swarm's DNS (tasks.SERVICE,
// re-resolved every second), health-checks them every second and retries a request
// that failed before an answer on another task: the usual self-hosted front of a
// Swarm service, kinder to it than the routing mesh, which neither health-checks nor
// retries. It leaves room for twice n tasks, since start-first runs both versions.
func haproxyConfig(svc string, n int) string {
	return fmt.Sprintf(`global
    maxconn 4096
resolvers docker
    nameserver dns 127.0.0.11:53
    resolve_retries 3
    timeout resolve 1s
    timeout retry   1s
    hold other      1s
    hold refused    1s
    hold nx         1s
    hold timeout    1s
    hold valid      1s
    hold obsolete   1s
    accepted_payload_size 8192
defaults
    mode http
    timeout connect 3s
    timeout client  30s
    timeout server  30s
    timeout queue   5s
    retries 3
    option redispatch 1
    retry-on all-retryable-errors
frontend front
    bind :8080
    default_backend tasks
backend tasks
    balance roundrobin
    option httpchk GET /healthz
    default-server check inter 1s fall 1 rise 1 resolvers docker init-addr none resolve-prefer ipv4
    server-template task %d tasks.%s:8080
`, 2*n+2, svc)
}
