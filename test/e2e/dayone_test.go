package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// What a first day with kiln runs into: stopping a daemon started elsewhere, a
// dashboard URL that stays put across restarts, and a kiln up that would silently undo
// a rollback.

// reap waits for the daemon the test started to exit (after kiln stop) and returns its
// exit code.
func (d *deployment) reap() int {
	d.t.Helper()
	done := make(chan error, 1)
	go func() { done <- d.daemon.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		d.t.Fatalf("the daemon did not exit:\n%s", d.logs.String())
	}
	code := d.daemon.ProcessState.ExitCode()
	d.daemon = nil
	return code
}

// apiAnswers reports whether a kiln API answers at addr.
func apiAnswers(addr string) bool {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(addr + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestStopDaemon: the daemon writes its PID (0600) and removes it at exit; a second
// daemon is refused, naming the address, the PID and kiln stop; kiln stop ends the
// daemon and says so; a PID file left by a killed daemon is found stale.
func TestStopDaemon(t *testing.T) {
	d := newDeployment(t)
	d.startDaemon("kiln is serving", "up")
	state := filepath.Join(d.dir, ".kiln")
	pid := strconv.Itoa(d.daemon.Process.Pid)
	addr := readState(t, d.dir, "api.addr")
	if got := readState(t, d.dir, "kiln.pid"); got != pid {
		t.Errorf(".kiln/kiln.pid holds %q, want the daemon's PID %s", got, pid)
	}
	if m := mode(t, filepath.Join(state, "kiln.pid")); m != 0o600 {
		t.Errorf(".kiln/kiln.pid has mode %v, want 0600", m)
	}

	for _, verb := range []string{"serve", "up"} {
		fails(t, d.dir, d.env, 1, []string{"a kiln daemon is already running for this spec at " + addr, "(PID " + pid + ")", "kiln stop"}, verb)
	}

	r := ok(t, d.dir, d.env, "stop")
	for _, want := range []string{"Stopped the kiln daemon", "PID " + pid, addr, "servers keep running"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("kiln stop says %q; want it to mention %q", r.stdout, want)
		}
	}
	// kiln stop returns once the API no longer answers and the process is gone.
	if apiAnswers(addr) {
		t.Errorf("the API still answers at %s after kiln stop", addr)
	}
	if code := d.reap(); code != 0 {
		t.Errorf("the daemon exited %d after SIGTERM, want 0", code)
	}
	if _, err := os.Stat(filepath.Join(state, "kiln.pid")); !os.IsNotExist(err) {
		t.Errorf("the PID file outlives the daemon: %v", err)
	}
	if n := len(d.running()); n != 2 {
		t.Errorf("%d servers running after kiln stop, want the 2 to keep running", n)
	}
	if r := ok(t, d.dir, d.env, "stop"); !strings.Contains(r.stdout, "No kiln daemon is running for this spec") {
		t.Errorf("kiln stop with no daemon: %q", r.stdout)
	}

	// kill -9 leaves the PID file behind; it is seen to be stale, not a running daemon.
	d.startDaemon("API on", "serve")
	d.stopDaemon(9)
	if _, err := os.Stat(filepath.Join(state, "kiln.pid")); err != nil {
		t.Fatalf("kill -9 should leave the PID file: %v", err)
	}
	if r := ok(t, d.dir, d.env, "stop"); !strings.Contains(r.stdout, "No kiln daemon is running") || !strings.Contains(r.stdout, "stale") {
		t.Errorf("kiln stop over a stale PID file: %q", r.stdout)
	}
	os.WriteFile(filepath.Join(state, "kiln.pid"), []byte("1\n"), 0o600) // a PID that is alive, but not a daemon
	d.startDaemon("API on", "serve")
	if got := readState(t, d.dir, "kiln.pid"); got != strconv.Itoa(d.daemon.Process.Pid) {
		t.Errorf("after a stale PID file, kiln.pid holds %q, want %d", got, d.daemon.Process.Pid)
	}
}

// TestDashboardKeepsItsAddress: the API's address is remembered in .kiln/api.listen
// (0600) and used again on the next start; when another process has it, kiln takes a
// free port, says so and remembers that one; --listen wins over the remembered one.
func TestDashboardKeepsItsAddress(t *testing.T) {
	d := newDeployment(t)
	d.startDaemon("API on", "serve")
	first := readState(t, d.dir, "api.addr")
	listen := filepath.Join(d.dir, ".kiln", "api.listen")
	if got := readState(t, d.dir, "api.listen"); "http://"+got != first {
		t.Errorf(".kiln/api.listen holds %q, want the address of %s", got, first)
	}
	if m := mode(t, listen); m != 0o600 {
		t.Errorf(".kiln/api.listen has mode %v, want 0600", m)
	}
	ok(t, d.dir, d.env, "stop")
	d.reap()
	if _, err := os.Stat(listen); err != nil {
		t.Fatalf("api.listen should outlive the daemon: %v", err)
	}

	d.startDaemon("API on", "serve")
	if again := readState(t, d.dir, "api.addr"); again != first {
		t.Errorf("after a restart the API is at %s, was at %s", again, first)
	}
	ok(t, d.dir, d.env, "stop")
	d.reap()

	// Another process takes the address meanwhile.
	ln, err := net.Listen("tcp", strings.TrimPrefix(first, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	d.startDaemon("API on", "serve")
	ln.Close()
	moved := readState(t, d.dir, "api.addr")
	if moved == first {
		t.Fatalf("the API listens on %s, which the test holds", moved)
	}
	if want := strings.TrimPrefix(first, "http://") + ", where this project's dashboard was, is taken; listening on " + strings.TrimPrefix(moved, "http://"); !strings.Contains(d.logs.String(), want) {
		t.Errorf("the daemon does not say %q:\n%s", want, d.logs.String())
	}
	if got := readState(t, d.dir, "api.listen"); "http://"+got != moved {
		t.Errorf("api.listen holds %q after the move, want %s", got, moved)
	}
	ok(t, d.dir, d.env, "stop")
	d.reap()

	// --listen wins, and is what the next start uses.
	other := freePort(t)
	d.startDaemon("API on", "serve", "--listen", other)
	if got := readState(t, d.dir, "api.addr"); got != "http://"+other {
		t.Errorf("with --listen %s the API is at %s", other, got)
	}
	ok(t, d.dir, d.env, "stop")
	d.reap()
	d.startDaemon("API on", "serve")
	if got := readState(t, d.dir, "api.addr"); got != "http://"+other {
		t.Errorf("after --listen %s and a restart the API is at %s", other, got)
	}
}

// TestApplyKeepsRollback: once a service is rolled back with kiln rollback, kiln apply
// and kiln up refuse to replace the rollback with the spec, saying what it is and what to
// run, unless -auto-approve; -keep-rollback serves and leaves it.
func TestApplyKeepsRollback(t *testing.T) {
	d := newDeployment(t)
	d.startDaemon("kiln is serving", "up")
	editSpec(t, d.dir, "Hello from kiln!", "Hello again!")
	ok(t, d.dir, d.env, "apply")
	ok(t, d.dir, d.env, "rollback", d.service)
	if body := d.get("/"); !strings.Contains(body, "Hello from kiln!") {
		t.Fatalf("after the rollback the front door answers %q", body)
	}
	refusal := []string{"service " + d.service + " is at revision 3, a rollback to revision 1 made by ",
		"applying the spec replaces it with revision 4", "-auto-approve", "-keep-rollback"}

	fails(t, d.dir, d.env, 1, refusal, "apply")
	if h := ok(t, d.dir, d.env, "history", d.service).stdout; strings.Contains(h, "\n4 ") || !strings.Contains(h, "3 *") {
		t.Errorf("a refused apply changed the history:\n%s", h)
	}
	ok(t, d.dir, d.env, "apply", "-keep-rollback")
	if body := d.get("/"); !strings.Contains(body, "Hello from kiln!") {
		t.Fatalf("apply -keep-rollback replaced the rollback: %q", body)
	}

	// kiln up: refused, and its daemon stops; with -keep-rollback it serves as it was.
	ok(t, d.dir, d.env, "stop")
	d.reap()
	fails(t, d.dir, d.env, 1, refusal, "up")
	if _, err := os.Stat(filepath.Join(d.dir, ".kiln", "kiln.pid")); !os.IsNotExist(err) {
		t.Errorf("a refused kiln up left its daemon's PID file: %v", err)
	}
	d.startDaemon("kiln is serving", "up", "-keep-rollback")
	if body := d.get("/"); !strings.Contains(body, "Hello from kiln!") {
		t.Fatalf("up -keep-rollback replaced the rollback: %q", body)
	}
	if !strings.Contains(d.logs.String(), "kept at revision 3") {
		t.Errorf("up -keep-rollback does not say what it kept:\n%s", d.logs.String())
	}

	r := ok(t, d.dir, d.env, "apply", "-auto-approve")
	if !strings.Contains(r.stdout, "revision 4 deployed") || !strings.Contains(d.get("/"), "Hello again!") {
		t.Errorf("apply -auto-approve: %s\nfront door: %q", r.stdout, d.get("/"))
	}
	// Revision 4 was applied, not rolled back to: the next apply goes ahead.
	editSpec(t, d.dir, "Hello again!", "Hello a third time!")
	if r := ok(t, d.dir, d.env, "apply"); !strings.Contains(r.stdout, "revision 5 deployed") {
		t.Errorf("apply after an approved one: %s", r.stdout)
	}
}

// dashboard signs in to the deployment's dashboard with the admin token and returns a
// function that GETs a page of it.
func (d *deployment) dashboard() func(path string) string {
	d.t.Helper()
	base := readState(d.t, d.dir, "api.addr")
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	resp, err := c.PostForm(base+"/login", url.Values{"token": {readState(d.t, d.dir, "token")}, "next": {"/"}})
	if err != nil {
		d.t.Fatal(err)
	}
	resp.Body.Close()
	return func(path string) string {
		d.t.Helper()
		resp, err := c.Get(base + path)
		if err != nil {
			d.t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.Request.URL.Path == "/login" {
			d.t.Fatalf("GET %s: %d (at %s)\n%s", path, resp.StatusCode, resp.Request.URL, b)
		}
		return string(b)
	}
}

// editFile replaces old with new in the file at path.
func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s has no %q", path, old)
	}
	os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644)
}

// logsOf returns the recent logs block of a service page.
func logsOf(page string) string {
	i := strings.Index(page, `<pre id="logs"`)
	if i < 0 {
		return ""
	}
	j := strings.Index(page[i:], "</pre>")
	return page[i : i+j]
}

// TestDashboardHidesHealthChecks: a service that logs every request floods its recent
// logs with health checks; the service page hides them by default (and says how many),
// and shows them with the box unchecked (?health_checks=show), without JavaScript.
func TestDashboardHidesHealthChecks(t *testing.T) {
	d := newDeployment(t)
	main := filepath.Join(d.dir, "main.go")
	editFile(t, main, `fmt.Fprintln(w, "ok")`, `slog.Info(r.Method + " " + r.URL.Path)
		fmt.Fprintln(w, "ok")`)
	editFile(t, main, `fmt.Fprintf(w, "%s\nversion:`, `slog.Info(r.Method + " " + r.URL.Path)
		fmt.Fprintf(w, "%s\nversion:`)
	d.startDaemon("kiln is serving", "up")
	page := d.dashboard()
	svc := "/services/" + d.service
	// The health checks (every 500 ms) are logged; then a request of the test's own.
	eventually(t, 30*time.Second, "health checks in the logs", func() bool {
		return strings.Contains(logsOf(page(svc+"?health_checks=show")), "INFO GET /healthz")
	})
	d.get("/")
	var hidden string
	eventually(t, 30*time.Second, "the test's request in the logs", func() bool {
		hidden = page(svc)
		return strings.Contains(logsOf(hidden), "INFO GET /\n")
	})
	if strings.Contains(logsOf(hidden), "/healthz") {
		t.Errorf("the logs show health checks by default:\n%s", logsOf(hidden))
	}
	if !strings.Contains(hidden, `name="health_checks" value="hide" checked`) || !strings.Contains(hidden, "lines hidden") {
		t.Errorf("the logs filter is not checked by default, or does not say what it hid:\n%s", hidden)
	}
	shown := page(svc + "?health_checks=show")
	if !strings.Contains(logsOf(shown), "INFO GET /healthz") || !strings.Contains(logsOf(shown), "INFO GET /\n") {
		t.Errorf("with the box unchecked the logs lack the health checks or the request:\n%s", logsOf(shown))
	}
	if strings.Contains(shown, `value="hide" checked`) {
		t.Errorf("with ?health_checks=show the box is still checked")
	}
}

// TestDashboardDegradedCause: a crash-looping service shows in red on the fleet page
// with why, and its page opens with a banner saying so.
func TestDashboardDegradedCause(t *testing.T) {
	d := newDeployment(t)
	editSpec(t, d.dir, `writable = ["/tmp"]`, `writable = ["/tmp"]
  env      = { EXIT_AFTER = "2500ms" }`)
	d.startDaemon("revision 1 deployed", "up")
	var cause string
	eventually(t, 60*time.Second, "the service to be degraded", func() bool {
		var st struct {
			Services []struct{ State, Cause string }
		}
		json.Unmarshal([]byte(d.kiln(nil, "status", "-json").stdout), &st)
		if len(st.Services) == 1 && st.Services[0].State == "degraded" {
			cause = st.Services[0].Cause
			return true
		}
		return false
	})
	want := "crash-looping" // from the event, when the status gives no cause
	if cause != "" {
		want = cause
	}
	page := d.dashboard()
	fleet := page("/")
	i := strings.Index(fleet, `<tr data-service="`+d.service+`">`)
	if i < 0 {
		t.Fatalf("the fleet page does not list the service:\n%s", fleet)
	}
	row := fleet[i : i+strings.Index(fleet[i:], "</tr>")]
	if !strings.Contains(row, `<span class="badge bad">degraded</span>`) {
		t.Errorf("the degraded service is not red on the fleet page:\n%s", row)
	}
	if !strings.Contains(row, `<span class="cause bad">`) || !strings.Contains(row, want) {
		t.Errorf("the fleet row does not say why (%q):\n%s", want, row)
	}
	svc := page("/services/" + d.service)
	if !strings.Contains(svc, `<div class="error" id="cause"`) || !strings.Contains(svc, want) {
		t.Errorf("the service page has no banner saying why (%q):\n%s", want, svc)
	}

	// Both pages stay readable (WCAG AA contrast) with the red cause and the banner.
	api := readState(t, d.dir, "api.addr")
	ctx := browse(t)
	signIn(t, ctx, api, readState(t, d.dir, "token"))
	do(t, ctx, "the fleet shows the cause", 30*time.Second, chromedp.WaitVisible(chromedp.CSS(`tr[data-service="`+d.service+`"] .cause`)))
	checkAccessible(t, ctx, "fleet with a degraded service")
	do(t, ctx, "the service page shows the banner", 30*time.Second,
		chromedp.Navigate(api+"/services/"+d.service), chromedp.WaitVisible(chromedp.ID("#cause")))
	shoot(t, ctx, "service-degraded")
	checkAccessible(t, ctx, "degraded service")
}
