package systemdunit

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// DefaultUnitDir is where units of the system's administrator go.
const DefaultUnitDir = "/etc/systemd/system"

// Systemctl drives the system's service manager through the systemctl command.
type Systemctl struct {
	// Program is the systemctl command, looked up in PATH when it has no "/".
	Program string
	// RunDir exists when systemd runs the system (as sd_booted(3) checks it):
	// /run/systemd/system.
	RunDir string
	// Stdout and Stderr receive systemctl's output.
	Stdout, Stderr io.Writer
}

// System is the machine's systemctl, printing to stdout and stderr.
func System(stdout, stderr io.Writer) Systemctl {
	return Systemctl{Program: "systemctl", RunDir: "/run/systemd/system", Stdout: stdout, Stderr: stderr}
}

// Running reports whether systemd runs this machine and systemctl is installed: only
// then can units be started. Without it (a container, another init), the caller says
// which commands to run where it does.
func (s Systemctl) Running() bool {
	if _, err := exec.LookPath(s.Program); err != nil {
		return false
	}
	fi, err := os.Stat(s.RunDir)
	return err == nil && fi.IsDir()
}

// Run runs systemctl with args and waits for it. Its error names the command and its
// exit status; what systemctl said went to Stderr.
func (s Systemctl) Run(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, s.Program, args...)
	cmd.Stdout, cmd.Stderr = s.Stdout, s.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("systemctl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}
