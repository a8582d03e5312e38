// Command probe is the stopwatch of kiln-bench heal and kiln-bench pipeline: it does
// one thing to a fleet and times, at a 20 ms resolution, how the fleet gets back
// to where it was, from the outside.
//
//	probe heal -system kiln  -target ID -action kill|exec -n 4 -api URL -token FILE -service S -door URL
//	probe heal -system swarm -target ID -action kill -n 4 -service S [-health]
//	probe door -url URL -want TEXT [-settle K]
//
// heal takes the state of the fleet, performs the action on the target container
// through the Docker Engine API (a SIGKILL, or an exec of -exec-cmd: the instant is
// taken just before the call), then polls until the fleet has recovered:
//
//   - kiln: `GET /v1/status` says the service has n healthy servers, all running
//     and in rotation, and the target is no longer listed; and the front door
//     (polled continuously) has answered from a server that was not there before.
//   - swarm: n tasks are running (as `docker service ps` shows them), none of them
//     the target; the new task's container is healthy (with -health) and answers
//     GET / on its own published port (Swarm's routing mesh is not used).
//
// door polls URL until a response contains TEXT (and, with -settle K, until K
// responses in a row do).
//
// Both print "key value" lines on stdout: times are milliseconds after the action
// (heal) or after the start (door), "-" when it did not happen. The exit status is 1
// if the fleet did not recover (or TEXT never came) within -timeout.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe heal|door [flags] (probe heal -h)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "heal":
		err = heal(os.Args[2:])
	case "door":
		err = door(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (heal, door)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

// out collects the "key value" lines, printed sorted at the end.
type out struct {
	mu sync.Mutex
	t0 time.Time
	kv map[string]string
}

func newOut() *out { return &out{kv: map[string]string{}} }

func (o *out) set(k string, v any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.kv[k] = fmt.Sprint(v)
}

// mark records when k first happened, in ms after t0.
func (o *out) mark(k string, t time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.kv[k]; !ok {
		o.kv[k] = ms(t.Sub(o.t0))
	}
}

func (o *out) has(k string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.kv[k]
	return ok
}

func (o *out) print(keys ...string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, k := range keys {
		if _, ok := o.kv[k]; !ok {
			o.kv[k] = "-"
		}
	}
	ks := make([]string, 0, len(o.kv))
	for k := range o.kv {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		fmt.Printf("%s %s\n", k, o.kv[k])
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e6) }

// ---------------------------------------------------------------- Docker Engine API

type dockerAPI struct{ c *http.Client }

func newDocker() *dockerAPI {
	sock := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		sock = strings.TrimPrefix(h, "unix://")
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	return &dockerAPI{c: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func (d *dockerAPI) call(method, path string, body, into any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://docker"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := d.c.Do(req)
	if err != nil {
		return fmt.Errorf("docker API %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("docker API %s %s: %s: %s", method, path, res.Status, bytes.TrimSpace(b))
	}
	if into != nil {
		return json.Unmarshal(b, into)
	}
	return nil
}

type task struct {
	ID           string
	DesiredState string
	Status       struct {
		State           string
		ContainerStatus struct{ ContainerID string }
	}
}

func (d *dockerAPI) tasks(service string) ([]task, error) {
	f, _ := json.Marshal(map[string][]string{"service": {service}})
	var ts []task
	return ts, d.call("GET", "/tasks?filters="+url.QueryEscape(string(f)), nil, &ts)
}

type inspect struct {
	State struct {
		Running   bool
		StartedAt time.Time
		Health    *struct{ Status string }
	}
	NetworkSettings struct {
		Ports map[string][]struct{ HostIP, HostPort string }
	}
}

// ---------------------------------------------------------------- kiln API

type kilnAPI struct {
	base, token string
	c           *http.Client
}

type kilnStatus struct {
	Services []struct {
		Name    string
		Healthy int
		Servers []struct {
			ID        string
			State     string
			InService bool `json:"in_service"`
		}
	}
}

type kilnEvent struct {
	ID       int64
	Time     time.Time
	ServerID string `json:"server_id"`
	Type     string
	Message  string
}

func (k *kilnAPI) get(path string, into any) error {
	req, err := http.NewRequest("GET", k.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+k.token)
	res, err := k.c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(res.Body)
		return fmt.Errorf("kiln API GET %s: %s: %s", path, res.Status, bytes.TrimSpace(b))
	}
	return json.NewDecoder(res.Body).Decode(into)
}

// serverLine is the "server: <hostname>" line of the example's answer; the hostname
// is the container ID's first 12 characters.
func serverLine(body []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "server: "); ok {
			return strings.TrimSpace(s)
		}
	}
	return ""
}

func short(id string) string { return id[:min(12, len(id))] }

// ---------------------------------------------------------------- heal

func heal(args []string) error {
	fs := flag.NewFlagSet("heal", flag.ExitOnError)
	system := fs.String("system", "kiln", "kiln or swarm")
	target := fs.String("target", "", "the container to act on (ID)")
	action := fs.String("action", "kill", "kill (SIGKILL) or exec (of -exec-cmd, detached)")
	execCmd := fs.String("exec-cmd", "/app/hello", "the command exec runs in the target")
	n := fs.Int("n", 4, "servers the fleet should have")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	every := fs.Duration("every", 20*time.Millisecond, "polling period")
	apiURL := fs.String("api", "", "kiln: the daemon's API URL (.kiln/api.addr)")
	tokenFile := fs.String("token", "", "kiln: the API token file (.kiln/token)")
	service := fs.String("service", "", "the kiln service or the Swarm service")
	doorURL := fs.String("door", "", "kiln: the front door URL")
	health := fs.Bool("health", false, "swarm: wait until the new container is healthy")
	fs.Parse(args)
	if *target == "" || *service == "" {
		return errors.New("heal needs -target and -service")
	}
	d := newDocker()
	o := newOut()
	var kiln *kilnAPI
	var lastEvent int64
	oldServers := map[string]bool{} // short container IDs
	oldTasks := map[string]bool{}
	switch *system {
	case "kiln":
		tok, err := os.ReadFile(*tokenFile)
		if err != nil {
			return err
		}
		kiln = &kilnAPI{base: strings.TrimRight(*apiURL, "/"), token: strings.TrimSpace(string(tok)), c: &http.Client{Timeout: 5 * time.Second}}
		var st kilnStatus
		if err := kiln.get("/v1/status", &st); err != nil {
			return err
		}
		for _, s := range st.Services {
			if s.Name == *service {
				for _, sv := range s.Servers {
					oldServers[short(sv.ID)] = true
				}
			}
		}
		var evs []kilnEvent
		if err := kiln.get("/v1/events?service="+url.QueryEscape(*service), &evs); err != nil {
			return err
		}
		for len(evs) > 0 { // the API pages by 1000
			lastEvent = evs[len(evs)-1].ID
			evs = nil
			if err := kiln.get(fmt.Sprintf("/v1/events?service=%s&since=%d", url.QueryEscape(*service), lastEvent), &evs); err != nil {
				return err
			}
		}
	case "swarm":
		ts, err := d.tasks(*service)
		if err != nil {
			return err
		}
		for _, t := range ts {
			oldTasks[t.ID] = true
			if c := t.Status.ContainerStatus.ContainerID; c != "" {
				oldServers[short(c)] = true
			}
		}
	default:
		return fmt.Errorf("unknown -system %q", *system)
	}
	if !oldServers[short(*target)] {
		return fmt.Errorf("the target %s is not one of the service's containers", short(*target))
	}
	o.set("old_servers", len(oldServers))

	// The action.
	o.t0 = time.Now()
	o.set("t0_ns", o.t0.UnixNano())
	switch *action {
	case "kill":
		if err := d.call("POST", "/containers/"+*target+"/kill", nil, nil); err != nil {
			return err
		}
	case "exec":
		var ex struct{ ID string }
		if err := d.call("POST", "/containers/"+*target+"/exec", map[string]any{"Cmd": strings.Fields(*execCmd)}, &ex); err != nil {
			return err
		}
		if err := d.call("POST", "/exec/"+ex.ID+"/start", map[string]any{"Detach": true}, nil); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown -action %q", *action)
	}
	o.mark("action_ms", time.Now())

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var recovered bool
	if *system == "kiln" {
		recovered = healKiln(ctx, o, kiln, *service, *doorURL, *target, *n, oldServers, *every)
		// Where the time went, from kiln's own events (times from the daemon's clock,
		// the same machine).
		var evs []kilnEvent
		if err := kiln.get(fmt.Sprintf("/v1/events?service=%s&since=%d", url.QueryEscape(*service), lastEvent), &evs); err == nil {
			for _, e := range evs {
				o.mark("ev_"+e.Type+"_ms", e.Time)
				if e.Type == "destroyed" && strings.HasPrefix(e.ServerID, short(*target)) {
					o.mark("ev_target_destroyed_ms", e.Time)
				}
			}
			o.set("events", len(evs))
		}
		o.print("recovered_ms", "status_ms", "door_new_ms", "gone_ms", "ev_heal_ms", "ev_created_ms", "ev_admitted_ms", "ev_target_destroyed_ms", "ev_unhealthy_ms", "ev_drift_ms")
	} else {
		recovered = healSwarm(ctx, o, d, *service, *target, *n, oldTasks, oldServers, *health, *every)
		o.print("recovered_ms", "tasks_ms", "healthy_ms", "answer_ms", "detect_ms", "new_task_ms", "started_ms")
	}
	if !recovered {
		return fmt.Errorf("the fleet did not recover within %s", *timeout)
	}
	return nil
}

func healKiln(ctx context.Context, o *out, k *kilnAPI, service, doorURL, target string, n int, old map[string]bool, every time.Duration) bool {
	// The front door, polled continuously: which servers answer, and failures.
	dctx, dcancel := context.WithCancel(ctx)
	defer dcancel()
	var wg sync.WaitGroup
	if doorURL != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 2 * time.Second}
			sent, failed := 0, 0
			for dctx.Err() == nil {
				req, _ := http.NewRequestWithContext(dctx, "GET", doorURL, nil)
				res, err := c.Do(req)
				if dctx.Err() != nil {
					break
				}
				sent++
				if err != nil {
					failed++
					o.mark("door_first_failure_ms", time.Now())
					time.Sleep(5 * time.Millisecond)
					continue
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode/100 != 2 {
					failed++
					o.mark("door_first_failure_ms", time.Now())
				} else if s := serverLine(b); s != "" && !old[s] {
					o.mark("door_new_ms", time.Now())
					o.set("new_server", s)
				}
				time.Sleep(5 * time.Millisecond)
			}
			o.set("door_sent", sent)
			o.set("door_failed", failed)
		}()
	}
	defer wg.Wait()
	defer dcancel()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		var st kilnStatus
		if err := k.get("/v1/status", &st); err == nil {
			now := time.Now()
			for _, s := range st.Services {
				if s.Name != service {
					continue
				}
				gone, serving := true, 0
				for _, sv := range s.Servers {
					if strings.HasPrefix(sv.ID, target) || strings.HasPrefix(target, sv.ID) {
						gone = false
					}
					if sv.State == "running" && sv.InService {
						serving++
					}
				}
				if gone {
					o.mark("gone_ms", now)
				}
				if !o.has("left_rotation_ms") {
					for _, sv := range s.Servers {
						if strings.HasPrefix(sv.ID, target) && !sv.InService {
							o.mark("left_rotation_ms", now)
						}
					}
				}
				if gone && s.Healthy == n && serving == n && len(s.Servers) == n {
					o.mark("status_ms", now)
				}
			}
		}
		if o.has("status_ms") && (doorURL == "" || o.has("door_new_ms")) {
			o.mu.Lock()
			r := o.kv["status_ms"]
			if d, ok := o.kv["door_new_ms"]; ok && atof(d) > atof(r) {
				r = d
			}
			o.kv["recovered_ms"] = r
			o.mu.Unlock()
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

func healSwarm(ctx context.Context, o *out, d *dockerAPI, service, target string, n int, oldTasks, old map[string]bool, health bool, every time.Duration) bool {
	tick := time.NewTicker(every)
	defer tick.Stop()
	hc := &http.Client{Timeout: 2 * time.Second}
	answered, healthy := map[string]bool{}, map[string]bool{}
	for {
		ts, err := d.tasks(service)
		if err == nil {
			now := time.Now()
			running := 0
			for _, t := range ts {
				cid := t.Status.ContainerStatus.ContainerID
				if cid != "" && strings.HasPrefix(cid, target) && t.Status.State != "running" {
					o.mark("detect_ms", now)
				}
				if cid != "" && strings.HasPrefix(cid, target) {
					continue
				}
				if t.DesiredState == "running" && t.Status.State == "running" {
					running++
				}
				if oldTasks[t.ID] {
					continue
				}
				o.mark("new_task_ms", now)
				if cid == "" || answered[cid] && (!health || healthy[cid]) {
					continue
				}
				var in inspect
				if d.call("GET", "/containers/"+cid+"/json", nil, &in) != nil || !in.State.Running {
					continue
				}
				if !in.State.StartedAt.IsZero() {
					o.mark("started_ms", in.State.StartedAt)
				}
				if in.State.Health != nil && in.State.Health.Status == "healthy" {
					healthy[cid] = true
					o.mark("healthy_ms", now)
				}
				if ps := in.NetworkSettings.Ports["8080/tcp"]; !answered[cid] && len(ps) > 0 && ps[0].HostPort != "" {
					res, err := hc.Get("http://127.0.0.1:" + ps[0].HostPort + "/")
					if err == nil {
						b, _ := io.ReadAll(res.Body)
						res.Body.Close()
						if res.StatusCode == 200 && serverLine(b) == short(cid) {
							answered[cid] = true
							o.mark("answer_ms", time.Now())
							o.set("new_server", short(cid))
						}
					}
				}
			}
			if running == n {
				o.mark("tasks_ms", now)
			}
		}
		if o.has("tasks_ms") && o.has("answer_ms") && (!health || o.has("healthy_ms")) {
			o.mu.Lock()
			r := 0.0
			for _, k := range []string{"tasks_ms", "answer_ms", "healthy_ms"} {
				if v, ok := o.kv[k]; ok && (k != "healthy_ms" || health) {
					r = max(r, atof(v))
				}
			}
			o.kv["recovered_ms"] = fmt.Sprintf("%.1f", r)
			o.mu.Unlock()
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

func atof(s string) float64 {
	var f float64
	fmt.Sscanf(s, "%g", &f)
	return f
}

// ---------------------------------------------------------------- door

func door(args []string) error {
	fs := flag.NewFlagSet("door", flag.ExitOnError)
	u := fs.String("url", "", "the URL to poll")
	want := fs.String("want", "", "the text to wait for in the body")
	settle := fs.Int("settle", 0, "then wait until this many responses in a row contain it")
	timeout := fs.Duration("timeout", 120*time.Second, "give up after this long")
	pause := fs.Duration("every", 10*time.Millisecond, "pause between requests")
	fs.Parse(args)
	if *u == "" || *want == "" {
		return errors.New("door needs -url and -want")
	}
	o := newOut()
	o.t0 = time.Now()
	o.set("t0_ns", o.t0.UnixNano())
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := o.t0.Add(*timeout)
	sent, failed, inRow := 0, 0, 0
	ok := false
	for time.Now().Before(deadline) {
		res, err := c.Get(*u)
		sent++
		if err != nil {
			failed++
			inRow = 0
		} else {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode/100 != 2 {
				failed++
			}
			if res.StatusCode == 200 && bytes.Contains(b, []byte(*want)) {
				now := time.Now()
				if !o.has("first_ms") {
					o.mark("first_ms", now)
					o.set("first_ns", now.UnixNano())
				}
				inRow++
				if inRow >= *settle {
					o.mark("settled_ms", now)
					o.set("settled_ns", now.UnixNano())
					ok = true
					break
				}
			} else {
				inRow = 0
			}
		}
		time.Sleep(*pause)
	}
	o.set("sent", sent)
	o.set("failed", failed)
	o.print("first_ms", "first_ns", "settled_ms", "settled_ns")
	if !ok {
		return fmt.Errorf("%q did not come within %s", *want, *timeout)
	}
	return nil
}
