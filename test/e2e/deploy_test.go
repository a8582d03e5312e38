package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// deployment is the example service deployed by a kiln daemon started by the test, with
// a unique service name and front door so runs do not collide.
type deployment struct {
	t       *testing.T
	dir     string
	service string
	url     string
	env     []string
	daemon  *exec.Cmd
	logs    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newDeployment(t *testing.T) *deployment {
	dir := example(t)
	service := fmt.Sprintf("hello-e2e-%d", time.Now().UnixNano()%1e9)
	editSpec(t, dir, `service "hello"`, `service "`+service+`"`)
	listen := freePort(t)
	d := &deployment{t: t, dir: dir, service: service, url: "http://" + listen,
		env: []string{"KILN_VAR_listen=" + listen, epoch}}
	t.Cleanup(func() {
		d.stopDaemon(syscall.SIGKILL)
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=dev.kiln.service="+service).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
		}
		// Servers removed behind kiln's back leave their project's network.
		if project, err := os.ReadFile(filepath.Join(dir, ".kiln", "project")); err == nil {
			removeDoors(strings.TrimSpace(string(project)))
			exec.Command("docker", "network", "rm", "kiln-"+strings.TrimSpace(string(project))).Run()
		}
		if t.Failed() && d.logs != nil {
			t.Logf("daemon output:\n%s", d.logs.String())
		}
	})
	return d
}

func editSpec(t *testing.T, dir, old, new string) {
	t.Helper()
	p := filepath.Join(dir, "kiln.hcl")
	b, _ := os.ReadFile(p)
	if !strings.Contains(string(b), old) {
		t.Fatalf("kiln.hcl has no %q", old)
	}
	os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o644)
}

// startDaemon runs `kiln args...` (up or serve) in the background and waits until its
// output contains ready.
func (d *deployment) startDaemon(ready string, args ...string) {
	d.t.Helper()
	d.startDaemonWith(kiln, ready, args...)
}

// startDaemonWith is startDaemon with the kiln binary at bin.
func (d *deployment) startDaemonWith(bin, ready string, args ...string) {
	d.t.Helper()
	d.logs = &syncBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Dir = d.dir
	cmd.Env = append(os.Environ(), d.env...)
	cmd.Stdout, cmd.Stderr = d.logs, d.logs
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.daemon = cmd
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(d.logs.String(), ready) {
		if time.Now().After(deadline) {
			d.t.Fatalf("kiln %s never printed %q:\n%s", strings.Join(args, " "), ready, d.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *deployment) stopDaemon(sig syscall.Signal) {
	if d.daemon == nil {
		return
	}
	d.daemon.Process.Signal(sig)
	d.daemon.Wait()
	d.daemon = nil
}

func (d *deployment) kiln(env []string, args ...string) result {
	d.t.Helper()
	return run(d.t, d.dir, append(append([]string{}, d.env...), env...), args...)
}

func (d *deployment) get(path string) string {
	d.t.Helper()
	resp, err := http.Get(d.url + path)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// containers returns the service's containers as docker reports them: ID → revision label.
func (d *deployment) containers() map[string]string {
	d.t.Helper()
	out, err := exec.Command("docker", "ps", "-a", "--filter", "label=dev.kiln.service="+d.service,
		"--format", `{{.ID}} {{.Label "dev.kiln.revision"}} {{.State}}`).Output()
	if err != nil {
		d.t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) == 3 {
			m[f[0]] = f[1] + " " + f[2]
		}
	}
	return m
}

// load hits the front door continuously from several clients until stopped, and counts
// requests and failures (errors and non-200 answers).
type load struct {
	ok, failed atomic.Int64
	stop       context.CancelFunc
	wg         sync.WaitGroup
	mu         sync.Mutex
	errs       []string
}

func startLoad(url string, clients int) *load { return startLoadAt(url, clients, 0) }

// startLoadAt is startLoad with each client waiting gap after each answer: 4 clients
// with a gap of 4ms make about 1,000 requests a second on loopback.
func startLoadAt(url string, clients int, gap time.Duration) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{stop: cancel}
	client := &http.Client{Timeout: 10 * time.Second}
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				resp, err := client.Get(url + "/")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						l.ok.Add(1)
						if gap > 0 {
							time.Sleep(gap)
						}
						continue
					}
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				if ctx.Err() != nil {
					return
				}
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.errs) < 5 {
					l.errs = append(l.errs, err.Error())
				}
				l.mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	return l
}

func (l *load) finish(t *testing.T, what string) {
	t.Helper()
	l.stop()
	l.wg.Wait()
	t.Logf("%s: %d requests, %d failed", what, l.ok.Load(), l.failed.Load())
	if l.failed.Load() > 0 {
		t.Errorf("%s: %d failed requests (of %d): %v", what, l.failed.Load(), l.ok.Load()+l.failed.Load(), l.errs)
	}
	if l.ok.Load() == 0 {
		t.Errorf("%s: no request succeeded", what)
	}
}

type statusJSON struct {
	Services []struct {
		Name     string
		Revision int64
		Healthy  int
		Replicas int
		Rollout  string
		Servers  []struct{ Revision int64 }
	}
}

func (d *deployment) status() statusJSON {
	d.t.Helper()
	var st statusJSON
	r := d.kiln(nil, "status", "-json")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
		d.t.Fatalf("kiln status: %d %s %s", r.code, r.stdout, r.stderr)
	}
	return st
}

// TestDeployLifecycle follows a service through its life: up, plan, rolling and
// blue-green updates under load, a failed version rolled back automatically, a manual
// rollback, a daemon killed mid-rollout and restarted, and destroy.
func TestDeployLifecycle(t *testing.T) {
	d := newDeployment(t)
	d.startDaemon("revision 1 deployed", "up")
	if body := d.get("/"); !strings.Contains(body, "version: dev") {
		t.Fatalf("front door answered %q", body)
	}
	if n := len(d.containers()); n != 2 {
		t.Fatalf("%d containers, want 2 replicas", n)
	}

	// Plan: nothing to do, then a new version replaces both servers.
	if r := d.kiln(nil, "plan", "-detailed-exitcode"); r.code != 0 || !strings.Contains(r.stdout, "No changes") {
		t.Fatalf("plan on an up-to-date service: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	v2 := []string{"KILN_VAR_version=2.0"}
	r := d.kiln(v2, "plan", "-detailed-exitcode")
	if r.code != 2 || strings.Count(r.stdout, "+/-") != 2 || !strings.Contains(r.stdout, "image ") {
		t.Fatalf("plan of a new version: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Rolling update under load.
	l := startLoad(d.url, 8)
	time.Sleep(300 * time.Millisecond)
	if r := d.kiln(v2, "apply"); r.code != 0 || !strings.Contains(r.stdout, "revision 2 deployed") {
		t.Fatalf("apply v2: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	l.finish(t, "rolling update")
	if body := d.get("/"); !strings.Contains(body, "version: 2.0") {
		t.Fatalf("after apply v2: %q", body)
	}

	// Blue-green update under load.
	editSpec(t, d.dir, `strategy          = "rolling"`, `strategy          = "blue-green"`)
	v3 := []string{"KILN_VAR_version=3.0"}
	l = startLoad(d.url, 8)
	if r := d.kiln(v3, "apply"); r.code != 0 || !strings.Contains(r.stdout, "revision 3 deployed") {
		t.Fatalf("apply v3 blue-green: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	l.finish(t, "blue-green update")

	// A version whose servers never become healthy is rolled back; v3 keeps serving.
	editSpec(t, d.dir, `strategy          = "blue-green"`, `strategy          = "rolling"`)
	editSpec(t, d.dir, `http     = "/healthz"`, `http     = "/missing"`)
	editSpec(t, d.dir, `progress_deadline = "30s"`, `progress_deadline = "4s"`)
	l = startLoad(d.url, 8)
	r = d.kiln([]string{"KILN_VAR_version=4.0"}, "apply")
	l.finish(t, "failed update and automatic rollback")
	if r.code != 1 || !strings.Contains(r.stdout, "rolled back") {
		t.Fatalf("apply of an unhealthy version: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if body := d.get("/"); !strings.Contains(body, "version: 3.0") {
		t.Fatalf("after the rollback the front door answers %q", body)
	}
	if n := len(d.containers()); n != 2 {
		t.Errorf("after the rollback: %d containers, want 2: %v", n, d.containers())
	}
	hist := d.kiln(nil, "history", d.service)
	if !strings.Contains(hist.stdout, "rolled_back") || !strings.Contains(hist.stdout, "deployed") {
		t.Errorf("history:\n%s", hist.stdout)
	}
	if ev := d.kiln(nil, "events", "--service", d.service); ev.code != 0 || !strings.Contains(ev.stdout, "was rolled back") {
		t.Errorf("events lack the rollback:\n%s", ev.stdout)
	}
	editSpec(t, d.dir, `http     = "/missing"`, `http     = "/healthz"`)
	editSpec(t, d.dir, `progress_deadline = "4s"`, `progress_deadline = "30s"`)

	// Pruning the image store keeps the images of the revisions a rollback may need.
	if r := d.kiln(nil, "images", "prune"); r.code != 0 {
		t.Fatalf("images prune: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Manual rollback to the first revision.
	if r := d.kiln(nil, "rollback", d.service, "--to", "1"); r.code != 0 {
		t.Fatalf("rollback --to 1: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if body := d.get("/"); !strings.Contains(body, "version: dev") {
		t.Fatalf("after rollback to 1: %q", body)
	}

	// A restarted daemon re-adopts the running servers without restarting them.
	before := d.containers()
	d.stopDaemon(syscall.SIGTERM)
	d.startDaemon("API on", "serve")
	waitConverged(t, d)
	if after := d.containers(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a daemon restart changed the servers: before %v, after %v", before, after)
	}
	if body := d.get("/"); !strings.Contains(body, "version: dev") {
		t.Fatalf("after the restart: %q", body)
	}

	// kill -9 of the daemon in the middle of a rollout, then a restart finishes it.
	v5 := []string{"KILN_VAR_version=5.0"}
	if r := d.kiln(v5, "apply", "--detach", "-auto-approve"); r.code != 0 { // over the rollback to 1
		t.Fatalf("apply --detach: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// One rollout per service: a second apply meanwhile is refused, naming the first.
	if r := d.kiln([]string{"KILN_VAR_version=6.0"}, "apply", "-auto-approve"); r.code != 1 || !strings.Contains(r.stderr, "in progress") {
		t.Errorf("concurrent apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Wait until the rollout is half-way: a new server exists beside the old ones.
	for deadline := time.Now().Add(30 * time.Second); ; {
		st := d.status()
		if len(st.Services) == 1 && st.Services[0].Rollout != "" && len(st.Services[0].Servers) > 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rollout never got half-way: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.stopDaemon(syscall.SIGKILL)
	d.startDaemon("API on", "serve")
	waitConverged(t, d)
	cs := d.containers()
	revs := map[string]bool{}
	for _, v := range cs {
		revs[v] = true
	}
	if len(cs) != 2 || len(revs) != 1 {
		t.Fatalf("after the restart: containers %v, want 2 of one revision (no orphans, no duplicates)", cs)
	}
	if body := d.get("/"); !strings.Contains(body, "version: 5.0") {
		t.Errorf("after the resumed rollout the front door answers %q", body)
	}

	// Destroy removes every server.
	if r := d.kiln(nil, "destroy", d.service); r.code != 0 {
		t.Fatalf("destroy: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if cs := d.containers(); len(cs) != 0 {
		t.Errorf("after destroy: %v", cs)
	}
}

// TestDeployBadInput: each bad input is refused with a clear error before anything is
// created, and leaves the state consistent.
func TestDeployBadInput(t *testing.T) {
	d := newDeployment(t)

	// No daemon yet.
	if r := d.kiln(nil, "status"); r.code != 1 || !strings.Contains(r.stderr, "no kiln daemon is running") {
		t.Errorf("status without a daemon: exit %d: %s", r.code, r.stderr)
	}

	// An unreachable engine stops the daemon from starting, with the reason.
	r := d.kiln([]string{"DOCKER_HOST=unix:///nonexistent/docker.sock"}, "serve")
	if r.code != 1 || !strings.Contains(r.stderr, "/nonexistent/docker.sock") {
		t.Errorf("serve with no engine: exit %d: %s", r.code, r.stderr)
	}

	d.startDaemon("API on", "serve")

	// The front door's port is taken by another program.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	r = d.kiln([]string{"KILN_VAR_listen=" + busy.Addr().String()}, "apply")
	if r.code != 1 || !strings.Contains(r.stderr, "already in use") {
		t.Errorf("apply on a busy port: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := len(d.containers()); n != 0 {
		t.Errorf("a refused apply created %d containers", n)
	}

	// An image that is not in the store.
	spec, _ := os.ReadFile(filepath.Join(d.dir, "kiln.hcl"))
	editSpec(t, d.dir, "image    = image.hello", `image    = "sha256:`+strings.Repeat("ab", 32)+`"`)
	r = d.kiln(nil, "apply")
	if r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("apply of an unknown image: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	os.WriteFile(filepath.Join(d.dir, "kiln.hcl"), spec, 0o644)

	// Invalid update settings are caught by the spec, with their place.
	editSpec(t, d.dir, "max_surge         = 1", "max_surge         = 0")
	r = d.kiln(nil, "apply")
	if r.code != 1 || !strings.Contains(r.stderr, "Invalid update settings") || !strings.Contains(r.stderr, "kiln.hcl line") {
		t.Errorf("apply with invalid update settings: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	os.WriteFile(filepath.Join(d.dir, "kiln.hcl"), spec, 0o644)

	// Nothing was recorded by the refused applies; a good one goes through.
	if st := d.status(); len(st.Services) != 0 {
		t.Errorf("refused applies left services behind: %+v", st)
	}
	if r := d.kiln(nil, "apply"); r.code != 0 {
		t.Fatalf("apply after the refusals: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A second daemon for the same spec is refused.
	if r := d.kiln(nil, "serve"); r.code != 1 || !strings.Contains(r.stderr, "already running") {
		t.Errorf("second serve: exit %d: %s", r.code, r.stderr)
	}
}

// waitConverged waits until the service has no rollout running and exactly its two
// servers, both in rotation.
func waitConverged(t *testing.T, d *deployment) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		st := d.status()
		if len(st.Services) == 1 && st.Services[0].Rollout == "" && st.Services[0].Healthy == 2 && len(st.Services[0].Servers) == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service never converged: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestTwoProjectsSameServiceName: two spec directories on one engine, each with a
// service of the same name, never touch each other's servers.
func TestTwoProjectsSameServiceName(t *testing.T) {
	a := newDeployment(t)
	b := newDeployment(t)
	editSpec(t, b.dir, `service "`+b.service+`"`, `service "`+a.service+`"`)
	b.service = a.service
	a.startDaemon("revision 1 deployed", "up")
	b.startDaemon("revision 1 deployed", "up")
	if n := len(a.containers()); n != 4 {
		t.Fatalf("%d containers named %s, want 2 per project", n, a.service)
	}
	for _, d := range []*deployment{a, b} {
		if st := d.status(); len(st.Services) != 1 || st.Services[0].Healthy != 2 || len(st.Services[0].Servers) != 2 {
			t.Errorf("%s sees %+v, want its own 2 servers", d.dir, st)
		}
	}
	if r := a.kiln(nil, "destroy", a.service); r.code != 0 {
		t.Fatalf("destroy: %s", r.stderr)
	}
	if st := b.status(); st.Services[0].Healthy != 2 {
		t.Errorf("destroying project a's service hurt project b's: %+v", st)
	}
	if body := b.get("/"); !strings.Contains(body, "Hello from kiln!") {
		t.Errorf("project b answers %q", body)
	}
}
