package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// controllerResync is how often the daemon's controller looks at every service in full,
// drift checks included (engine.DefaultResync).
const controllerResync = 5 * time.Second

// TestUpgradeReplacesNothing deploys two services with the previous release of kiln
// (testdata/previous-release), two servers each, with environment values and a secret,
// then stops that daemon and starts this tree's on the same state directory. The new
// daemon must re-adopt every server and, through two resyncs of its controller, create,
// destroy, restart, heal or find drift in none; its front doors must answer again as
// soon as it has re-adopted, and not fail after. The state database it migrates is
// backed up first.
func TestUpgradeReplacesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("TestUpgradeReplacesNothing builds the previous release from git and deploys with it: not under -short")
	}
	previous, commit := previousKiln(t)

	u := newUpgrade(t)
	secretValue := fmt.Sprintf("upgrade-greeting-%d", time.Now().UnixNano())
	u.env = append(u.env, "KILN_TEST_GREETING="+secretValue)

	// The fleet, as a user of the previous release deploys it.
	u.start(previous, "previous")
	okBin(t, previous, u.dir, u.env, "apply")
	u.converged(previous, 90*time.Second)
	before := u.servers()
	if len(before) != 4 {
		t.Fatalf("%d servers after the previous release's apply, want 2 for each of %v: %v", len(before), u.services, before)
	}
	for id, srv := range before {
		if srv.Service == u.services[0] && !slices.Contains(u.envOf(id), "API_TOKEN=token-"+secretValue) {
			t.Fatalf("server %s lacks its secret environment", srv.Name)
		}
	}
	lastEvent := u.lastEventID(previous)
	for _, id := range sortedKeys(before) {
		s := before[id]
		t.Logf("before: %s %s %s created %s started %s spec-hash %.12s", s.Service, s.Name, id[:12], s.Created.Format(time.RFC3339Nano), s.Started.Format(time.RFC3339Nano), s.SpecHash)
	}

	// The upgrade, under load on both front doors.
	probes := make([]*prober, len(u.doors))
	for i, door := range u.doors {
		probes[i] = startProber(door)
	}
	time.Sleep(300 * time.Millisecond) // some requests answered by the previous daemon
	stopping := time.Now()
	okBin(t, previous, u.dir, u.env, "stop")
	u.wait()
	stopped := time.Now()
	db := filepath.Join(u.dir, ".kiln", "kiln.db")
	previousSchema := schemaVersion(t, db) // closed cleanly: no WAL holds a newer header
	u.start(kiln, "this build's")
	apiOn := time.Now()
	readopted := u.converged(kiln, 60*time.Second)
	t.Logf("the previous daemon stopped in %s; this build's API was on %s after, and every server re-adopted and in rotation %s after its start",
		stopped.Sub(stopping).Round(time.Millisecond), apiOn.Sub(stopped).Round(time.Millisecond), readopted.Sub(stopped).Round(time.Millisecond))

	// Two resyncs after the re-adoption: the reconcile loop makes a full pass every
	// controllerResync (a pass at its start finds the services being re-adopted and
	// leaves them). Nothing announces a pass, so this is a window in which every change
	// is looked for, and the first one fails the test at once.
	window := readopted.Add(2*controllerResync + 1500*time.Millisecond)
	for time.Now().Before(window) {
		if after := u.servers(); !sameServers(before, after) {
			t.Errorf("the servers changed %s after the new daemon started:\n%s", time.Since(stopped).Round(time.Millisecond), diffServers(before, after))
			break
		}
		if bad := replacing(u.eventsSince(kiln, lastEvent)); len(bad) > 0 {
			t.Errorf("the new daemon recorded %d events of servers replaced or found wrong:\n%s", len(bad), strings.Join(bad, "\n"))
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	u.converged(kiln, 10*time.Second)
	for _, p := range probes {
		p.finish()
	}

	// Every server as before: same container, same creation, never restarted.
	after := u.servers()
	if !sameServers(before, after) {
		t.Errorf("the upgrade changed the servers:\n%s", diffServers(before, after))
	} else {
		t.Logf("after: the same %d servers (IDs, names, created and started times, spec hashes)", len(after))
	}
	// The previous release served the doors in its daemon; this one runs them apart.
	project, _ := os.ReadFile(filepath.Join(u.dir, ".kiln", "project"))
	if doors := strings.Fields(sh(t, "/", nil, "docker", "ps", "-q", "--filter", "label=dev.kiln.door="+strings.TrimSpace(string(project)))); len(doors) != 1 {
		t.Errorf("door containers running after the upgrade: %v, want one", doors)
	}
	events := u.eventsSince(kiln, lastEvent)
	for _, e := range events {
		t.Logf("event after the upgrade: %s %s %s %s", e.Time.Format(time.RFC3339Nano), e.Service, e.Type, e.Message)
	}
	if bad := replacing(events); len(bad) > 0 {
		t.Errorf("the new daemon recorded %d events of servers replaced or found wrong:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	t.Logf("%d events recorded after the upgrade", len(events))

	// Status: every service healthy, every server in rotation and without drift.
	st := u.status(kiln)
	if len(st.Services) != len(u.services) {
		t.Errorf("after the upgrade kiln status lists %d services, want %d: %+v", len(st.Services), len(u.services), st)
	}
	for _, s := range st.Services {
		if s.State != "healthy" || s.Healthy != 2 || s.Drift != "" {
			t.Errorf("after the upgrade %s is %s, %d healthy, drift %q (cause %q)", s.Name, s.State, s.Healthy, s.Drift, s.Cause)
		}
		for _, srv := range s.Servers {
			if !srv.InService || srv.Health != "healthy" || srv.Drift != "" {
				t.Errorf("after the upgrade server %s of %s: in service %v, health %q, drift %q", srv.Name, s.Name, srv.InService, srv.Health, srv.Drift)
			}
		}
	}
	for i, door := range u.doors {
		if body := u.get(door); !strings.Contains(body, "Hello from kiln!") {
			t.Errorf("after the upgrade %s's front door answers %q", u.services[i], body)
		}
	}

	// The front doors: out while no daemon runs (they are the daemon's), back at the
	// re-adoption, and no failure after it.
	for i, p := range probes {
		p.report(t, u.services[i], stopping, apiOn, readopted)
		if late := p.failedSince(readopted); len(late) > 0 {
			t.Errorf("%s's front door failed %d requests after the re-adoption: %v", u.services[i], len(late), late[:min(5, len(late))])
		}
		if p.answeredSince(readopted) == 0 {
			t.Errorf("%s's front door answered no request after the re-adoption", u.services[i])
		}
	}

	// The same spec, planned by this build: what the next apply would change.
	plan := u.run(kiln, "plan", "-detailed-exitcode")
	t.Logf("this build's plan of the spec the previous release (%.12s) applied: exit %d\n%s%s", commit, plan.code, plan.stdout, plan.stderr)

	// The previous release's database, migrated, is kept in a backup at its schema.
	okBin(t, kiln, u.dir, u.env, "stop")
	u.wait()
	schema := schemaVersion(t, db)
	backups, _ := filepath.Glob(filepath.Join(u.dir, ".kiln", "backups", fmt.Sprintf("kiln-v%d-*.db", previousSchema)))
	t.Logf("state schema %d → %d; backups %v", previousSchema, schema, backups)
	switch {
	case schema < previousSchema:
		t.Errorf("this build left the state at schema %d, older than the previous release's %d", schema, previousSchema)
	case schema > previousSchema && len(backups) == 0:
		entries, _ := os.ReadDir(filepath.Join(u.dir, ".kiln", "backups"))
		t.Errorf("the state was migrated from schema %d to %d with no backup kiln-v%d-*.db in .kiln/backups: %v", previousSchema, schema, previousSchema, entries)
	}
	for _, b := range backups {
		if v := schemaVersion(t, b); v != previousSchema {
			t.Errorf("backup %s is at schema %d, want %d", filepath.Base(b), v, previousSchema)
		}
	}
}

// schemaVersion reads the user_version of the SQLite database at path from its header
// (4 bytes, big-endian, at offset 60), where kiln keeps its schema version.
func schemaVersion(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var h [64]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		t.Fatalf("reading the header of %s: %v", path, err)
	}
	if string(h[:16]) != "SQLite format 3\x00" {
		t.Fatalf("%s is not a SQLite database", path)
	}
	return int(binary.BigEndian.Uint32(h[60:64]))
}

// upgrade is a project of two services deployed by one kiln binary and then another:
// the example service under two unique names, each with its own front door.
type upgrade struct {
	t        *testing.T
	dir      string
	env      []string
	services []string // the first has a secret in its environment
	doors    []string // the services' front doors, as URLs
	daemon   *exec.Cmd
	logs     *syncBuffer
}

func newUpgrade(t *testing.T) *upgrade {
	dir := example(t)
	id := time.Now().UnixNano() % 1e9
	first, second := fmt.Sprintf("hello-up-%d", id), fmt.Sprintf("other-up-%d", id)
	listen, listen2 := freePort(t), freePort(t)
	u := &upgrade{t: t, dir: dir, services: []string{first, second},
		doors: []string{"http://" + listen, "http://" + listen2},
		env:   []string{"KILN_VAR_listen=" + listen, "KILN_VAR_listen2=" + listen2, epoch}}
	editSpec(t, dir, `image "hello" {`, `variable "listen2" {
  default = "127.0.0.1:8081"
}

secret "greeting" {
  env = "KILN_TEST_GREETING"
}

image "hello" {`)
	editSpec(t, dir, `service "hello"`, `service "`+first+`"`)
	// The secret is in an environment value, not a file: the mount point of a secret
	// file (/run/secrets/... on the scratch image) is file drift to the docker driver
	// of both releases, and such servers are replaced at every resync, upgrade or not.
	editSpec(t, dir, `  writable = ["/tmp"]`, `  writable = ["/tmp"]
  env = {
    LOG_LEVEL = "info"
    API_TOKEN = "token-${secret.greeting}"
  }`)
	spec, err := os.ReadFile(filepath.Join(dir, "kiln.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "kiln.hcl"), append(spec, []byte(`
service "`+second+`" {
  image    = image.hello
  replicas = 2
  port     = 8080
  listen   = var.listen2
  writable = ["/tmp"]
  env = {
    MODE = "second"
  }

  health {
    http     = "/healthz"
    interval = "500ms"
  }
}
`)...), 0o644)
	t.Cleanup(func() {
		u.stop()
		project, err := os.ReadFile(filepath.Join(dir, ".kiln", "project"))
		if err != nil {
			return
		}
		label := "label=dev.kiln.project=" + strings.TrimSpace(string(project))
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", label).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
		}
		exec.Command("docker", "network", "rm", "kiln-"+strings.TrimSpace(string(project))).Run()
		if t.Failed() && u.logs != nil {
			t.Logf("the last daemon's output:\n%s", u.logs.String())
		}
	})
	return u
}

// start runs `bin serve` in the project and waits until its API is on.
func (u *upgrade) start(bin, which string) {
	u.t.Helper()
	u.logs = &syncBuffer{}
	cmd := exec.Command(bin, "serve")
	cmd.Dir = u.dir
	cmd.Env = append(os.Environ(), u.env...)
	cmd.Stdout, cmd.Stderr = u.logs, u.logs
	if err := cmd.Start(); err != nil {
		u.t.Fatal(err)
	}
	u.daemon = cmd
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(u.logs.String(), "API on") {
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			u.t.Fatalf("%s kiln serve never said its API is on:\n%s", which, u.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wait waits for the daemon's process to end (after kiln stop).
func (u *upgrade) wait() {
	u.t.Helper()
	if err := u.daemon.Wait(); err != nil {
		u.t.Errorf("the daemon stopped with %v:\n%s", err, u.logs.String())
	}
	u.daemon = nil
}

func (u *upgrade) stop() {
	if u.daemon != nil {
		u.daemon.Process.Signal(syscall.SIGKILL)
		u.daemon.Wait()
		u.daemon = nil
	}
}

func (u *upgrade) run(bin string, args ...string) result {
	u.t.Helper()
	return runBin(u.t, bin, u.dir, u.env, args...)
}

func (u *upgrade) get(url string) string {
	u.t.Helper()
	resp, err := http.Get(url + "/")
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// upgradeStatus is kiln status -json, as both releases print it.
type upgradeStatus struct {
	Services []struct {
		Name     string
		Revision int64
		Healthy  int
		Rollout  string
		State    string
		Cause    string
		Drift    string
		Servers  []struct {
			ID, Name, Health, Drift string
			InService               bool `json:"in_service"`
		}
	}
}

func (u *upgrade) status(bin string) upgradeStatus {
	u.t.Helper()
	var st upgradeStatus
	r := u.run(bin, "status", "-json")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
		u.t.Fatalf("kiln status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	return st
}

// converged waits until bin's daemon reports every service with no rollout running and
// exactly its two servers, both in rotation, and returns when it first did.
func (u *upgrade) converged(bin string, timeout time.Duration) time.Time {
	u.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := u.status(bin)
		done := len(st.Services) == len(u.services)
		for _, s := range st.Services {
			in := 0
			for _, srv := range s.Servers {
				if srv.InService {
					in++
				}
			}
			done = done && s.Rollout == "" && s.Healthy == 2 && len(s.Servers) == 2 && in == 2
		}
		if done {
			return time.Now()
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("the services never converged within %s: %+v\n%s", timeout, st, u.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// upgradeServer is one container of the project, as docker inspect reports it.
type upgradeServer struct {
	Name, Service, Revision, SpecHash, State string
	Created, Started                         time.Time
	Restarts                                 int
}

func (s upgradeServer) String() string {
	return fmt.Sprintf("%s %s rev %s %s created %s started %s restarts %d spec-hash %.12s",
		s.Service, s.Name, s.Revision, s.State, s.Created.Format(time.RFC3339Nano), s.Started.Format(time.RFC3339Nano), s.Restarts, s.SpecHash)
}

// servers returns every server of the project (its containers but the front door's),
// running or not, by full ID.
func (u *upgrade) servers() map[string]upgradeServer {
	u.t.Helper()
	project, err := os.ReadFile(filepath.Join(u.dir, ".kiln", "project"))
	if err != nil {
		u.t.Fatal(err)
	}
	ids := strings.Fields(sh(u.t, "/", nil, "docker", "ps", "-aq", "--no-trunc", "--filter", "label=dev.kiln.project="+strings.TrimSpace(string(project)),
		"--filter", "label=dev.kiln.managed=true"))
	out := map[string]upgradeServer{}
	if len(ids) == 0 {
		return out
	}
	var inspect []struct {
		ID, Name     string
		Created      time.Time
		RestartCount int
		State        struct {
			Status    string
			StartedAt time.Time
		}
		Config struct{ Labels map[string]string }
	}
	if err := json.Unmarshal([]byte(sh(u.t, "/", nil, "docker", append([]string{"inspect"}, ids...)...)), &inspect); err != nil {
		u.t.Fatal(err)
	}
	for _, c := range inspect {
		out[c.ID] = upgradeServer{
			Name: strings.TrimPrefix(c.Name, "/"), Service: c.Config.Labels["dev.kiln.service"],
			Revision: c.Config.Labels["dev.kiln.revision"], SpecHash: c.Config.Labels["dev.kiln.spec-hash"],
			State: c.State.Status, Created: c.Created, Started: c.State.StartedAt, Restarts: c.RestartCount,
		}
	}
	return out
}

// envOf returns the environment of the container id.
func (u *upgrade) envOf(id string) []string {
	u.t.Helper()
	var env []string
	if err := json.Unmarshal([]byte(sh(u.t, "/", nil, "docker", "inspect", "-f", "{{json .Config.Env}}", id)), &env); err != nil {
		u.t.Fatal(err)
	}
	return env
}

func sameServers(a, b map[string]upgradeServer) bool {
	if len(a) != len(b) {
		return false
	}
	for id, s := range a {
		o, ok := b[id]
		if !ok || o.String() != s.String() {
			return false
		}
	}
	return true
}

// diffServers says which servers went, came or changed between a and b.
func diffServers(a, b map[string]upgradeServer) string {
	var lines []string
	for _, id := range sortedKeys(a) {
		if o, ok := b[id]; !ok {
			lines = append(lines, "gone:    "+id[:12]+" "+a[id].String())
		} else if o.String() != a[id].String() {
			lines = append(lines, "changed: "+id[:12]+" "+a[id].String()+"\n      to "+o.String())
		}
	}
	for _, id := range sortedKeys(b) {
		if _, ok := a[id]; !ok {
			lines = append(lines, "new:     "+id[:12]+" "+b[id].String())
		}
	}
	return strings.Join(lines, "\n")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// upgradeEvent is one line of kiln events -json, as both releases print it.
type upgradeEvent struct {
	ID       int64
	Time     time.Time
	Service  string
	ServerID string `json:"server_id"`
	Type     string
	Message  string
}

func (u *upgrade) events(bin string) []upgradeEvent {
	u.t.Helper()
	r := u.run(bin, "events", "-json")
	if r.code != 0 {
		u.t.Fatalf("kiln events: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var out []upgradeEvent
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	for dec.More() {
		var e upgradeEvent
		if err := dec.Decode(&e); err != nil {
			u.t.Fatalf("kiln events -json: %v\n%s", err, r.stdout)
		}
		out = append(out, e)
	}
	return out
}

func (u *upgrade) lastEventID(bin string) int64 {
	u.t.Helper()
	var last int64
	for _, e := range u.events(bin) {
		last = max(last, e.ID)
	}
	return last
}

// eventsSince returns the events recorded after the one of ID last, oldest first.
func (u *upgrade) eventsSince(bin string, last int64) []upgradeEvent {
	u.t.Helper()
	var out []upgradeEvent
	for _, e := range u.events(bin) {
		if e.ID > last {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b upgradeEvent) int { return int(a.ID - b.ID) })
	return out
}

// replacing returns, as lines, the events that tell of a server created, destroyed,
// healed, drifted or failing, of a rollout, or of an error: none may follow an upgrade.
// A server admitted to the new daemon's front door is expected.
func replacing(events []upgradeEvent) []string {
	var bad []string
	for _, e := range events {
		if e.Type != "admitted" {
			bad = append(bad, fmt.Sprintf("%s %s %s %s: %s", e.Time.Format(time.RFC3339Nano), e.Service, e.Type, e.ServerID, e.Message))
		}
	}
	return bad
}

// prober sends requests to a front door one after another until finished, and keeps
// the start and duration of every request answered and the error of every failed one
// (an error or an answer other than 200).
type prober struct {
	stop context.CancelFunc
	done chan struct{}
	mu   sync.Mutex
	ok   []probeAnswer
	bad  []probeFailure
}

type probeAnswer struct {
	at   time.Time
	took time.Duration
}

type probeFailure struct {
	at  time.Time
	err string
}

func (f probeFailure) String() string { return f.at.Format("15:04:05.000") + " " + f.err }

func startProber(url string) *prober {
	ctx, cancel := context.WithCancel(context.Background())
	p := &prober{stop: cancel, done: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	go func() {
		defer close(p.done)
		for ctx.Err() == nil {
			at := time.Now()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
			resp, err := client.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			if ctx.Err() != nil {
				return
			}
			p.mu.Lock()
			if err != nil {
				p.bad = append(p.bad, probeFailure{at, err.Error()})
			} else {
				p.ok = append(p.ok, probeAnswer{at, time.Since(at)})
			}
			p.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return p
}

func (p *prober) finish() {
	p.stop()
	<-p.done
}

// failedSince returns the failures of requests started at or after t.
func (p *prober) failedSince(t time.Time) []probeFailure {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []probeFailure
	for _, f := range p.bad {
		if !f.at.Before(t) {
			out = append(out, f)
		}
	}
	return out
}

// answeredSince returns how many requests started at or after t were answered.
func (p *prober) answeredSince(t time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, a := range p.ok {
		if !a.at.Before(t) {
			n++
		}
	}
	return n
}

// report logs what the front door answered from the upgrade's start: the requests
// that failed (and how many of them after the new daemon's API was on); its gap, from
// the last request answered before the first failure to the arrival of the first
// answer after the last one (a door with no server in rotation yet holds requests);
// and the slowest answers during the switch and after the re-adoption.
func (p *prober) report(t *testing.T, service string, stopping, apiOn, readopted time.Time) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var slowest, slowestAfter probeAnswer
	for _, a := range p.ok {
		switch {
		case a.at.Before(stopping):
		case a.at.Before(readopted):
			if a.took > slowest.took {
				slowest = a
			}
		default:
			if a.took > slowestAfter.took {
				slowestAfter = a
			}
		}
	}
	slow := fmt.Sprintf("the slowest answer during the switch took %s (sent %s after the stop began), after the re-adoption %s",
		slowest.took.Round(time.Millisecond), slowest.at.Sub(stopping).Round(time.Millisecond), slowestAfter.took.Round(time.Millisecond))
	if len(p.bad) == 0 {
		t.Logf("%s's front door: %d requests answered, none failed; %s", service, len(p.ok), slow)
		return
	}
	first, last := p.bad[0].at, p.bad[len(p.bad)-1].at
	from, back := first, last
	for _, a := range p.ok {
		if a.at.Before(first) {
			from = a.at
		}
		if a.at.After(last) {
			back = a.at.Add(a.took)
			break
		}
	}
	kinds := map[string]int{}
	afterAPI := 0
	for _, f := range p.bad {
		kinds[errorKind(f.err)]++
		if !f.at.Before(apiOn) {
			afterAPI++
		}
	}
	t.Logf("%s's front door: %d requests answered, %d failed (%v), %d of them sent after the new API was on; failing from %s to %s after the stop began, answering again at %s (a gap of %s); %s",
		service, len(p.ok), len(p.bad), kinds, afterAPI, first.Sub(stopping).Round(time.Millisecond), last.Sub(stopping).Round(time.Millisecond),
		back.Sub(stopping).Round(time.Millisecond), back.Sub(from).Round(time.Millisecond), slow)
}

// errorKind is a failure's error without its addresses, to count failures by kind.
func errorKind(err string) string {
	for _, kind := range []string{"connection refused", "connection reset", "EOF", "timeout"} {
		if strings.Contains(err, kind) {
			return kind
		}
	}
	return err
}
