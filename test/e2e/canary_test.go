package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	testprom "github.com/kiln-build/kiln/internal/testenv/prometheus"
)

// canarySpec turns the example into a canary release of two steps, with the knobs of
// the example's server (FAIL_EVERY, SLOW_EVERY) as variables: versions that fail a
// share of their requests or answer slower.
func canarySpec(t *testing.T, d *deployment, steps string) {
	t.Helper()
	editSpec(t, d.dir, `variable "listen" {`, `variable "fail_every" {
  default = "0"
}

variable "slow_every" {
  default = "0"
}

variable "listen" {`)
	editSpec(t, d.dir, `writable = ["/tmp"]`, `writable = ["/tmp"]
  env      = { FAIL_EVERY = var.fail_every, SLOW_EVERY = var.slow_every }`)
	editSpec(t, d.dir, `strategy          = "rolling"`, `strategy          = "canary"
    sticky            = "cookie"
`+steps)
}

// versionLoad is load that records which version answered each request and when the
// last answer of each version came; failures are counted, not fatal.
type versionLoad struct {
	stop   context.CancelFunc
	start  time.Time
	end    time.Time
	wg     sync.WaitGroup
	mu     sync.Mutex
	ok     int
	failed int
	byVer  map[string]int
	last   map[string]time.Time // the last answer of each version
	failAt []time.Time
}

func startVersionLoad(url string, clients int, gap time.Duration) *versionLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &versionLoad{stop: cancel, start: time.Now(), byVer: map[string]int{}, last: map[string]time.Time{}}
	client := &http.Client{Timeout: 10 * time.Second}
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				resp, err := client.Get(url + "/")
				var body []byte
				if err == nil {
					body, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				if ctx.Err() != nil {
					return
				}
				now := time.Now()
				l.mu.Lock()
				if err == nil && resp.StatusCode == 200 {
					l.ok++
					v := versionOf(string(body))
					l.byVer[v]++
					l.last[v] = now
				} else {
					l.failed++
					l.failAt = append(l.failAt, now)
				}
				l.mu.Unlock()
				time.Sleep(gap)
			}
		}()
	}
	return l
}

func (l *versionLoad) finish() {
	l.stop()
	l.wg.Wait()
	l.end = time.Now()
}

// rate is the load's requests a second over its life.
func (l *versionLoad) rate() float64 {
	return float64(l.ok+l.failed) / l.end.Sub(l.start).Seconds()
}

func versionOf(body string) string {
	_, v, _ := strings.Cut(body, "version: ")
	v, _, _ = strings.Cut(v, "\n")
	return v
}

type eventJSON struct {
	Time    time.Time
	Type    string
	Message string
}

// events returns the service's events since the test began, oldest first.
func (d *deployment) eventsJSON() []eventJSON {
	d.t.Helper()
	r := d.kiln(nil, "events", "--service", d.service, "-json")
	var out []eventJSON
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e eventJSON
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

func lastEvent(evs []eventJSON, typ, contains string) (eventJSON, bool) {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == typ && strings.Contains(evs[i].Message, contains) {
			return evs[i], true
		}
	}
	return eventJSON{}, false
}

type canaryStatusJSON struct {
	Services []struct {
		Canary *struct {
			Revision int64
			Step     int
			Weight   float64
			Decision string
			Outcome  string
			Canary   struct{ Requests, Errors uint64 }
		}
	}
}

// waitCanaryStep waits until status shows the canary of revision at step.
func (d *deployment) waitCanaryStep(revision int64, step int) {
	d.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var st canaryStatusJSON
		r := d.kiln(nil, "status", "-json")
		if json.Unmarshal([]byte(r.stdout), &st) == nil && len(st.Services) == 1 {
			if c := st.Services[0].Canary; c != nil && c.Revision == revision && c.Step == step && c.Outcome == "" && c.Decision != "starting" {
				return
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("the canary of revision %d never reached step %d: %s", revision, step, r.stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCanary follows canary releases under about 1,000 requests a second: a good
// version promoted through its steps with no failed request (and a client with the
// cookie on one version throughout a step), a version failing a fifth of its requests
// aborted at the first step (the failures bounded by weight × error rate × rate ×
// time to decide, the stable set alone within a second of the decision), and a
// version 50 ms slower at p99 aborted by the latency rule.
func TestCanary(t *testing.T) {
	d := newDeployment(t)
	canarySpec(t, d, `    step {
      weight   = 10
      duration = "5s"
    }
    step {
      weight   = 50
      duration = "6s"
    }
    analysis {
      min_requests = 100
    }`)
	d.startDaemon("revision 1 deployed", "up")

	// plan shows the steps.
	v2 := []string{"KILN_VAR_version=2.0"}
	if r := d.kiln(v2, "plan"); !strings.Contains(r.stdout, "rolled out as a canary: 10% for 5s → 50% for 6s, then 100%, sticky by cookie") {
		t.Errorf("plan does not show the canary's steps:\n%s%s", r.stdout, r.stderr)
	}

	// A good version: promoted through every step, no request failed; a client with
	// the cookie sees one version throughout the 50% step.
	l := startVersionLoad(d.url, 4, 4*time.Millisecond)
	applied := make(chan result, 1)
	go func() { applied <- d.kiln(v2, "apply", "-auto-approve") }()
	d.waitCanaryStep(2, 2)
	sides := map[string]int{}
	for range 20 {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, Timeout: 5 * time.Second}
		seen := map[string]bool{}
		for range 20 {
			resp, err := c.Get(d.url + "/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			seen[versionOf(string(b))] = true
		}
		if len(seen) != 1 {
			t.Errorf("a client with the canary's cookie saw versions %v within one step", seen)
		}
		for v := range seen {
			sides[v]++
		}
	}
	if sides["2.0"] == 0 || sides["dev"] == 0 {
		t.Errorf("20 clients at weight 50%% were all on one side: %v", sides)
	}
	r := <-applied
	l.finish()
	if r.code != 0 || !strings.Contains(r.stdout, "revision 2 deployed") {
		t.Fatalf("apply of a good version: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("good version: %d requests (%v), %d failed", l.ok, l.byVer, l.failed)
	if l.failed > 0 {
		t.Errorf("%d requests failed while a good version was promoted", l.failed)
	}
	evs := d.eventsJSON()
	for _, want := range []string{"canary step 1 of 2 passed", "canary step 2 of 2 passed"} {
		if _, ok := lastEvent(evs, "judged", want); !ok {
			t.Errorf("no event %q", want)
		}
	}
	if body := d.get("/"); !strings.Contains(body, "version: 2.0") {
		t.Errorf("after the promotion the door answers %q", body)
	}

	// A version failing every fifth request: aborted at the first step.
	l = startVersionLoad(d.url, 4, 4*time.Millisecond)
	r = d.kiln([]string{"KILN_VAR_version=3.0", "KILN_VAR_fail_every=5"}, "apply", "-auto-approve")
	time.Sleep(1500 * time.Millisecond) // what the stable set serves after the decision
	l.finish()
	if r.code != 1 || !strings.Contains(r.stdout, "rolled back") {
		t.Fatalf("apply of a failing version: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	evs = d.eventsJSON()
	step, ok1 := lastEvent(evs, "canary", "canary step 1 of 2: 10% of the requests to revision 3")
	aborted, ok2 := lastEvent(evs, "aborted", "revision 3")
	if !ok1 || !ok2 || !strings.Contains(aborted.Message, "error ratio") {
		t.Fatalf("events of the failing canary: step %v %q, aborted %v %q", ok1, step.Message, ok2, aborted.Message)
	}
	decide := aborted.Time.Sub(step.Time)
	l.mu.Lock()
	total := l.ok + l.failed
	lastCanary := l.last["3.0"]
	l.mu.Unlock()
	t.Logf("failing version: %d requests, %d failed; decided %s after its step began; last answer of the canary %s after the decision; %s",
		total, l.failed, decide.Round(time.Millisecond), lastCanary.Sub(aborted.Time).Round(time.Millisecond), aborted.Message)
	if !lastCanary.IsZero() && lastCanary.Sub(aborted.Time) > time.Second {
		t.Errorf("the canary still answered %s after the decision to abort", lastCanary.Sub(aborted.Time))
	}
	for _, at := range l.failAt {
		if at.Sub(aborted.Time) > time.Second {
			t.Errorf("a request failed %s after the decision to abort", at.Sub(aborted.Time))
			break
		}
	}
	// The bound: weight × error rate × rate × time to decide, the rate measured over
	// the whole apply; twice it is allowed, for the rate is not even.
	bound := 0.10 * 0.20 * l.rate() * decide.Seconds()
	t.Logf("failed requests %d, bound weight × error rate × rate × time to decide = %.1f", l.failed, bound)
	if float64(l.failed) > 2*bound+5 {
		t.Errorf("%d requests failed, more than twice the bound %.1f", l.failed, bound)
	}
	if body := d.get("/"); !strings.Contains(body, "version: 2.0") {
		t.Errorf("after the abort the door answers %q", body)
	}

	// A version 50 ms slower on one request in 20 (its p99): aborted by the latency rule.
	l = startVersionLoad(d.url, 4, 4*time.Millisecond)
	r = d.kiln([]string{"KILN_VAR_version=4.0", "KILN_VAR_slow_every=20"}, "apply", "-auto-approve")
	l.finish()
	if r.code != 1 || !strings.Contains(r.stdout, "rolled back") {
		t.Fatalf("apply of a slow version: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if aborted, ok := lastEvent(d.eventsJSON(), "aborted", "revision 4"); !ok || !strings.Contains(aborted.Message, "p99 latency") {
		t.Errorf("the slow canary was not aborted by the latency rule: %q", aborted.Message)
	} else {
		t.Logf("slow version: %s", aborted.Message)
	}
	if l.failed > 0 {
		t.Errorf("%d requests failed while a slow version was tried", l.failed)
	}
	if r := d.kiln(nil, "history", d.service); !strings.Contains(r.stdout, "rolled_back") {
		t.Errorf("history:\n%s", r.stdout)
	}
	runs := 1
	if n, err := strconv.Atoi(os.Getenv("KILN_TEST_CANARY_RUNS")); err == nil {
		runs = n
	}
	// No false aborts: good versions, one after the other, each through its steps.
	editSpec(t, d.dir, `duration = "5s"`, `duration = "2s"`)
	editSpec(t, d.dir, `duration = "6s"`, `duration = "2s"`)
	for i := range runs {
		l = startVersionLoad(d.url, 4, 4*time.Millisecond)
		start := time.Now()
		r := d.kiln([]string{fmt.Sprintf("KILN_VAR_version=5.%d", i)}, "apply", "-auto-approve")
		l.finish()
		if r.code != 0 {
			t.Errorf("good version %d of %d aborted (%s): %s%s", i+1, runs, time.Since(start).Round(time.Millisecond), r.stdout, r.stderr)
			continue
		}
		t.Logf("good version %d of %d promoted in %s: %d requests, %d failed", i+1, runs, time.Since(start).Round(time.Millisecond), l.ok, l.failed)
		if l.failed > 0 {
			t.Errorf("good version %d: %d requests failed", i+1, l.failed)
		}
	}
}

// dashboardSession signs in to the dashboard with the admin token and returns the
// session's cookie (the cookie is Secure, which a cookie jar keeps off plain HTTP,
// though a browser sends it to loopback).
func (d *deployment) dashboardSession() (api, cookie string) {
	d.t.Helper()
	api = readState(d.t, d.dir, "api.addr")
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(api+"/login", url.Values{"token": {readState(d.t, d.dir, "token")}})
	if err != nil {
		d.t.Fatal(err)
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		return api, ck.Name + "=" + ck.Value
	}
	d.t.Fatalf("signing in to the dashboard: %s, no cookie", resp.Status)
	return "", ""
}

func dashboard(t *testing.T, method, url, cookie string, form url.Values) (int, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, url, body)
	req.Header.Set("Cookie", cookie)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// TestCanarySteered: a pause step waits for a promote (from the dashboard, which shows
// the canary live), kiln abort ends a canary by hand, a Prometheus query of a business
// metric aborts a canary whose revision breaks it, and a daemon killed mid-canary
// tries the canary again when it is back, with the servers it had.
func TestCanarySteered(t *testing.T) {
	// The business metric: checkout failures by revision, which Prometheus scrapes.
	failures := map[string]int{}
	var mu sync.Mutex
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(w, "# TYPE checkout_failures gauge")
		for rev, n := range failures {
			fmt.Fprintf(w, "checkout_failures{revision=%q} %d\n", rev, n)
		}
		fmt.Fprintln(w, `checkout_failures{revision="none"} 0`)
	}))
	t.Cleanup(metrics.Close)
	prom := testprom.Start(t, testprom.Target{Addr: strings.TrimPrefix(metrics.URL, "http://")})

	d := newDeployment(t)
	canarySpec(t, d, fmt.Sprintf(`    step {
      weight   = 10
      duration = "2s"
    }
    step { pause = true }
    analysis {
      min_requests = 50
      prometheus   = %q
      query "checkout_failures" {
        query = "sum(checkout_failures{revision=\"$CANARY_REVISION\"}) or vector(0)"
        max   = 0
      }
    }`, prom))
	d.startDaemon("revision 1 deployed", "up")

	// Revision 2 waits in its pause; the dashboard shows it, /metrics has its series;
	// the dashboard's button promotes it.
	l := startVersionLoad(d.url, 4, 4*time.Millisecond)
	applied := make(chan result, 1)
	go func() { applied <- d.kiln([]string{"KILN_VAR_version=2.0"}, "apply", "-auto-approve") }()
	d.waitCanaryStep(2, 2)
	time.Sleep(1500 * time.Millisecond) // a few analysis ticks into the pause
	if r := d.kiln(nil, "status"); !strings.Contains(r.stdout, "at step 2 of 2, 10% of the requests on 1 server,") || !strings.Contains(r.stdout, "paused until kiln promote") || !strings.Contains(r.stdout, "query checkout_failures = 0") {
		t.Errorf("kiln status during the pause:\n%s", r.stdout)
	}
	api, cookie := d.dashboardSession()
	code, page := dashboard(t, "GET", api+"/services/"+d.service, cookie, nil)
	for _, want := range []string{"Canary on trial", `id="canary-weight">10%`, "paused until promoted", `data-side="canary"`, `id="promote"`, `data-poll="1000"`} {
		if code != 200 || !strings.Contains(page, want) {
			t.Errorf("the dashboard's service page (%d) lacks %q", code, want)
		}
	}
	token := readState(t, d.dir, "token")
	req, _ := http.NewRequest("GET", api+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{
			fmt.Sprintf(`kiln_canary_weight_percent{revision="2",service=%q} 10`, d.service),
			fmt.Sprintf(`kiln_revision_requests_total{revision="2",service=%q}`, d.service),
			fmt.Sprintf(`kiln_revision_requests_total{revision="1",service=%q}`, d.service),
			fmt.Sprintf(`kiln_revision_request_duration_seconds_bucket{revision="2",service=%q`, d.service),
		} {
			if !strings.Contains(string(b), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	}
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the service page")
	}
	if code, body := dashboard(t, "POST", api+"/services/"+d.service+"/promote", cookie, url.Values{"csrf": {m[1]}}); code != http.StatusSeeOther {
		t.Fatalf("promote from the dashboard: %d %s", code, body)
	}
	r := <-applied
	l.finish()
	if r.code != 0 || !strings.Contains(r.stdout, "revision 2 deployed") {
		t.Fatalf("apply after the promote: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if l.failed > 0 {
		t.Errorf("%d requests failed through the promoted canary", l.failed)
	}
	if _, ok := lastEvent(d.eventsJSON(), "promoted", "promoted by dashboard"); !ok {
		t.Error("no event of the promote")
	}
	// Nothing to promote now.
	if r := d.kiln(nil, "promote", d.service); r.code == 0 || !strings.Contains(r.stderr, "no canary on trial") {
		t.Errorf("kiln promote without a canary: exit %d %s%s", r.code, r.stdout, r.stderr)
	}

	// kiln abort in the pause: every request back to the stable set, revision 3 rolled back.
	l = startVersionLoad(d.url, 4, 4*time.Millisecond)
	go func() { applied <- d.kiln([]string{"KILN_VAR_version=3.0"}, "apply", "-auto-approve") }()
	d.waitCanaryStep(3, 2)
	if r := d.kiln(nil, "abort", d.service); r.code != 0 {
		t.Fatalf("kiln abort: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
	r = <-applied
	l.finish()
	if r.code != 1 || !strings.Contains(r.stdout, "rolled back") {
		t.Errorf("apply of an aborted canary: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if ev, ok := lastEvent(d.eventsJSON(), "aborted", "revision 3"); !ok || !strings.Contains(ev.Message, "aborted by") {
		t.Errorf("the abort's event: %q", ev.Message)
	}
	if l.failed > 0 {
		t.Errorf("%d requests failed through kiln abort", l.failed)
	}

	// The business metric of revision 4 breaks its limit: aborted at the first step.
	mu.Lock()
	failures["4"] = 3
	mu.Unlock()
	time.Sleep(2 * time.Second) // scraped
	r = d.kiln([]string{"KILN_VAR_version=4.0"}, "apply", "-auto-approve")
	if r.code != 1 {
		t.Errorf("apply of a revision breaking its business metric: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if ev, ok := lastEvent(d.eventsJSON(), "aborted", "revision 4"); !ok || !strings.Contains(ev.Message, "checkout_failures = 3 is above its max 0") {
		t.Errorf("the business metric's abort: %q", ev.Message)
	} else {
		t.Logf("business metric: %s", ev.Message)
	}

	// kill -9 of the daemon in the canary's pause: when it is back, the canary is tried
	// again from its first step with the server it had, then promoted.
	l = startVersionLoad(d.url, 4, 4*time.Millisecond)
	if r := d.kiln([]string{"KILN_VAR_version=5.0"}, "apply", "--detach", "-auto-approve"); r.code != 0 {
		t.Fatalf("apply --detach: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
	d.waitCanaryStep(5, 2)
	canaries := 0
	for _, v := range d.containers() {
		if strings.HasPrefix(v, "5 ") {
			canaries++
		}
	}
	d.stopDaemon(syscall.SIGKILL)
	d.startDaemon("API on", "serve")
	d.waitCanaryStep(5, 2)
	after := 0
	for _, v := range d.containers() {
		if strings.HasPrefix(v, "5 ") {
			after++
		}
	}
	if canaries != 1 || after != 1 {
		t.Errorf("the canary had %d servers before the kill and %d after, want 1 and 1", canaries, after)
	}
	if r := d.kiln(nil, "promote", d.service); r.code != 0 {
		t.Fatalf("kiln promote after the restart: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
	waitConverged(t, d)
	l.finish()
	t.Logf("through the kill and the resumed canary: %d requests (%v), %d failed", l.ok, l.byVer, l.failed)
	if l.failed > 0 {
		t.Errorf("%d requests failed through a kill -9 of the daemon mid-canary", l.failed)
	}
	cs := d.containers()
	for id, v := range cs {
		if !strings.HasPrefix(v, "5 ") {
			t.Errorf("after the resumed canary: container %s is %s", id, v)
		}
	}
	if len(cs) != 2 {
		t.Errorf("after the resumed canary: %v, want 2 servers of revision 5", cs)
	}
}
