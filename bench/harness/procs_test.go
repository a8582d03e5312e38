package harness

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	p, err := parseStat("4242 (go build (x)) S 4100 4242 4242 0 -1 4194560 133 0 0 0 1 2 0 0 20 0 5 0")
	if err != nil || p.comm != "go build (x)" || p.ppid != 4100 {
		t.Errorf("parseStat = %+v, %v", p, err)
	}
	for _, bad := range []string{"", "4242 go S 1", "4242 (go)", "4242 (go) S x"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q) took it", bad)
		}
	}
}

func TestDescends(t *testing.T) {
	info := map[int]procInfo{10: {"kiln", 1}, 11: {"kiln", 10}, 12: {"go", 11}, 20: {"go", 1}, 30: {"x", 30}}
	for pid, want := range map[int]bool{10: true, 11: true, 12: true, 20: false, 30: false, 99: false} {
		if got := descends(pid, 10, info); got != want {
			t.Errorf("descends(%d, 10) = %v", pid, got)
		}
	}
}

// A child of this process, named cat, running when the watch starts and gone when it
// stops, is seen from start to end.
func TestWatchProcs(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	cat := exec.Command("cat")
	in, err := cat.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.Start(); err != nil {
		t.Skip("no cat:", err)
	}
	t0 := time.Now()
	w := watchProcs(context.Background(), os.Getpid(), "cat", time.Hour)
	in.Close()
	cat.Wait()
	w.stop()
	spans := w.between(t0, time.Now())
	if len(spans) != 1 {
		t.Fatalf("spans of cat: %+v", spans)
	}
	if s := spans[0]; s.PID != cat.Process.Pid || !slices.Equal(s.Args, []string{"cat"}) || s.Seconds() < 0 {
		t.Errorf("span %+v, want cat's (pid %d)", s, cat.Process.Pid)
	}
	if got := w.between(t0.Add(-time.Hour), t0.Add(-time.Minute)); len(got) != 0 {
		t.Errorf("spans before t0: %+v", got)
	}
}
