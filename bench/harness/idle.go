package harness

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

const (
	idleReplicas = 50
	idleWindow   = 60 * time.Second
	idleSample   = 5 * time.Second
	idleSettle   = 15 * time.Second
	// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every Linux
	// architecture kiln runs on.
	clockTicks = 100
)

// Idle runs one service of 50 servers, all healthy and nothing happening, and
// samples the `kiln up` process's CPU and memory over windows of 60 s, one window a
// run.
func Idle(ctx context.Context, e *Env, o Options) (*Result, error) {
	r := e.newResult(ctx, "idle", "The controller idle with 50 servers", o)
	r.Notes = []string{
		fmt.Sprintf("One service of %d servers (`resources { memory = \"32MiB\" }`, health check every 1s), all healthy; %s after the last became healthy, the `kiln up` process is read from `/proc/PID/stat` (utime + stime) every %s over windows of %s, one window a run; *kiln CPU* is a window's CPU time over its length, as %% of one core; *busiest 5 s* the busiest sample of the window; *RSS* `/proc/PID/status` VmRSS at the window's end and its maximum over the samples; *Go heap in use* and *goroutines* from kiln's `/metrics` (go_memstats_heap_inuse_bytes, go_goroutines) at the window's end.", idleReplicas, idleSettle, idleSample, idleWindow),
		"What the controller does meanwhile: a health probe of every server every 1s, and every 5 s a resync that lists the containers and compares each with its spec through the Docker API: *dockerd CPU* is the engine's side of that (and of anything else running on the machine). *events* counts the events kiln recorded during the window (0: the fleet stayed healthy); every run checks through the API that all 50 servers are still healthy.",
		"The machine is shared with other engineers running tests: other work shows in dockerd's CPU and in the load average.",
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	svc := ServiceOptions{Name: e.ID + "-idle", Replicas: idleReplicas, Interval: "1s", Memory: "32MiB", Port: port}
	p, err := e.Project(ctx, "idle", "bench-heal-hello", svc)
	if err != nil {
		return nil, err
	}
	e.Log.Info("kiln up", "replicas", idleReplicas)
	t0 := time.Now()
	d, err := p.Up(ctx, 10*time.Minute)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			d.Stop(context.WithoutCancel(ctx))
		}
	}()
	r.Add("kiln", "deploy 50 servers (kiln up to all healthy)", "s", time.Since(t0).Seconds())
	evs := streamEvents(ctx, d.Client, svc.Name)
	defer evs.stop()
	time.Sleep(idleSettle)
	dockerd := pidOf(ctx, e, "dockerd")
	for run := 1; run <= o.Runs; run++ {
		start := time.Now()
		k0, _ := cpuTicks(d.PID())
		d0, _ := cpuTicks(dockerd)
		busiest, prev, prevT, rssMax := 0.0, k0, start, 0.0
		for time.Since(start) < idleWindow {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(idleSample):
			}
			k, err := cpuTicks(d.PID())
			if err != nil {
				return nil, fmt.Errorf("reading kiln's CPU time: %w", err)
			}
			now := time.Now()
			busiest = max(busiest, percent(k-prev, now.Sub(prevT)))
			rssMax = max(rssMax, rssMiB(d.PID()))
			prev, prevT = k, now
		}
		elapsed := time.Since(start)
		k1, _ := cpuTicks(d.PID())
		d1, _ := cpuTicks(dockerd)
		if ok, err := d.Settled(ctx); !ok {
			r.Failf("run %d: the fleet was not all healthy at the end of the window: %v", run, err)
			continue
		}
		r.Add("kiln", "kiln CPU", "% of a core", percent(k1-k0, elapsed))
		r.Add("kiln", "busiest 5 s", "% of a core", busiest)
		r.Add("kiln", "RSS at the end", "MiB", rssMiB(d.PID()))
		r.Add("kiln", "RSS max", "MiB", rssMax)
		if m, err := d.Metrics(ctx); err != nil {
			r.Failf("run %d: reading /metrics: %v", run, err)
		} else {
			r.Add("kiln", "Go heap in use", "MiB", m["go_memstats_heap_inuse_bytes"]/(1<<20))
			r.Add("kiln", "goroutines", "", m["go_goroutines"])
		}
		if dockerd > 0 {
			r.Add("kiln", "dockerd CPU", "% of a core", percent(d1-d0, elapsed))
		}
		r.Add("kiln", "events", "", float64(evs.count(start)))
		e.Log.Info("idle", "run", run, "cpu_percent", percent(k1-k0, elapsed))
	}
	evs.stop()
	t1 := time.Now()
	d.Stop(ctx)
	stopped = true
	r.Add("kiln", "destroy 50 servers and stop kiln", "s", time.Since(t1).Seconds())
	if m, ok := r.Median("kiln", "kiln CPU"); ok {
		r.AddGoal("idle CPU with 50 servers < 2% of a core", m, "%", 2, true)
	}
	return e.finish(ctx, r), nil
}

func percent(ticks int64, d time.Duration) float64 {
	return float64(ticks) / clockTicks / d.Seconds() * 100
}

// cpuTicks is utime + stime of a process, in clock ticks.
func cpuTicks(pid int) (int64, error) {
	if pid <= 0 {
		return 0, os.ErrNotExist
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: fields are counted after its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st, nil
}

func rssMiB(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func pidOf(ctx context.Context, e *Env, name string) int {
	out, err := e.Run(ctx, e.Work, nil, "pidof", name)
	if err != nil {
		return 0
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		return 0
	}
	pid, _ := strconv.Atoi(f[0])
	return pid
}
