package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

type statusCause struct {
	Services []struct {
		Name, State, Cause string
	}
}

func (d *deployment) serviceState() (state, cause string) {
	d.t.Helper()
	var st statusCause
	r := d.kiln(nil, "status", "-json")
	if json.Unmarshal([]byte(r.stdout), &st) != nil {
		d.t.Fatalf("kiln status: %s%s", r.stdout, r.stderr)
	}
	for _, s := range st.Services {
		if s.Name == d.service {
			return s.State, s.Cause
		}
	}
	return "", ""
}

// TestCrashingFirstRevision: servers that exit at once fail the first rollout at once,
// with the exit code and the server's last lines (not "context deadline exceeded"
// after the progress deadline); the service is degraded with that cause; heals back
// off instead of recreating crashing servers every minute; and an apply with the fix
// does not wait behind a heal.
func TestCrashingFirstRevision(t *testing.T) {
	d := newDeployment(t)
	editSpec(t, d.dir, `  writable = ["/tmp"]`, `  writable = ["/tmp"]
  env      = { PORT = "notaport" }`)
	start := time.Now()
	d.startDaemon("kiln is serving", "up")
	out := d.logs.String()
	took := time.Since(start)
	for _, want := range []string{"FAILED", "exited (exit code 1) before it became healthy", "its last output:", "serving"} {
		if !strings.Contains(out, want) {
			t.Errorf("kiln up's output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "deadline exceeded") {
		t.Errorf("the crash was reported as a timeout:\n%s", out)
	}
	t.Logf("kiln up with a crashing first revision ended in %s (progress deadline 30s)", took.Round(10*time.Millisecond))
	if took > 20*time.Second {
		t.Errorf("the failed rollout took %s: it waited for the deadline", took)
	}

	state, cause := d.serviceState()
	if state != "degraded" || !strings.Contains(cause, "exit code 1") {
		t.Errorf("status: state %q, cause %q; want degraded with the exit code", state, cause)
	}
	// Heals back off (2, 4, 8 s apart), then stop: a revision that never deployed is
	// not recreated forever.
	created := regexp.MustCompile(`server \S+ created from revision 1`)
	var gaveUp time.Duration
	eventually(t, 60*time.Second, "kiln to stop retrying the failed revision", func() bool {
		gaveUp = time.Since(start)
		return strings.Contains(d.kiln(nil, "events").stdout, "kiln stops trying until the next apply")
	})
	before := len(created.FindAllString(d.kiln(nil, "events").stdout, -1))
	time.Sleep(20 * time.Second)
	after := len(created.FindAllString(d.kiln(nil, "events").stdout, -1))
	t.Logf("kiln stopped retrying %s after kiln up started, having created %d servers; %d created in the 20 s after", gaveUp.Round(time.Second), before, after-before)
	if after != before {
		t.Errorf("%d servers created after kiln stopped retrying", after-before)
	}
	if state, cause := d.serviceState(); state != "degraded" || !strings.Contains(cause, "exit code 1") {
		t.Errorf("status after giving up: %q, %q", state, cause)
	}

	editSpec(t, d.dir, `  env      = { PORT = "notaport" }`, ``)
	fix := time.Now()
	d.kiln(nil, "apply")
	if state, _ := d.serviceState(); state == "degraded" {
		t.Errorf("after the fix the service is still degraded")
	}
	t.Logf("apply of the fix took %s", time.Since(fix).Round(10*time.Millisecond))
	if body := d.get("/"); !strings.Contains(body, "Hello from kiln!") {
		t.Errorf("after the fix the front door answers %q", body)
	}
}

// TestNewHealthCheckIsProven: a revision that changes only the health check runs it
// on the servers before it is deployed; one they fail (404, a definitive answer) is
// rolled back at once, and plan says what changes.
func TestNewHealthCheckIsProven(t *testing.T) {
	d := newDeployment(t)
	d.startDaemon("revision 1 deployed", "up")
	editSpec(t, d.dir, `http     = "/healthz"`, `http     = "/no-such-check"`)
	plan := d.kiln(nil, "plan", "-detailed-exitcode")
	if plan.code != 2 || !strings.Contains(plan.stdout, `~ service "`+d.service+`": health http /healthz → /no-such-check`) {
		t.Errorf("plan of a new health check: exit %d\n%s%s", plan.code, plan.stdout, plan.stderr)
	}
	start := time.Now()
	r := d.kiln(nil, "apply")
	took := time.Since(start)
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "rolled back") || !strings.Contains(r.stdout+r.stderr, "status 404") {
		t.Errorf("apply of a failing health check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("the failing check was found and rolled back in %s (progress deadline 30s)", took.Round(10*time.Millisecond))
	if took > 20*time.Second {
		t.Errorf("it took %s: the definitive answers were not believed", took)
	}
	if body := d.get("/"); !strings.Contains(body, "Hello from kiln!") {
		t.Errorf("after the rollback the front door answers %q", body)
	}
	// A listen change is shown too, and counted.
	editSpec(t, d.dir, `http     = "/no-such-check"`, `http     = "/healthz"`)
	other := freePort(t)
	plan = d.kiln([]string{"KILN_VAR_listen=" + other}, "plan", "-detailed-exitcode")
	if plan.code != 2 || !strings.Contains(plan.stdout, "listen "+strings.TrimPrefix(d.url, "http://")+" → "+other) {
		t.Errorf("plan of a new listen address: exit %d\n%s%s", plan.code, plan.stdout, plan.stderr)
	}
}

const ignoresSIGTERM = `#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* An HTTP server that, like many, installs no SIGTERM handler: as PID 1 it ignores
   SIGTERM, since the kernel does not apply default actions to a namespace's init. */
int main(void) {
	int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(8080)};
	bind(s, (struct sockaddr *)&a, sizeof a);
	listen(s, 64);
	const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
	for (;;) {
		int c = accept(s, 0, 0);
		if (c < 0) continue;
		char buf[4096];
		read(c, buf, sizeof buf);
		write(c, ok, strlen(ok));
		close(c);
	}
}
`

// TestInitStopsAnAppThatIgnoresSIGTERM: a server that ignores SIGTERM as PID 1 waits
// its whole stop_timeout at every replacement; with init = true it stops at once, and
// the destroyed events say how long each took.
func TestInitStopsAnAppThatIgnoresSIGTERM(t *testing.T) {
	d := newDeployment(t)
	src := filepath.Join(d.dir, "server.c")
	os.WriteFile(src, []byte(ignoresSIGTERM), 0o644)
	if out, err := exec.Command("gcc", "-static", "-O1", "-o", filepath.Join(d.dir, "cserver"), src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	spec := `variable "listen" { default = "127.0.0.1:8080" }
variable "version" { default = "1" }

image "c" {
  from = "scratch"
  copy "cserver" {
    to = "/app/server"
  }
  file "/etc/version" {
    content = var.version
  }
  entrypoint = ["/app/server"]
}

service "` + d.service + `" {
  image        = image.c
  replicas     = 2
  port         = 8080
  listen       = var.listen
  stop_timeout = "4s"
  INIT
  health {
    http     = "/"
    interval = "200ms"
  }
  update {
    min_healthy = "0s"
  }
}
`
	os.WriteFile(filepath.Join(d.dir, "kiln.hcl"), []byte(strings.Replace(spec, "INIT", "", 1)), 0o644)
	d.startDaemon("revision 1 deployed", "up")
	stopped := regexp.MustCompile(`destroyed \(stopped in ([0-9.]+)(ms|s)\)`)
	stops := func(after int) []time.Duration {
		var out []time.Duration
		for _, m := range stopped.FindAllStringSubmatch(d.kiln(nil, "events").stdout, -1)[after:] {
			v, _ := time.ParseDuration(m[1] + m[2])
			out = append(out, v)
		}
		return out
	}
	rollout := func(version string) (time.Duration, []time.Duration) {
		n := len(stops(0))
		start := time.Now()
		if r := d.kiln(nil, "apply", "-var", "version="+version); r.code != 0 {
			t.Fatalf("apply: %s%s", r.stdout, r.stderr)
		}
		return time.Since(start), stops(n)
	}
	slow, slowStops := rollout("2")
	os.WriteFile(filepath.Join(d.dir, "kiln.hcl"), []byte(strings.Replace(spec, "INIT", "init         = true", 1)), 0o644)
	rollout("3") // the servers of revision 2 have no init: they still wait to be killed
	fast, fastStops := rollout("4")
	t.Logf("2-replica rollout without init: %s (stops %v); with init: %s (stops %v)", slow.Round(10*time.Millisecond), slowStops, fast.Round(10*time.Millisecond), fastStops)
	for _, s := range slowStops {
		if s < 3*time.Second {
			t.Errorf("without init a server stopped in %s: it was not ignoring SIGTERM, the test proves nothing", s)
		}
	}
	if len(fastStops) == 0 {
		t.Fatal("no server was destroyed by the rollout with init")
	}
	for _, s := range fastStops {
		if s > 2*time.Second {
			t.Errorf("with init a server took %s to stop", s)
		}
	}
}

// TestPlanChangesNothing: kiln plan of a changed image bakes it (to know its digest)
// but leaves the store's index, and so the current image, as it was.
func TestPlanChangesNothing(t *testing.T) {
	d := newDeployment(t)
	d.startDaemon("revision 1 deployed", "up")
	index := filepath.Join(d.dir, ".kiln", "images", "index.json")
	before, _ := os.ReadFile(index)
	images := d.kiln(nil, "images").stdout
	if r := d.kiln(nil, "plan", "-var", "version=2"); r.code != 0 || !strings.Contains(r.stdout, "to replace") {
		t.Fatalf("plan: %s%s", r.stdout, r.stderr)
	}
	after, _ := os.ReadFile(index)
	if string(before) != string(after) {
		t.Errorf("plan changed the image store's index")
	}
	if now := d.kiln(nil, "images").stdout; now != images {
		t.Errorf("plan changed kiln images:\n%s\nthen:\n%s", images, now)
	}
}
