package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Ctrl-C as the most trusted tools handle it: the first SIGINT stops in order and says
// so, the second exits at once, and either way the next start converges.

// slowRollout makes the example a fleet of 4 whose new servers must stay healthy for
// minHealthy before they are admitted: a rollout goes step by step, for several seconds.
func slowRollout(t *testing.T, d *deployment, minHealthy string) {
	t.Helper()
	editSpec(t, d.dir, "replicas = 2", "replicas = 4")
	editSpec(t, d.dir, `min_healthy       = "1s"`, `min_healthy       = "`+minHealthy+`"`)
}

// waitRevision waits until the service has no rollout running and n servers of
// revision rev, all in rotation, and no other container.
func waitRevision(t *testing.T, d *deployment, rev int64, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st := d.status()
		if len(st.Services) == 1 {
			s := st.Services[0]
			same := len(s.Servers) == n
			for _, srv := range s.Servers {
				same = same && srv.Revision == rev
			}
			if s.Rollout == "" && s.Revision == rev && s.Healthy == n && same && len(d.containers()) == n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service never converged to %d servers of revision %d: %+v; containers %v", n, rev, st, d.containers())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitOutput waits until out holds want.
func waitOutput(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !strings.Contains(out.String(), want); {
		if time.Now().After(deadline) {
			t.Fatalf("never printed %q:\n%s", want, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// exited waits for cmd to exit and returns its exit code and the time since since.
func exited(t *testing.T, cmd *exec.Cmd, out *syncBuffer, since time.Time) (int, time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("kiln did not exit within 90 s of the signal:\n%s", out.String())
	}
	return cmd.ProcessState.ExitCode(), time.Since(since)
}

// released checks that the daemon left no PID file, no API address and no lock: kiln
// stop finds no daemon and nothing stale.
func released(t *testing.T, d *deployment) {
	t.Helper()
	for _, f := range []string{"kiln.pid", "api.addr"} {
		if _, err := os.Stat(filepath.Join(d.dir, ".kiln", f)); !os.IsNotExist(err) {
			t.Errorf(".kiln/%s outlives the daemon: %v", f, err)
		}
	}
	if r := ok(t, d.dir, d.env, "stop"); strings.TrimSpace(r.stdout) != "No kiln daemon is running for this spec." {
		t.Errorf("kiln stop after the daemon exited: %q", r.stdout)
	}
}

// TestSignalServe: Ctrl-C to kiln serve mid-rollout stops it within seconds with exit
// status 130, saying what it does, releasing the PID file and its lock; the step in
// flight is undone, and the next start resumes the rollout to 4 servers of the new
// revision, with no orphan.
func TestSignalServe(t *testing.T) {
	d := newDeployment(t)
	slowRollout(t, d, "1s")
	d.startDaemon("API on", "serve")
	if r := d.kiln(nil, "apply"); r.code != 0 || !strings.Contains(r.stdout, "revision 1 deployed") {
		t.Fatalf("apply v1: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	editSpec(t, d.dir, `min_healthy       = "1s"`, `min_healthy       = "4s"`)
	if r := d.kiln([]string{"KILN_VAR_version=2.0"}, "apply", "--detach"); r.code != 0 {
		t.Fatalf("apply --detach v2: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A new server is created and waits out its health gate: the step is in flight.
	waitOutput(t, d.logs, "created from revision 2")

	start := time.Now()
	d.daemon.Process.Signal(syscall.SIGINT)
	code, took := exited(t, d.daemon, d.logs, start)
	d.daemon = nil
	t.Logf("kiln serve exited %d, %s after SIGINT; containers then: %v", code, took.Round(time.Millisecond), d.containers())
	if code != 130 {
		t.Errorf("kiln serve exited %d after SIGINT, want 130:\n%s", code, d.logs.String())
	}
	for _, want := range []string{"kiln: interrupted: stopping the daemon", "Press Ctrl-C again to exit at once", "PID file and lock released"} {
		if !strings.Contains(d.logs.String(), want) {
			t.Errorf("kiln serve does not say %q:\n%s", want, d.logs.String())
		}
	}
	released(t, d)
	// The step in flight was undone: its server, not yet admitted, is gone.
	if !strings.Contains(d.logs.String(), "destroyed") {
		t.Errorf("the server of the interrupted step was not destroyed:\n%s", d.logs.String())
	}
	if n := len(d.containers()); n != 4 {
		t.Errorf("after the stop: %d containers %v, want the fleet's 4", n, d.containers())
	}

	restart := time.Now()
	d.startDaemon("API on", "serve")
	waitOutput(t, d.logs, "resuming the rollout to revision 2")
	waitRevision(t, d, 2, 4)
	t.Logf("after the restart, converged to 4 servers of revision 2 in %s", time.Since(restart).Round(time.Millisecond))
	if body := d.get("/"); !strings.Contains(body, "version: 2.0") {
		t.Errorf("after the resumed rollout the front door answers %q", body)
	}
}

// TestSignalUp: Ctrl-C to kiln up while its first rollout's servers wait out their
// health gate stops it with 130, removes those servers and releases the state
// directory; the next kiln serve resumes the rollout to 4 servers.
func TestSignalUp(t *testing.T) {
	d := newDeployment(t)
	slowRollout(t, d, "4s")
	d.startDaemon("created from revision 1", "up")
	start := time.Now()
	d.daemon.Process.Signal(syscall.SIGINT)
	code, took := exited(t, d.daemon, d.logs, start)
	d.daemon = nil
	t.Logf("kiln up exited %d, %s after SIGINT; containers then: %v", code, took.Round(time.Millisecond), d.containers())
	if code != 130 {
		t.Errorf("kiln up exited %d after SIGINT, want 130:\n%s", code, d.logs.String())
	}
	if !strings.Contains(d.logs.String(), "Press Ctrl-C again to exit at once") {
		t.Errorf("kiln up does not say what a second Ctrl-C does:\n%s", d.logs.String())
	}
	released(t, d)
	if cs := d.containers(); len(cs) != 0 {
		t.Errorf("the interrupted step's servers outlive the stop: %v", cs)
	}
	d.startDaemon("API on", "serve")
	waitOutput(t, d.logs, "resuming the rollout to revision 1")
	waitRevision(t, d, 1, 4)
}

// TestSignalUpTwice: two Ctrl-Cs to kiln up mid-rollout exit at once with 130; the
// next kiln serve resumes the rollout and converges to 4 servers, with no orphan.
func TestSignalUpTwice(t *testing.T) {
	d := newDeployment(t)
	slowRollout(t, d, "4s")
	d.startDaemon("created from revision 1", "up")

	first := time.Now()
	d.daemon.Process.Signal(syscall.SIGINT)
	waitOutput(t, d.logs, "Press Ctrl-C again to exit at once")
	second := time.Now()
	d.daemon.Process.Signal(syscall.SIGINT)
	code, took := exited(t, d.daemon, d.logs, second)
	d.daemon = nil
	t.Logf("kiln up exited %d, %s after the second SIGINT (%s after the first)", code, took.Round(time.Millisecond), time.Since(first).Round(time.Millisecond))
	if code != 130 {
		t.Errorf("kiln up exited %d after two SIGINTs, want 130:\n%s", code, d.logs.String())
	}
	if !strings.Contains(d.logs.String(), "interrupted again: exiting at once") {
		t.Errorf("kiln up does not say it exits at once:\n%s", d.logs.String())
	}
	if took > 2*time.Second {
		t.Errorf("kiln up took %s to exit after the second SIGINT, want at once", took)
	}

	restart := time.Now()
	d.startDaemon("API on", "serve")
	waitOutput(t, d.logs, "resuming the rollout to revision 1")
	waitRevision(t, d, 1, 4)
	t.Logf("after the restart, converged to 4 servers of revision 1 in %s", time.Since(restart).Round(time.Millisecond))
}

// TestSignalApply: Ctrl-C to kiln apply while it follows a rollout exits at once with
// 130 and says the rollout goes on; the daemon finishes it.
func TestSignalApply(t *testing.T) {
	d := newDeployment(t)
	slowRollout(t, d, "1s")
	d.startDaemon("API on", "serve")
	if r := d.kiln(nil, "apply"); r.code != 0 {
		t.Fatalf("apply v1: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	editSpec(t, d.dir, `min_healthy       = "1s"`, `min_healthy       = "3s"`)
	out := &syncBuffer{}
	apply := exec.Command(kiln, "apply")
	apply.Dir = d.dir
	apply.Env = append(os.Environ(), append(d.env, "KILN_VAR_version=2.0")...)
	apply.Stdout, apply.Stderr = out, out
	if err := apply.Start(); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, out, "created from revision 2")

	start := time.Now()
	apply.Process.Signal(syscall.SIGINT)
	code, took := exited(t, apply, out, start)
	t.Logf("kiln apply exited %d, %s after SIGINT", code, took.Round(time.Millisecond))
	if code != 130 {
		t.Errorf("kiln apply exited %d after SIGINT, want 130:\n%s", code, out.String())
	}
	for _, want := range []string{"stopped following the rollout; it goes on in the daemon", "Press Ctrl-C again to exit at once", "kiln status"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("kiln apply does not say %q:\n%s", want, out.String())
		}
	}
	if took > 2*time.Second {
		t.Errorf("kiln apply took %s to exit after SIGINT", took)
	}
	waitRevision(t, d, 2, 4)
	if r := d.kiln(nil, "history", d.service); !strings.Contains(r.stdout, "deployed") {
		t.Errorf("history after the interrupted apply:\n%s", r.stdout)
	}
	if body := d.get("/"); !strings.Contains(body, "version: 2.0") {
		t.Errorf("after the rollout the front door answers %q", body)
	}
}
