package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/internal/api"
)

// Daemon is a `kiln up` of a project, running in the background, and its API client.
type Daemon struct {
	Project *Project
	Client  *api.Client
	cmd     *exec.Cmd
	done    chan error
}

// Up runs `kiln up` in the project (version 1 of the image) and returns once the API
// answers and every service has all its servers healthy, or when timeout passes.
func (p *Project) Up(ctx context.Context, timeout time.Duration) (*Daemon, error) {
	out, err := p.logFile("up.log")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(p.env.Kiln, "up")
	cmd.Dir = p.Dir
	cmd.Env = append(append(os.Environ(), "KILN_VAR_version=1"), p.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("starting kiln up: %w", err)
	}
	d := &Daemon{Project: p, cmd: cmd, done: make(chan error, 1)}
	go func() { d.done <- cmd.Wait(); out.Close() }()
	err = waitFor(ctx, timeout, 100*time.Millisecond, "kiln up's API", func() (bool, error) {
		if d.exited() {
			return false, errors.New("kiln up exited; see " + filepath.Join(p.Dir, "up.log"))
		}
		c, err := api.Discover(filepath.Join(p.Dir, ".kiln"))
		if err != nil {
			return false, err
		}
		if _, err := c.Status(ctx); err != nil {
			return false, err
		}
		d.Client = c
		return true, nil
	})
	if err == nil {
		err = d.WaitSettled(ctx, timeout)
	}
	if err != nil {
		d.Stop(context.WithoutCancel(ctx))
		return nil, err
	}
	return d, nil
}

func (d *Daemon) exited() bool {
	select {
	case err := <-d.done:
		d.done <- err
		return true
	default:
		return false
	}
}

// PID is the daemon's process.
func (d *Daemon) PID() int { return d.cmd.Process.Pid }

// Settled reports whether every service of the project is deployed: its replicas
// healthy and in rotation, no rollout running.
func (d *Daemon) Settled(ctx context.Context) (bool, error) {
	st, err := d.Client.Status(ctx)
	if err != nil {
		return false, err
	}
	for _, want := range d.Project.Services {
		s, ok := service(st, want.Name)
		if !ok || s.Rollout != "" || s.Healthy != want.Replicas || len(s.Servers) != want.Replicas {
			return false, fmt.Errorf("service %s: %d/%d healthy, %d servers, rollout %q", want.Name, s.Healthy, want.Replicas, len(s.Servers), s.Rollout)
		}
	}
	return true, nil
}

// WaitSettled polls Settled every 100 ms until it is true or timeout passes.
func (d *Daemon) WaitSettled(ctx context.Context, timeout time.Duration) error {
	return waitFor(ctx, timeout, 100*time.Millisecond, "every server healthy", func() (bool, error) {
		if d.exited() {
			return false, errors.New("kiln up exited")
		}
		return d.Settled(ctx)
	})
}

func service(st api.Status, name string) (api.ServiceStatus, bool) {
	for _, s := range st.Services {
		if s.Name == name {
			return s, true
		}
	}
	return api.ServiceStatus{}, false
}

// Stop destroys the project's services through the API, stops the daemon (SIGINT,
// then SIGKILL after 15 s), removes any container of the services that is left and
// the project's front door, and the images the daemon loaded into Docker for them
// (kiln/img:<digest>) unless they were there before the run. It is safe to call on a
// daemon that already exited.
func (d *Daemon) Stop(ctx context.Context) {
	env := d.Project.env
	var digests []string
	if d.Client != nil && !d.exited() {
		for _, s := range d.Project.Services {
			if hist, err := d.Client.History(ctx, s.Name); err == nil {
				for _, rev := range hist {
					digests = append(digests, rev.Image)
				}
			}
			dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			if _, err := d.Client.Destroy(dctx, s.Name, nil); err != nil {
				env.Log.Warn("destroying a service", "service", s.Name, "err", err)
			}
			cancel()
		}
	}
	if !d.exited() {
		d.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-d.done:
		case <-time.After(15 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
	}
	for _, s := range d.Project.Services {
		for _, svc := range []string{s.Name, s.Name + "-candidate"} {
			ids, _ := env.Docker(ctx, "ps", "-aq", "--filter", "label=dev.kiln.service="+svc)
			if f := fields(ids); len(f) > 0 {
				env.Docker(ctx, append([]string{"rm", "-f"}, f...)...)
			}
		}
	}
	// The destroys remove the door, unless the daemon died first: the next scenario
	// must not find it still checking servers long gone.
	if id, err := os.ReadFile(filepath.Join(d.Project.Dir, ".kiln", "project")); err == nil {
		ids, _ := env.Docker(ctx, "ps", "-aq", "--filter", "label=dev.kiln.door="+strings.TrimSpace(string(id)))
		if f := fields(ids); len(f) > 0 {
			env.Docker(ctx, append([]string{"rm", "-f"}, f...)...)
		}
	}
	env.removeLoaded(ctx, digests)
}

// Metrics reads the daemon's Prometheus metrics (`GET /metrics`, which the API
// client does not wrap) and returns the samples without labels, by name.
func (d *Daemon) Metrics(ctx context.Context) (map[string]float64, error) {
	b, err := d.request(ctx, http.MethodGet, "/metrics", nil, nil)
	if err != nil {
		return nil, err
	}
	return parseMetrics(string(b)), nil
}

// request sends a request to the daemon's API address with its token (and the
// headers of header) and returns the body of a 2xx answer.
func (d *Daemon) request(ctx context.Context, method, path string, header http.Header, body []byte) ([]byte, error) {
	state := filepath.Join(d.Project.Dir, ".kiln")
	addr, err := os.ReadFile(filepath.Join(state, api.AddrFile))
	if err != nil {
		return nil, err
	}
	token, err := os.ReadFile(filepath.Join(state, api.TokenFile))
	if err != nil {
		return nil, err
	}
	base, client := strings.TrimSpace(string(addr)), http.DefaultClient
	if path, ok := strings.CutPrefix(base, "unix://"); ok {
		base, client = "http://kiln", &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", path)
		}}}
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, tail(string(b), 300))
	}
	return b, nil
}

// parseMetrics reads the unlabelled samples of Prometheus's text format.
func parseMetrics(text string) map[string]float64 {
	m := map[string]float64{}
	for _, l := range strings.Split(text, "\n") {
		f := strings.Fields(l)
		if len(f) != 2 || strings.HasPrefix(l, "#") || strings.Contains(f[0], "{") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			m[f[0]] = v
		}
	}
	return m
}
