package pipeline

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/health"
)

// candidateSuffix names the service of a pipeline's candidate servers: they run beside
// the live ones, never behind the front door. A candidate is told apart by its role
// (driver.RoleCandidate), never by this name, which a user's service may have too.
const candidateSuffix = "-candidate"

// testCandidates starts candidate servers of each service's new image, away from the
// front door, waits until they are healthy, runs the checks against them, and destroys
// them whatever the outcome: a failed candidate before it returns, a passed one in the
// background, counted in teardown, so that the deploy need not wait for it.
func (m *Manager) testCandidates(ctx context.Context, def api.Pipeline, services []api.Service, teardown *sync.WaitGroup, log io.Writer) error {
	tctx, cancel := context.WithTimeout(ctx, def.TestTimeout)
	defer cancel()
	for _, svc := range pick(services, def.Services) {
		t := time.Now()
		if err := m.opts.Engine.EnsureImage(tctx, svc.Image); err != nil {
			return err
		}
		fmt.Fprintf(log, "image %s ready in the engine (%s)\n", svc.Image, time.Since(t).Round(time.Millisecond))
		t = time.Now()
		spec, err := m.opts.Engine.ServerSpec(svc)
		if err != nil {
			return err
		}
		spec.Service, spec.Role = svc.Name+candidateSuffix, driver.RoleCandidate
		srv, err := m.opts.Driver.Create(tctx, spec)
		if err != nil {
			return fmt.Errorf("starting a candidate of %s: %w", svc.Name, err)
		}
		fmt.Fprintf(log, "candidate %s started (%s)\n", srv.Name, time.Since(t).Round(time.Millisecond))
		err = testOne(tctx, def, svc, srv, log)
		if err != nil {
			m.destroyCandidate(context.WithoutCancel(ctx), def, srv)
			fmt.Fprintf(log, "candidate %s destroyed\n", srv.Name)
			return err
		}
		fmt.Fprintf(log, "candidate %s passed; it is destroyed while the deploy runs\n", srv.Name)
		teardown.Add(1)
		m.work.Add(1) // a daemon shutting down waits for it too
		go func() {
			defer m.work.Done()
			defer teardown.Done()
			m.destroyCandidate(context.WithoutCancel(ctx), def, srv)
		}()
	}
	return nil
}

// destroyCandidate removes a candidate server; a failure is an event, and the next
// start of the daemon removes what is left.
func (m *Manager) destroyCandidate(ctx context.Context, def api.Pipeline, srv driver.Server) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := m.opts.Driver.Destroy(ctx, srv.ID); err != nil {
		m.event(def.Name, "candidate %s was not destroyed: %v", srv.Name, err)
	}
}

// removeCandidates destroys the candidates a stop left behind. They are told by their
// role, not their name: a user's service may be called "x-candidate" too. Those of a
// kiln that gave candidates no role are told by their name and by being no recorded
// service's; the servers are listed before the services are read, so that a service
// applied meanwhile is among them.
func (m *Manager) removeCandidates(ctx context.Context) {
	candidates, err := m.opts.Driver.List(ctx, driver.Selector{Project: m.opts.Project, Role: driver.RoleCandidate})
	if err != nil {
		m.log.Error("listing candidates", "err", err)
		return
	}
	old, err := m.opts.Driver.List(ctx, driver.Selector{Project: m.opts.Project})
	if err != nil {
		m.log.Error("listing candidates", "err", err)
		return
	}
	services, err := m.opts.State.Services(ctx)
	if err != nil {
		m.log.Error("listing candidates", "err", err)
		return
	}
	recorded := map[string]bool{}
	for _, sv := range services {
		recorded[sv.Name] = true
	}
	for _, s := range old {
		if strings.HasSuffix(s.Service, candidateSuffix) && !recorded[s.Service] {
			candidates = append(candidates, s)
		}
	}
	for _, s := range candidates {
		if err := m.opts.Driver.Destroy(ctx, s.ID); err != nil {
			m.log.Error("destroying a candidate", "service", s.Service, "server_id", s.ID, "err", err)
		}
	}
}

func testOne(ctx context.Context, def api.Pipeline, svc api.Service, srv driver.Server, log io.Writer) error {
	fmt.Fprintf(log, "candidate %s of %s at %s\n", srv.Name, svc.Name, srv.Address)
	h := svc.Health
	if err := health.WaitHealthy(ctx, srv.Address, health.Check{HTTPPath: h.HTTP, TCP: h.TCP, Timeout: h.Timeout}, h.Interval, 0, h.StartPeriod, h.HealthyThreshold); err != nil {
		return fmt.Errorf("the candidate of %s never became healthy: %w", svc.Name, err)
	}
	fmt.Fprintln(log, "candidate is healthy")
	url := "http://" + srv.Address
	for _, c := range def.Checks {
		if err := runCheck(ctx, c, url, log); err != nil {
			return fmt.Errorf("check %q failed: %w", c.Name, err)
		}
		fmt.Fprintf(log, "check %q passed\n", c.Name)
	}
	return nil
}

func runCheck(ctx context.Context, c api.Check, url string, log io.Writer) error {
	if len(c.Command) > 0 {
		cmd := exec.CommandContext(ctx, c.Command[0], c.Command[1:]...)
		cmd.Env = append(os.Environ(), "KILN_CANDIDATE_URL="+url)
		cmd.Stdout, cmd.Stderr = log, log
		return cmd.Run()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+c.Path, nil)
	if err != nil {
		return err
	}
	resp, err := checkClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	status := c.Status
	if status == 0 {
		status = http.StatusOK
	}
	if resp.StatusCode != status {
		return fmt.Errorf("GET %s: status %d, want %d", c.Path, resp.StatusCode, status)
	}
	if c.Body != "" && !strings.Contains(string(body), c.Body) {
		return fmt.Errorf("GET %s: the body does not contain %q", c.Path, c.Body)
	}
	return nil
}

// checkClient is the client of HTTP checks: it never follows a redirect, which the
// candidate (the commit's code) could point anywhere; a check expecting 3xx says so.
var checkClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
