package harness

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// Machine is where a result was measured.
type Machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	MemoryMiB int64  `json:"memory_mib"`
	Kernel    string `json:"kernel"`
	Docker    string `json:"docker,omitempty"` // engine version; "" without an engine
	Storage   string `json:"docker_storage,omitempty"`
	Go        string `json:"go"`
	// LoadBefore and LoadAfter are /proc/loadavg's three averages and the number of
	// containers running, before and after the measurements: other work on the machine
	// shows there.
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after,omitempty"`
}

// Describe reads this machine's description. Missing pieces are left empty.
func Describe(ctx context.Context) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), LoadBefore: Busy(ctx)}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				m.MemoryMiB = kb / 1024
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.CommandContext(ctx, "docker", "version", "-f", "{{.Server.Version}}").Output(); err == nil {
		m.Docker = strings.TrimSpace(string(out))
	}
	if out, err := exec.CommandContext(ctx, "docker", "info", "-f", "{{.Driver}}").Output(); err == nil {
		m.Storage = strings.TrimSpace(string(out))
	}
	return m
}

// Busy says how busy the machine is now: the load averages and running containers.
func Busy(ctx context.Context) string {
	s := "load average ?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			s = "load average " + strings.Join(f[:3], " ")
		}
	}
	if out, err := exec.CommandContext(ctx, "docker", "ps", "-q").Output(); err == nil {
		s += ", " + strconv.Itoa(len(strings.Fields(string(out)))) + " containers running"
	}
	return s
}

// DescribeKiln reads the commit of the repository at root and whether its work tree has
// changes.
func DescribeKiln(ctx context.Context, root string) Kiln {
	var k Kiln
	if out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "HEAD").Output(); err == nil {
		k.Commit = strings.TrimSpace(string(out))
	}
	if out, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil {
		k.Dirty = len(strings.TrimSpace(string(out))) > 0
	}
	return k
}
