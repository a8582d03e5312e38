package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// procSpan is one process's lifetime as a procWatch saw it: from the first poll that
// listed it to the first that did not.
type procSpan struct {
	PID        int
	Args       []string
	Start, End time.Time
}

// Seconds is the span's length.
func (s procSpan) Seconds() float64 { return s.End.Sub(s.Start).Seconds() }

// procWatch records the lifetimes of the processes of one name that descend from one
// process, polling /proc: kiln runs `go` from its toolchain's directory (in a sandbox
// for a pipeline's commits), so no wrapper on PATH sees it, but /proc does.
type procWatch struct {
	mu    sync.Mutex
	spans []procSpan
	stop  func()
}

// procInfo is what /proc/PID/stat says of a process.
type procInfo struct {
	comm string
	ppid int
}

// parseStat reads the name and parent of /proc/PID/stat's contents. The name (field
// 2) is in parentheses and may hold spaces and parentheses itself: fields are counted
// after its last ')'.
func parseStat(s string) (procInfo, error) {
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return procInfo{}, fmt.Errorf("not /proc/PID/stat: %q", tail(s, 80))
	}
	f := strings.Fields(s[close+1:])
	if len(f) < 2 {
		return procInfo{}, fmt.Errorf("short /proc/PID/stat: %q", tail(s, 80))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procInfo{}, fmt.Errorf("/proc/PID/stat's parent %q: %w", f[1], err)
	}
	return procInfo{comm: s[open+1 : close], ppid: ppid}, nil
}

// descends reports whether pid is root or one of its descendants, by the parents in
// info (a process missing from it ends the walk).
func descends(pid, root int, info map[int]procInfo) bool {
	for range 64 { // deeper than any process tree here; a cycle cannot hang the walk
		if pid == root {
			return true
		}
		p, ok := info[pid]
		if !ok || p.ppid == 0 || p.ppid == pid {
			return false
		}
		pid = p.ppid
	}
	return false
}

// watchProcs polls /proc every interval for the processes named comm that descend
// from root, until stop. The first poll is made before it returns and the last before
// stop returns: a process running when it is called and gone when stop is, is seen
// from start to end. A process's start and end are each accurate to one interval.
func watchProcs(ctx context.Context, root int, comm string, every time.Duration) *procWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &procWatch{}
	info := map[int]procInfo{}
	live := map[int]*procSpan{}
	poll := func() {
		pids, err := listPIDs()
		if err != nil {
			return
		}
		now := time.Now()
		present := map[int]bool{}
		for _, pid := range pids {
			present[pid] = true
		}
		for _, pid := range pids {
			p, known := info[pid]
			// A process keeps its PID across exec and changes its name: a known
			// descendant not yet matched is read again.
			if known && (p.comm == comm || !descends(pid, root, info)) {
				continue
			}
			if !learn(pid, info, present) {
				continue
			}
			if p = info[pid]; p.comm == comm && descends(pid, root, info) && live[pid] == nil {
				args, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
				live[pid] = &procSpan{PID: pid, Args: strings.Split(string(bytes.TrimRight(args, "\x00")), "\x00"), Start: now}
			}
		}
		for pid := range info {
			if present[pid] {
				continue
			}
			delete(info, pid)
			if s := live[pid]; s != nil {
				s.End = now
				w.mu.Lock()
				w.spans = append(w.spans, *s)
				w.mu.Unlock()
				delete(live, pid)
			}
		}
	}
	poll()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				poll()
				return
			case <-tick.C:
			}
			poll()
		}
	}()
	w.stop = sync.OnceFunc(func() { cancel(); <-done })
	return w
}

// between returns the spans of the processes that started in [from, to] and have
// ended.
func (w *procWatch) between(from, to time.Time) []procSpan {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []procSpan
	for _, s := range w.spans {
		if !s.Start.Before(from) && !s.Start.After(to) {
			out = append(out, s)
		}
	}
	return out
}

// learn reads pid's /proc/PID/stat into info, and its ancestors' that info lacks,
// so that whether it descends from the root is known at once; false if pid is gone.
func learn(pid int, info map[int]procInfo, present map[int]bool) bool {
	for depth := 0; depth < 64; depth++ {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return depth > 0
		}
		p, err := parseStat(string(b))
		if err != nil {
			return depth > 0
		}
		info[pid] = p
		present[pid] = true
		if _, known := info[p.ppid]; known || p.ppid <= 1 {
			return true
		}
		pid = p.ppid
	}
	return true
}

func listPIDs() ([]int, error) {
	f, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
