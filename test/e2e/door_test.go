package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// doorContainers returns the door containers of the deployment's project: name → state.
func (d *deployment) doorContainers() map[string]string {
	d.t.Helper()
	project, err := os.ReadFile(filepath.Join(d.dir, ".kiln", "project"))
	if err != nil {
		d.t.Fatal(err)
	}
	out, err := exec.Command("docker", "ps", "-a", "--filter", "label=dev.kiln.door="+strings.TrimSpace(string(project)),
		"--format", "{{.Names}} {{.State}}").Output()
	if err != nil {
		d.t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			m[f[0]] = f[1]
		}
	}
	return m
}

func firstKey(m map[string]string) string {
	for k := range m {
		return k
	}
	return ""
}

// The front door is a process of its own: under load, killing the daemon, restarting
// it, upgrading kiln's binary and a rollout right after fail no request; killing the
// door itself, the engine restarts it with its configuration within about a second.
// The project's last service destroyed, the door goes too, and comes back with the
// next service.
func TestDoorOutlivesDaemon(t *testing.T) {
	d := newDeployment(t)
	d.startDaemon("kiln is serving", "up")
	doors := d.doorContainers()
	if len(doors) != 1 {
		t.Fatalf("door containers %v, want one", doors)
	}
	servers := d.containers()

	// kill -9 of the daemon: the door goes on serving, checking its servers itself.
	l := startLoadAt(d.url, 4, 4*time.Millisecond)
	d.stopDaemon(syscall.SIGKILL)
	time.Sleep(2 * time.Second)
	l.finish(t, "daemon killed")

	// The daemon back: it adopts the door and the servers, replacing nothing.
	l = startLoadAt(d.url, 4, 4*time.Millisecond)
	d.startDaemon("kiln is serving", "up")
	time.Sleep(time.Second)
	l.finish(t, "daemon restarted")
	if got := d.containers(); len(got) != len(servers) {
		t.Errorf("servers after the restart %v, before %v", got, servers)
	}

	// An upgrade: another build of kiln takes over, and its door takes the old door's
	// sockets over while both run; the old one stops once its requests are done.
	upgraded := filepath.Join(t.TempDir(), "kiln")
	b, err := os.ReadFile(kiln)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(upgraded, append(b, []byte("another build")...), 0o755); err != nil {
		t.Fatal(err)
	}
	l = startLoadAt(d.url, 4, 4*time.Millisecond)
	d.stopDaemon(syscall.SIGINT)
	d.startDaemonWith(upgraded, "kiln is serving", "up")
	time.Sleep(time.Second)
	l.finish(t, "kiln upgraded")
	if !strings.Contains(d.logs.String(), "takes its sockets over") {
		t.Errorf("the upgraded daemon did not say it replaced the door:\n%s", d.logs.String())
	}
	if got := d.doorContainers(); len(got) != 1 || got[firstKey(doors)] != "" {
		t.Errorf("door containers after the upgrade %v, before %v: want one, of the new build", got, doors)
	}

	// A rollout right after the daemon returned.
	l = startLoadAt(d.url, 4, 4*time.Millisecond)
	if r := d.kiln([]string{"KILN_VAR_version=2"}, "apply"); r.code != 0 {
		t.Fatalf("apply: %d %s %s", r.code, r.stdout, r.stderr)
	}
	l.finish(t, "rollout after the restart")
	if !strings.Contains(d.get("/"), "version: 2") {
		t.Errorf("the door does not serve version 2: %s", d.get("/"))
	}

	// kill -9 of the door: the engine restarts it, with its configuration from disk.
	var name string
	for n := range d.doorContainers() {
		name = n
	}
	out, err := exec.Command("docker", "inspect", "-f", "{{.State.Pid}}", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	l = startLoadAt(d.url, 4, 4*time.Millisecond)
	killed := time.Now()
	syscall.Kill(pid, syscall.SIGKILL)
	client := &http.Client{Timeout: time.Second}
	var back time.Duration
	for time.Since(killed) < 30*time.Second {
		resp, err := client.Get(d.url + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 && time.Since(killed) > 50*time.Millisecond {
				back = time.Since(killed)
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.stop()
	l.wg.Wait()
	if back == 0 {
		t.Fatalf("the door did not serve again within 30s of kill -9")
	}
	t.Logf("door killed: serving again after %v; %d requests failed meanwhile (of %d)", back.Round(time.Millisecond), l.failed.Load(), l.ok.Load()+l.failed.Load())

	// Destroyed, the service leaves the door.
	if r := d.kiln(nil, "destroy", d.service); r.code != 0 {
		t.Fatalf("destroy: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if resp, err := client.Get(d.url + "/"); err == nil {
		resp.Body.Close()
		t.Errorf("the door still answers %d for a destroyed service", resp.StatusCode)
	}
	// It was the project's last service: nothing of the project is left running.
	if got := d.doorContainers(); len(got) != 0 {
		t.Errorf("door containers after the last service was destroyed: %v, want none", got)
	}
	// A service deployed again gets a door again.
	if r := d.kiln(nil, "apply"); r.code != 0 {
		t.Fatalf("apply after destroy: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if got := d.doorContainers(); len(got) != 1 {
		t.Errorf("door containers after the service came back: %v, want one", got)
	}
	if body := d.get("/"); !strings.Contains(body, "version") {
		t.Errorf("the service deployed again is not served through its door: %q", body)
	}
}
