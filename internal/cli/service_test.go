package cli

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/systemdunit"
)

// run runs kiln with args, returning its exit status, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Execute(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// project makes a project directory with a space in its name and a spec whose longest
// drain is 2m.
func project(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "my app")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := `
service "web" {
  image         = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  port          = 8080
  listen        = "127.0.0.1:8090"
  drain_timeout = "2m"
}
service "api" {
  image  = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  port   = 8080
  listen = "127.0.0.1:8091"
}
`
	if err := os.WriteFile(filepath.Join(dir, "kiln.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// withSystemctl makes the service verbs drive sc instead of the machine's systemctl.
func withSystemctl(t *testing.T, sc systemdunit.Systemctl) {
	old := systemctl
	systemctl = func(stdout, stderr io.Writer) systemdunit.Systemctl {
		sc.Stdout, sc.Stderr = stdout, stderr
		return sc
	}
	t.Cleanup(func() { systemctl = old })
}

// fakeSystemctl is a stand-in for systemctl on a machine that systemd runs, which a
// test machine need not be: a script that appends its arguments to a log.
func fakeSystemctl(t *testing.T) (systemdunit.Systemctl, string) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	script := filepath.Join(dir, "systemctl")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" >> '"+log+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return systemdunit.Systemctl{Program: script, RunDir: dir}, log
}

func TestServiceInstall(t *testing.T) {
	withSystemctl(t, systemdunit.Systemctl{Program: "systemctl", RunDir: filepath.Join(t.TempDir(), "no-systemd")})
	dir, units := project(t), filepath.Join(t.TempDir(), "units")
	bin, err := filepath.EvalSymlinks("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, "service", "install", "--dir", dir, "--unit-dir", units, "--binary", "/bin/true", "--no-enable")
	if code != 0 {
		t.Fatalf("install: %d\n%s%s", code, stdout, stderr)
	}
	path := filepath.Join(units, "kiln-my-app.service")
	unit, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("unit mode %v, want 0644", fi.Mode().Perm())
	}
	for _, want := range []string{
		"ExecStart=" + bin + ` -C "` + dir + `" serve` + "\n",
		"WorkingDirectory=" + dir + "\n",
		"TimeoutStopSec=135s\n", // web's drain of 2m, and 15s
		"User=" + currentUserName(t) + "\n",
		"EnvironmentFile=-/etc/default/kiln-my-app\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q:\n%s", want, unit)
		}
	}
	if !strings.Contains(stdout, "not enabled (--no-enable)") || !strings.Contains(stdout, "systemctl enable --now kiln-my-app.service") {
		t.Errorf("install said %q", stdout)
	}

	// print shows what install wrote.
	code, printed, stderr := run(t, "service", "print", "--dir", dir, "--unit-dir", units, "--binary", "/bin/true")
	if code != 0 || printed != string(unit) {
		t.Errorf("print (%d, %s) differs from the unit written:\n%s", code, stderr, printed)
	}

	// Without --no-enable, where systemd does not run the machine: written, and said so.
	code, stdout, _ = run(t, "service", "install", "--dir", dir, "--unit-dir", units, "--name", "web", "--binary", "/bin/true")
	if code != 0 || !strings.Contains(stdout, "systemd is not running here") || !strings.Contains(stdout, "systemctl enable --now web.service") {
		t.Errorf("install without systemd: %d, %q", code, stdout)
	}
	if _, err := os.Stat(filepath.Join(units, "web.service")); err != nil {
		t.Error(err)
	}
}

// TestServiceUnitVerifies runs systemd-analyze verify on the unit kiln service install
// writes, with its default binary (this test's executable).
func TestServiceUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if !testing.Short() {
			t.Fatal("systemd-analyze is not installed (Debian package systemd; scripts/ensure-systemd installs it)")
		}
		t.Skip("systemd-analyze is not installed (Debian package systemd)")
	}
	dir, units := project(t), t.TempDir()
	if code, stdout, stderr := run(t, "service", "install", "--dir", dir, "--unit-dir", units, "--no-enable"); code != 0 {
		t.Fatalf("install: %d\n%s%s", code, stdout, stderr)
	}
	path := filepath.Join(units, "kiln-my-app.service")
	if out, err := exec.Command(analyze, "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
		unit, _ := os.ReadFile(path)
		t.Fatalf("systemd-analyze verify: %v\n%s\n%s", err, out, unit)
	}
}

func TestServiceEnableAndUninstall(t *testing.T) {
	sc, log := fakeSystemctl(t)
	withSystemctl(t, sc)
	dir, units := project(t), t.TempDir()
	if code, stdout, stderr := run(t, "service", "install", "--dir", dir, "--unit-dir", units, "--binary", "/bin/true"); code != 0 {
		t.Fatalf("install: %d\n%s%s", code, stdout, stderr)
	}
	calls := func() string {
		b, _ := os.ReadFile(log)
		os.Remove(log)
		return string(b)
	}
	if got := calls(); got != "daemon-reload\nenable --now kiln-my-app.service\n" {
		t.Errorf("install ran systemctl %q", got)
	}
	code, stdout, stderr := run(t, "service", "uninstall", "--dir", dir, "--unit-dir", units)
	if code != 0 {
		t.Fatalf("uninstall: %d\n%s%s", code, stdout, stderr)
	}
	if got := calls(); got != "disable --now kiln-my-app.service\ndaemon-reload\n" {
		t.Errorf("uninstall ran systemctl %q", got)
	}
	if _, err := os.Stat(filepath.Join(units, "kiln-my-app.service")); !os.IsNotExist(err) {
		t.Errorf("the unit is still there: %v", err)
	}
	if code, _, stderr := run(t, "service", "uninstall", "--dir", dir, "--unit-dir", units); code != 1 || !strings.Contains(stderr, "nothing to uninstall") {
		t.Errorf("a second uninstall: %d, %q", code, stderr)
	}
	other := filepath.Join(units, "kiln-my-app.service")
	if err := os.WriteFile(other, []byte("[Service]\nExecStart=/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(t, "service", "uninstall", "--dir", dir, "--unit-dir", units); code != 1 || !strings.Contains(stderr, "not written by kiln service install") {
		t.Errorf("uninstall of another unit: %d, %q", code, stderr)
	}
	if _, err := os.Stat(other); err != nil || calls() != "" {
		t.Errorf("another unit was touched: %v", err)
	}
}

func currentUserName(t *testing.T) string {
	out, err := exec.Command("id", "-un").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}
