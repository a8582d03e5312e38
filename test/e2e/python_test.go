package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// stopTimeout is the python service's stop_timeout in TestPythonApp: short, since a
// server without init waits all of it before it is killed.
const stopTimeout = 3 * time.Second

// TestPythonApp deploys examples/python as it is, a Python app that installs no SIGTERM
// handler, on Debian's python3 from the example's packages step (pinned by its
// kiln.lock.hcl), and rolls out new versions under load: with init = true a replaced
// server stops as soon as it is asked; with init = false it ignores SIGTERM as PID 1 and
// is killed after stop_timeout. Both roll out with zero failed requests.
func TestPythonApp(t *testing.T) {
	// newDeployment gives a unique service name, a free front door and the cleanup; the
	// python example takes the hello one's place in its directory.
	d := newDeployment(t)
	os.RemoveAll(d.dir)
	if out, err := exec.Command("cp", "-r", "../../examples/python", d.dir).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	os.RemoveAll(filepath.Join(d.dir, ".kiln"))
	lock, err := os.ReadFile(filepath.Join(d.dir, "kiln.lock.hcl"))
	if err != nil {
		t.Fatalf("examples/python has no lock file: %v", err)
	}
	packageCache(t, d.dir)
	editSpec(t, d.dir, `service "python"`, `service "`+d.service+`"`)
	editSpec(t, d.dir, "init = true", "init         = true\n  stop_timeout = \""+stopTimeout.String()+"\"")

	start := time.Now()
	d.startDaemon("revision 1 deployed", "up")
	t.Logf("first deployment (bake of the base and the app, 2 servers): %v", time.Since(start).Round(10*time.Millisecond))
	if body := d.get("/"); !strings.Contains(body, "Hello from Python!") || !strings.Contains(body, "version: dev") {
		t.Fatalf("front door answered %q", body)
	}
	if body := d.get("/healthz"); body != "ok\n" {
		t.Errorf("/healthz answered %q", body)
	}
	// The bake used the committed lock as it is, and the SBOM lists every package of it.
	if after, _ := os.ReadFile(filepath.Join(d.dir, "kiln.lock.hcl")); !bytes.Equal(after, lock) {
		t.Errorf("the bake changed the committed kiln.lock.hcl")
	}
	sbom := d.kiln(nil, "sbom", "python")
	for _, m := range regexp.MustCompile(`package "([^"]+)" \{\s*version\s*=\s*"([^"]+)"`).FindAllStringSubmatch(string(lock), -1) {
		if want := "pkg:deb/debian/" + m[1] + "@" + strings.ReplaceAll(m[2], "+", "%2B"); !strings.Contains(sbom.stdout, want) && !strings.Contains(sbom.stdout, "pkg:deb/debian/"+m[1]+"@"+m[2]) {
			t.Errorf("the SBOM does not list %s %s (%s)", m[1], m[2], want)
		}
	}

	// A package added: the lock is refreshed (kiln lock), and plan names the packages
	// the new image adds (from the two images' SBOMs).
	editSpec(t, d.dir, `packages = ["python3"]`, `packages = ["python3", "ca-certificates"]`)
	if r := d.kiln(nil, "lock"); r.code != 0 {
		t.Fatalf("kiln lock: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	pl := d.kiln(nil, "plan")
	if pl.code != 0 || !regexp.MustCompile(`package \+ ca-certificates \S+`).MatchString(pl.stdout) || !regexp.MustCompile(`package \+ openssl \S+`).MatchString(pl.stdout) {
		t.Errorf("plan does not name the packages the new image adds: exit %d\n%s%s", pl.code, pl.stdout, pl.stderr)
	}

	// With init: a new greeting (a new copy layer), then the switch to init = false,
	// whose rollout still replaces servers that run with init.
	os.WriteFile(filepath.Join(d.dir, "app", "greeting.txt"), []byte("Hello again from Python!\n"), 0o644)
	stops := pythonRollout(t, d, 2, nil, "rollout with init")
	if body := d.get("/"); !strings.Contains(body, "Hello again from Python!") {
		t.Errorf("after the new greeting the front door answers %q", body)
	}
	editSpec(t, d.dir, "init         = true", "init         = false")
	stops = append(stops, pythonRollout(t, d, 3, []string{"KILN_VAR_version=3"}, "rollout to init = false (servers with init replaced)")...)
	for _, s := range stops {
		if s > stopTimeout/2 {
			t.Errorf("with init = true a server took %v to stop, want well under stop_timeout (%v): %v", s, stopTimeout, stops)
		}
	}

	// Without init: the servers of revision 3 ignore SIGTERM and are killed.
	stops = pythonRollout(t, d, 4, []string{"KILN_VAR_version=4"}, "rollout without init")
	for _, s := range stops {
		if s < stopTimeout-300*time.Millisecond {
			t.Errorf("with init = false a server stopped in %v, want about stop_timeout (%v): does it handle SIGTERM? %v", s, stopTimeout, stops)
		}
	}
	if body := d.get("/"); !strings.Contains(body, "version: 4") {
		t.Errorf("after the last rollout the front door answers %q", body)
	}
	noHeals(t, d) // init's mount point is not drift, through Debian's merged /usr too
}

// pythonRollout applies the spec with env under load and returns how long each server
// it replaced took to stop, from the destroyed events of revision rev.
func pythonRollout(t *testing.T, d *deployment, rev int, env []string, what string) []time.Duration {
	t.Helper()
	l := startLoad(d.url, 8)
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	r := d.kiln(env, "apply", "-auto-approve")
	took := time.Since(start)
	l.finish(t, what)
	if want := "revision " + strconv.Itoa(rev) + " deployed"; r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Fatalf("%s: exit %d, want %q\n%s%s", what, r.code, want, r.stdout, r.stderr)
	}
	ev := d.kiln(nil, "events", "--service", d.service)
	re := regexp.MustCompile(`destroyed \(stopped in ([0-9.a-zµ]+)\): replaced by revision ` + strconv.Itoa(rev) + `\b`)
	var stops []time.Duration
	for _, m := range re.FindAllStringSubmatch(ev.stdout, -1) {
		s, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("a destroyed event's duration %q: %v", m[1], err)
		}
		stops = append(stops, s)
	}
	if len(stops) != 2 {
		t.Fatalf("%s: %d servers destroyed for revision %d, want 2:\n%s", what, len(stops), rev, ev.stdout)
	}
	t.Logf("%s: rollout of 2 replicas in %v (kiln apply), servers stopped in %v", what, took.Round(10*time.Millisecond), stops)
	return stops
}

// pythonBase returns the path of the Debian rootfs tarball with python3 that
// scripts/debian-python-base builds, or reuses from its cache. When the tarball has to
// be built and Debian's archive cannot be reached, the test is skipped under -short and
// fails otherwise (CI builds it).
func pythonBase(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("../../scripts/debian-python-base")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 3 {
		skipShort(t, "Debian's archive is unreachable, so there is no Python base to deploy on: %s", strings.TrimSpace(errb.String()))
	}
	if err != nil {
		t.Fatalf("scripts/debian-python-base: %v\n%s", err, errb.String())
	}
	path := strings.TrimSpace(out.String())
	if st, err := os.Stat(path); err != nil || st.Size() == 0 {
		t.Fatalf("scripts/debian-python-base printed %q, which is not a tarball: %v\n%s", path, err, errb.String())
	}
	return path
}

// packageCache gives the project in dir a package cache shared by the tests (hard
// links into the user's cache directory, kiln-test/debian-packages), so that only the
// first run downloads the example's .debs; what a bake adds is kept for the next run.
// The cache is content-addressed, and the bake verifies every file it reads from it.
func packageCache(t *testing.T, dir string) {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Skipf("no cache directory for the packages: %v", err)
	}
	shared := filepath.Join(cache, "kiln-test", "debian-packages")
	mine := filepath.Join(dir, ".kiln", "cache", "debian")
	if err := os.MkdirAll(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(mine), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-al", shared, mine).CombinedOutput(); err != nil {
		t.Fatalf("seeding the package cache: %v: %s", err, out)
	}
	t.Cleanup(func() {
		exec.Command("cp", "-aln", mine+"/.", shared).Run()
	})
}

// TestPythonAppFromDocker deploys examples/python's app as the README's other path
// does, on an image of the local Docker engine (docker://...) in place of the packages
// step: here a Debian base, imported into the engine, stands for python:3.12-slim, since
// this machine has no registry.
func TestPythonAppFromDocker(t *testing.T) {
	pythonBase(t) // built and cached, or skipped when Debian's archive is unreachable
	cmd := exec.Command("../../scripts/debian-python-base", "--docker")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/debian-python-base --docker: %v\n%s", err, out)
	}
	d := newDeployment(t)
	os.RemoveAll(d.dir)
	if out, err := exec.Command("cp", "-r", "../../examples/python", d.dir).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	os.RemoveAll(filepath.Join(d.dir, ".kiln"))
	editSpec(t, d.dir, `service "python"`, `service "`+d.service+`"`)
	editSpec(t, d.dir, `from = "scratch"`, `from = "docker://kiln-test/python:bookworm"`)
	editSpec(t, d.dir, "packages {\n    debian {\n      suite    = \"bookworm\"\n      packages = [\"python3\"]\n    }\n  }\n", "")
	d.startDaemon("revision 1 deployed", "up")
	if body := d.get("/"); !strings.Contains(body, "Hello from Python!") {
		t.Fatalf("front door answered %q", body)
	}
	sbom := d.kiln(nil, "sbom", "python")
	if sbom.code != 0 || !strings.Contains(sbom.stdout, "pkg:deb/debian/python3") {
		t.Errorf("the SBOM does not list the base's Debian packages: exit %d\n%.2000s", sbom.code, sbom.stdout)
	}
	noHeals(t, d)
}
