package systemdunit

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestExecArgs(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"/usr/local/bin/kiln", "-C", "/srv/app", "serve"}, `/usr/local/bin/kiln -C /srv/app serve`},
		{[]string{"/opt/my kiln/kiln", "-C", "/srv/my app"}, `"/opt/my kiln/kiln" -C "/srv/my app"`},
		{[]string{"/bin/kiln", "100%", "$HOME", "${X}"}, `/bin/kiln 100%% $$HOME $${X}`},
		{[]string{"/bin/kiln", `a"b`, `c\d`, "it's", ";", ""}, `/bin/kiln "a\"b" "c\\d" "it's" ";" ""`},
		{[]string{"/bin/kiln", "50% of $5 \"here\""}, `/bin/kiln "50%% of $$5 \"here\""`},
	} {
		got, err := ExecArgs(tt.args)
		if err != nil || got != tt.want {
			t.Errorf("ExecArgs(%q) = %s, %v; want %s", tt.args, got, err, tt.want)
		}
	}
	for _, bad := range [][]string{nil, {"kiln", "serve"}, {"/bin/kiln", "a\nb"}} {
		if got, err := ExecArgs(bad); err == nil {
			t.Errorf("ExecArgs(%q) = %s, want an error", bad, got)
		}
	}
}

func TestValues(t *testing.T) {
	if got, err := Path("/srv/my app/50%"); err != nil || got != "/srv/my app/50%%" {
		t.Errorf("Path = %q, %v", got, err)
	}
	if got, err := Env("HOME=/home/my user", `X=a"b\c%`); err != nil || got != `"HOME=/home/my user" "X=a\"b\\c%%"` {
		t.Errorf("Env = %s, %v", got, err)
	}
	for _, f := range []func() (string, error){
		func() (string, error) { return Path("relative") },
		func() (string, error) { return Path(`/ends/in\`) },
		func() (string, error) { return Path("/a\nb") },
		func() (string, error) { return Env("NOEQUALS") },
		func() (string, error) { return Env("A B=c") },
		func() (string, error) { return Text(`trailing \`) },
	} {
		if got, err := f(); err == nil {
			t.Errorf("accepted: %q", got)
		}
	}
}

// testDaemon is a unit with every value that needs escaping.
func testDaemon(bin, dir string) Daemon {
	return Daemon{
		Name: "kiln-my-app.service", Dir: dir, Binary: bin, ServeArgs: ServeArgs(dir, dir+"/state 100%"),
		User: "root", Home: "/root", Path: "/usr/local/go/bin:" + DefaultPath, Env: []string{"DOCKER_HOST=unix:///run/docker.sock"},
		EnvFile: "/etc/default/kiln-my-app", LongestDrain: 2*time.Minute + 500*time.Millisecond,
	}
}

func TestDaemonUnit(t *testing.T) {
	got, err := testDaemon("/usr/local/bin/kiln", "/srv/my app").Unit()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "daemon.service")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got), go test -update if intended:\n%s", golden, diff)
	}
	for _, line := range []string{
		`ExecStart=/usr/local/bin/kiln -C "/srv/my app" --state-dir "/srv/my app/state 100%%" serve`,
		"WorkingDirectory=/srv/my app\n",
		"TimeoutStopSec=136s\n", // 2m0.5s of drain, rounded up, and 15s
		"Wants=docker.service", "Restart=always\n", "RestartSec=1s\n", "KillSignal=SIGTERM\n", "WantedBy=multi-user.target\n",
	} {
		if !strings.Contains(string(got), line) {
			t.Errorf("the unit lacks %q", line)
		}
	}
	if strings.Contains(string(got), "Requires=") {
		t.Error("the unit requires a unit: a restart of it would stop kiln")
	}

	for _, bad := range []func(*Daemon){
		func(d *Daemon) { d.Name = "kiln@x.service" },
		func(d *Daemon) { d.Name = "kiln app" },
		func(d *Daemon) { d.User = "a b" },
		func(d *Daemon) { d.Binary = "kiln" },
		func(d *Daemon) { d.Dir = "srv" },
	} {
		d := testDaemon("/usr/local/bin/kiln", "/srv/app")
		bad(&d)
		if _, err := d.Unit(); err == nil {
			t.Errorf("a unit of %+v was written", d)
		}
	}
}

// TestDaemonUnitVerifies has systemd check the unit (systemd-analyze verify: its syntax,
// its values, that the program exists), in a directory with a space and a percent
// sign in its name. systemd need not run the machine.
func TestDaemonUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if !testing.Short() {
			t.Fatal("systemd-analyze is not installed (Debian package systemd; scripts/ensure-systemd installs it)")
		}
		t.Skip("systemd-analyze is not installed (Debian package systemd)")
	}
	dir := filepath.Join(t.TempDir(), "my app 100%")
	units := t.TempDir()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.Executable() // any executable file will do
	if err != nil {
		t.Fatal(err)
	}
	d := testDaemon(bin, dir)
	d.User = currentUser(t)
	unit, err := d.Unit()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(units, d.Name)
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s\n%s", err, out, unit)
	}
	// And it finds a broken one: a program that is not there, whose name (a space, a
	// percent sign) systemd reads back as it is.
	d.Binary = filepath.Join(dir, "kiln 50%")
	if unit, err = d.Unit(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(analyze, "verify", path).CombinedOutput()
	if want := "Command " + d.Binary + " is not executable"; err == nil || !strings.Contains(string(out), want) {
		t.Errorf("systemd-analyze verify of a unit whose program is missing: %v, %s; want it to say %q", err, out, want)
	}
}

func currentUser(t *testing.T) string {
	out, err := exec.Command("id", "-un").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
