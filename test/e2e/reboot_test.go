package e2e

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRebootComesBack simulates a reboot of the host as far as a machine without
// systemd as PID 1 allows: the unit `kiln service install` writes passes
// systemd-analyze verify; the daemon dies, the Docker engine is stopped (its
// containers with it) and started again; the door comes back with the engine
// (restart policy), and the daemon, started from the unit's ExecStart as systemd would
// run it (its user, directory and environment), replaces the servers: the time until
// the service answers is logged. It restarts the Docker engine, so it runs alone:
// KILN_E2E_REBOOT=1 (scripts/test runs it after the rest).
func TestRebootComesBack(t *testing.T) {
	if os.Getenv("KILN_E2E_REBOOT") != "1" {
		t.Skip("restarts the Docker engine: run alone with KILN_E2E_REBOOT=1 (scripts/test does)")
	}
	d := newDeployment(t)
	d.startDaemon("kiln is serving", "up")

	r := d.kiln(nil, "service", "print", "--binary", kiln)
	if r.code != 0 {
		t.Fatalf("kiln service print: %d %s", r.code, r.stderr)
	}
	unitFile := t.TempDir() + "/kiln-reboot.service"
	os.WriteFile(unitFile, []byte(r.stdout), 0o644)
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		skipShort(t, "systemd-analyze is not installed (Debian package systemd; scripts/ensure-systemd installs it)")
	}
	if out, err := exec.Command(analyze, "verify", unitFile).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s\n%s", err, out, r.stdout)
	}
	unit := parseUnit(t, r.stdout)

	// The host goes down: the daemon first (systemd stops it), then the engine.
	d.stopDaemon(syscall.SIGTERM)
	restartEngine(t)
	engineUp := time.Now()

	// systemd starts the daemon once the engine is up: ExecStart, as the unit says.
	args := strings.Fields(unit["ExecStart"])
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = unit["WorkingDirectory"]
	cmd.Env = append(unitEnv(unit["Environment"]), d.env...)
	d.logs = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = d.logs, d.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.daemon = cmd
	c := &http.Client{Timeout: 2 * time.Second}
	var doorBack, serving time.Duration
	for time.Since(engineUp) < 2*time.Minute && serving == 0 {
		resp, err := c.Get(d.url + "/")
		if err == nil {
			resp.Body.Close()
			if doorBack == 0 {
				doorBack = time.Since(engineUp)
			}
			if resp.StatusCode == 200 {
				serving = time.Since(engineUp)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if serving == 0 {
		t.Fatalf("the service did not answer within 2 minutes of the engine's restart:\n%s", d.logs.String())
	}
	t.Logf("after the engine's restart: the door answered after %v, the service (servers replaced) after %v",
		doorBack.Round(time.Millisecond), serving.Round(time.Millisecond))
}

// parseUnit returns the [Service] keys of a unit (the last value of each).
func parseUnit(t *testing.T, text string) map[string]string {
	t.Helper()
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	if out["ExecStart"] == "" {
		t.Fatalf("no ExecStart in the unit:\n%s", text)
	}
	return out
}

// unitEnv is the environment a unit's Environment= line gives, with nothing else (as
// systemd runs a service), but for what reaches the engine.
func unitEnv(line string) []string {
	var env []string
	for _, f := range strings.Fields(line) {
		env = append(env, strings.Trim(f, `"`))
	}
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		env = append(env, "DOCKER_HOST="+h)
	}
	return env
}

// restartEngine stops the Docker engine (its containers stop with it, as at a
// shutdown) and starts it again with the same command line.
func restartEngine(t *testing.T) {
	t.Helper()
	out, err := exec.Command("pidof", "dockerd").Output()
	if err != nil {
		t.Fatalf("no dockerd to restart: %v", err)
	}
	pid, _ := strconv.Atoi(strings.Fields(string(out))[0])
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(90 * time.Second); syscall.Kill(pid, 0) == nil; {
		if time.Now().After(deadline) {
			t.Fatal("dockerd did not stop within 90s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.OpenFile("/tmp/dockerd.log", os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	engine := exec.Command(args[0], args[1:]...)
	engine.Stdout, engine.Stderr = log, log
	engine.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := engine.Start(); err != nil {
		t.Fatal(err)
	}
	engine.Process.Release()
	for deadline := time.Now().Add(60 * time.Second); exec.Command("docker", "info").Run() != nil; {
		if time.Now().After(deadline) {
			t.Fatal("the Docker engine did not come back within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
