package e2e

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s did not happen within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// running returns the IDs of the service's running containers.
func (d *deployment) running() []string {
	d.t.Helper()
	out, err := exec.Command("docker", "ps", "-q", "--no-trunc", "--filter", "label=dev.kiln.service="+d.service).Output()
	if err != nil {
		d.t.Fatal(err)
	}
	return strings.Fields(string(out))
}

// healthy reports whether the service has exactly 2 servers, both in rotation.
func (d *deployment) healthy() bool {
	st := d.status()
	return len(st.Services) == 1 && st.Services[0].Healthy == 2 && len(st.Services[0].Servers) == 2
}

func (d *deployment) events() string {
	return d.kiln(nil, "events", "--service", d.service).stdout
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestHealKilledServer: a server killed from outside is replaced by a fresh one and the
// front door serves throughout without a failed request.
func TestHealKilledServer(t *testing.T) {
	d := newDeployment(t)
	d.startDaemon("revision 1 deployed", "up")
	victim := d.running()[0]
	l := startLoad(d.url, 4)
	time.Sleep(300 * time.Millisecond)
	sh(t, "/", nil, "docker", "kill", victim)
	took := eventually(t, 20*time.Second, "a healthy replacement", func() bool {
		return d.healthy() && !contains(d.running(), victim)
	})
	l.finish(t, "kill and heal")
	t.Logf("killed server replaced and serving after %s", took.Round(10*time.Millisecond))
	if ev := d.events(); !strings.Contains(ev, "it exited") && !strings.Contains(ev, "exited: replacing it") {
		t.Errorf("events lack the heal:\n%s", ev)
	}
}

// TestHealUnhealthyServer: a running server that stops answering its health check is
// taken out of rotation and replaced.
func TestHealUnhealthyServer(t *testing.T) {
	d := newDeployment(t)
	d.startDaemon("revision 1 deployed", "up")
	victim := d.running()[0]
	network := sh(t, "/", nil, "docker", "inspect", "-f", "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}", victim)
	sh(t, "/", nil, "docker", "network", "disconnect", network, victim) // its project's network
	eventually(t, 20*time.Second, "the unhealthy server's replacement", func() bool {
		return d.healthy() && !contains(d.running(), victim)
	})
	if ev := d.events(); !strings.Contains(ev, "health checks in a row") {
		t.Errorf("events lack the failed health checks:\n%s", ev)
	}
}

// TestDriftExec: an exec into a server is drift: the server is replaced and the command
// recorded. In report mode the exec is only recorded.
func TestDriftExec(t *testing.T) {
	d := newDeployment(t)
	d.startDaemon("revision 1 deployed", "up")
	victim := d.running()[0]
	exec.Command("docker", "exec", victim, "/app/hello").Run() // exits at once: port in use
	eventually(t, 20*time.Second, "the exec'd server's replacement", func() bool {
		return d.healthy() && !contains(d.running(), victim)
	})
	if ev := d.events(); !strings.Contains(ev, "drift: exec") || !strings.Contains(ev, "a process was started in it from outside") {
		t.Errorf("events lack the exec drift:\n%s", ev)
	}

	// Report mode: recorded, not replaced.
	d.stopDaemon(syscall.SIGINT)
	editSpec(t, d.dir, `writable = ["/tmp"]`, "writable = [\"/tmp\"]\n\n  drift {\n    action = \"report\"\n  }")
	d.startDaemon("revision 2 deployed", "up")
	servers := d.running()
	exec.Command("docker", "exec", servers[0], "/app/hello").Run()
	eventually(t, 10*time.Second, "the report", func() bool { return strings.Contains(d.events(), "reported, not replaced") })
	time.Sleep(6 * time.Second) // a resync later, still the same servers
	if got := d.running(); len(got) != 2 || !contains(got, servers[0]) || !contains(got, servers[1]) {
		t.Errorf("report mode replaced servers: before %v, after %v", servers, got)
	}
}

// TestDriftRecreatedOutOfBand: a server removed and recreated by hand with kiln's labels
// but another environment is detected at the next resync and replaced; the missing one
// is made up for.
func TestDriftRecreatedOutOfBand(t *testing.T) {
	d := newDeployment(t)
	d.startDaemon("revision 1 deployed", "up")
	victim := d.running()[0]
	var inspect []struct {
		Config struct {
			Image  string
			Labels map[string]string
		}
	}
	if err := json.Unmarshal([]byte(sh(t, "/", nil, "docker", "inspect", victim)), &inspect); err != nil {
		t.Fatal(err)
	}
	// The daemon is down while the container is swapped, so that it meets the impostor
	// running and serving, as the only other server of the service: what gives it away
	// is then its drift, not its absence, its start or a surplus.
	d.stopDaemon(syscall.SIGKILL)
	args := []string{"run", "-d", "--read-only", "--cap-drop=ALL", "-p", "127.0.0.1::8080", "-e", "INTRUDER=1"}
	for k, v := range inspect[0].Config.Labels {
		args = append(args, "--label", k+"="+v)
	}
	sh(t, "/", nil, "docker", "rm", "-f", victim)
	impostor := sh(t, "/", nil, "docker", append(args, inspect[0].Config.Image)...)
	addr := sh(t, "/", nil, "docker", "port", impostor, "8080")
	eventually(t, 30*time.Second, "the impostor to serve", func() bool {
		resp, err := http.Get("http://" + strings.Fields(addr)[0] + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	name := strings.TrimPrefix(sh(t, "/", nil, "docker", "inspect", "-f", "{{.Name}}", impostor), "/")
	d.startDaemon("API on", "serve")
	eventually(t, 30*time.Second, "the impostor's replacement", func() bool {
		return d.healthy() && !contains(d.running(), impostor)
	})
	// The labels, and so the recorded spec and its hash, are the victim's: the engine's
	// view of the container is what differs. The impostor has the same image, but an
	// extra variable and the engine's default network.
	var drift, replaced string
	for _, line := range strings.Split(d.events(), "\n") {
		if strings.Contains(line, "drift in server "+name+":") {
			drift = line
		}
		if strings.Contains(line, "replacing server "+name+": drift") {
			replaced = line
		}
	}
	for _, want := range []string{"env differs: +INTRUDER", "networks are [bridge], want only the project's"} {
		if !strings.Contains(drift, want) {
			t.Errorf("the impostor's drift does not say %q: %q\n%s", want, drift, d.events())
		}
	}
	if strings.Contains(drift, "spec-hash") {
		t.Errorf("the impostor carries the victim's labels, yet its spec is said to differ: %q", drift)
	}
	if replaced == "" {
		t.Errorf("no event says the impostor %s was replaced for its drift:\n%s", name, d.events())
	}
}

// TestCrashLoopBacksOff: servers of a revision that keep crashing are replaced, but with
// exponential backoff and a "degraded" event, not in a hot loop.
func TestCrashLoopBacksOff(t *testing.T) {
	d := newDeployment(t)
	editSpec(t, d.dir, `writable = ["/tmp"]`, `writable = ["/tmp"]
  env      = { EXIT_AFTER = "2500ms" }`)
	d.startDaemon("revision 1 deployed", "up")
	eventually(t, 40*time.Second, "the crash-loop backoff", func() bool { return strings.Contains(d.events(), "crash-looping") })
	created := func() int {
		_, after, _ := strings.Cut(d.events(), "crash-looping")
		return strings.Count(after, "created from revision 1")
	}
	before := created()
	time.Sleep(30 * time.Second)
	n := created() - before
	// Backing off, the heals in these 30 s wait 2, 4, 8 and 16 s: at most 4 heals of 2
	// servers, 8 (and one more heal of a server dying meanwhile). Without backoff, 2
	// servers dying 2.5 s after they start need about 15 in 20 s, over 20 in 30 s.
	if n > 10 {
		t.Errorf("%d servers created in 30 s of backoff: the crash loop was not backed off:\n%s", n, d.events())
	}
	t.Logf("%d servers created in 30 s of backoff", n)
}

// TestControllerRestartMidHeal: kiln is killed while it heals; after a restart the
// service converges with no orphaned or duplicate servers.
func TestControllerRestartMidHeal(t *testing.T) {
	d := newDeployment(t)
	d.startDaemon("revision 1 deployed", "up")
	victim := d.running()[0]
	sh(t, "/", nil, "docker", "kill", victim)
	eventually(t, 20*time.Second, "the heal to start", func() bool {
		return strings.Contains(d.events(), "created from revision 1 at") && strings.Count(d.events(), "created from revision 1") > 2
	})
	d.stopDaemon(syscall.SIGKILL)
	d.startDaemon("API on", "serve")
	waitConverged(t, d)
	cs := d.containers()
	if len(cs) != 2 {
		t.Fatalf("after the restart: %v, want exactly 2 servers", cs)
	}
	for id, state := range cs {
		if !strings.HasSuffix(state, "running") {
			t.Errorf("server %s is %s", id, state)
		}
	}
}
