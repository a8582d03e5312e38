package harness

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	// The latency part: doorRate requests a second, open loop, for doorRun, after
	// doorWarmup untimed requests.
	doorRate   = 1000
	doorRun    = 10 * time.Second
	doorWarmup = 200
	// The saturation part: doorConns keep-alive connections, closed loop, for doorSatRun.
	doorConns  = 64
	doorSatRun = 10 * time.Second
	// doorBody is the size of the upstream's answer; doorHost the name HTTPS requests
	// are sent for (Host and TLS server name), which the certificate names.
	doorBody = 100
	doorHost = "localhost"
)

// doorProto is how a client talks to a target: HTTP, or HTTPS over HTTP/1.1 or h2.
type doorProto struct {
	name  string // the case (-cases)
	label string // in the results
	https bool
	h2    bool
}

// doorProtos are the door scenario's cases; h2 only when -cases names it.
var doorProtos = []doorProto{
	{name: "http", label: "HTTP"},
	{name: "https", label: "HTTPS", https: true},
	{name: "h2", label: "HTTPS h2", https: true, h2: true},
}

// doorTarget is one of the door scenario's systems.
type doorTarget struct {
	name  string // in -systems
	label string // in the results
}

var doorTargets = []doorTarget{
	{name: "direct", label: latencyDirect},
	{name: "kiln", label: "kiln door"},
	{name: "kamal-proxy", label: "kamal-proxy"},
}

// doorSystem names a target's series over a protocol: "kiln door, HTTPS".
func doorSystem(target, proto string) string { return target + ", " + proto }

// doorAdded names the series of what a target adds to one server directly.
func doorAdded(target, proto string) string { return "added by " + doorSystem(target, proto) }

// Metrics of the door scenario, besides the latency metrics of rollout's front-door
// latency (latencyMetrics).
const (
	doorCPU       = "CPU at 1000 requests/s"
	doorDials     = "connections opened"
	satThroughput = "throughput"
	satFailed     = "failed at saturation"
	satP50        = "p50 latency at saturation"
	satP99        = "p99 latency at saturation"
	satCPU        = "CPU at saturation"
	satCPUPerReq  = "CPU per request"
)

var satMetrics = []string{satThroughput, satFailed, satP50, satP99, satCPU, satCPUPerReq}

// doorLive is a target as set up for the run: the URL of each protocol it serves and
// the process whose CPU is counted, or why it is unavailable over a protocol.
type doorLive struct {
	doorTarget
	urls map[string]string // by protocol's name
	why  map[string]string // by protocol's name, when it has no URL
	pid  int
}

// Door measures the latency a front door adds to a request at 1,000 requests/s and
// its saturation throughput, for one server directly, kiln's door (`kiln door`) and
// kamal-proxy, side by side in the same run, over HTTP and HTTPS: runs interleaved
// (every target's load of a run before the next run's), so that the machine's drift
// falls on all alike.
func Door(ctx context.Context, e *Env, o Options) (*Result, error) {
	r := e.newResult(ctx, "door", "Front door: kiln vs kamal-proxy vs one server directly", o)
	protos, err := doorCases(o.Cases)
	if err != nil {
		return nil, err
	}
	var targets []doorTarget
	for _, t := range doorTargets {
		if o.want(t.name) {
			targets = append(targets, t)
		}
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("door: -systems names none of %s", strings.Join(doorTargetNames(), ", "))
	}
	rig, err := e.newDoorRig(ctx, targets)
	if err != nil {
		return nil, err
	}
	defer rig.close()
	for _, t := range rig.targets {
		for _, p := range protos {
			if why := t.why[p.name]; why != "" {
				r.Failf("%s: unavailable: %s", doorSystem(t.label, p.label), why)
			}
		}
	}
	for run := 1; run <= o.Runs; run++ {
		for _, p := range protos {
			got := map[string]LoadSummary{}
			for _, t := range rig.targets {
				if sum, ok := rig.measure(ctx, r, run, t, p, false); ok {
					got[t.label] = sum
				}
			}
			addDoorLatency(r, p.label, got)
		}
		for _, p := range protos {
			got := map[string]LoadSummary{}
			for _, t := range rig.targets {
				if sum, ok := rig.measure(ctx, r, run, t, p, true); ok {
					got[t.label] = sum
				}
			}
			addDoorSaturation(r, p.label, got)
		}
	}
	doorConclude(r, protos)
	r.Notes = append(doorNotes(rig), r.Notes...)
	return e.finish(ctx, r), nil
}

func doorTargetNames() []string {
	var n []string
	for _, t := range doorTargets {
		n = append(n, t.name)
	}
	return n
}

// doorCases are the protocols -cases asks for: HTTP and HTTPS by default.
func doorCases(cases []string) ([]doorProto, error) {
	if len(cases) == 0 {
		cases = []string{"http", "https"}
	}
	var out []doorProto
	for _, p := range doorProtos {
		if slices.Contains(cases, p.name) {
			out = append(out, p)
		}
	}
	for _, c := range cases {
		if !slices.ContainsFunc(doorProtos, func(p doorProto) bool { return p.name == c }) {
			return nil, fmt.Errorf("door: -cases are protocols, http https h2 (default \"http https\"), not %q", c)
		}
	}
	return out, nil
}

// doorRig is the door scenario's set-up: the namespace, the certificate, the upstream
// and the targets.
type doorRig struct {
	env            *Env
	ns             *netns
	nsErr          error // why the scenario runs in the harness's namespace
	dir            string
	cert, key      string
	loadgen        string
	procs          []*bgProc
	kamal          *kamalProxy
	kamalBuild     kamalProxyBuild
	targets        []*doorLive
	upstreamHTTP   string
	upstreamHTTPS  string
	upstreamBinary string
}

// newDoorRig builds the load generator and the upstream, and starts the upstream and
// each target that can run; a target that cannot is kept with why.
func (e *Env) newDoorRig(ctx context.Context, targets []doorTarget) (rig *doorRig, err error) {
	rig = &doorRig{env: e, dir: filepath.Join(e.Work, "door")}
	defer func() {
		if err != nil {
			rig.close()
		}
	}()
	if err := os.MkdirAll(rig.dir, 0o755); err != nil {
		return nil, err
	}
	if rig.loadgen, err = e.LoadgenBinary(ctx); err != nil {
		return nil, err
	}
	rig.upstreamBinary = filepath.Join(e.Work, "bin", "upstream")
	if _, err := e.Run(ctx, filepath.Join(e.Root, "bench", "loadgen"), nil, "go", "build", "-o", rig.upstreamBinary, "./upstream"); err != nil {
		return nil, fmt.Errorf("building bench/loadgen/upstream: %w", err)
	}
	if rig.cert, rig.key, err = writeSelfSigned(rig.dir); err != nil {
		return nil, err
	}
	if rig.ns, rig.nsErr = newNetns(ctx); rig.nsErr != nil {
		e.Log.Warn("no network namespace of its own: the scenario runs on the harness's loopback, kamal-proxy not at all", "err", rig.nsErr)
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	rig.upstreamHTTP, rig.upstreamHTTPS = fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	up, err := startProc(rig.ns, filepath.Join(rig.dir, "upstream.log"), nil, rig.upstreamBinary, "-listen", rig.upstreamHTTP,
		"-tls-listen", rig.upstreamHTTPS, "-cert", rig.cert, "-key", rig.key, "-size", strconv.Itoa(doorBody))
	if err != nil {
		return nil, err
	}
	rig.procs = append(rig.procs, up)
	if err := rig.waitServing(ctx, up, "http://"+rig.upstreamHTTP+"/", doorProtos[0], 10*time.Second); err != nil {
		return nil, fmt.Errorf("the upstream server: %w", err)
	}
	if err := rig.waitServing(ctx, up, "https://"+rig.upstreamHTTPS+"/", doorProtos[1], 10*time.Second); err != nil {
		return nil, fmt.Errorf("the upstream server over HTTPS: %w", err)
	}
	for _, t := range targets {
		live := &doorLive{doorTarget: t, urls: map[string]string{}, why: map[string]string{}}
		rig.targets = append(rig.targets, live)
		var err error
		switch t.name {
		case "direct":
			live.pid = up.pid()
			live.urls["http"] = "http://" + rig.upstreamHTTP + "/"
			live.urls["https"] = "https://" + rig.upstreamHTTPS + "/"
		case "kiln":
			err = rig.startKiln(ctx, live, ports[2], ports[3])
		case "kamal-proxy":
			err = rig.startKamal(ctx, live, ports[4], ports[5])
		}
		if err != nil {
			for _, p := range doorProtos {
				if live.why[p.name] == "" {
					live.why[p.name] = err.Error()
				}
			}
			clear(live.urls)
			continue
		}
		if u, ok := live.urls["https"]; ok {
			live.urls["h2"] = u
		} else {
			live.why["h2"] = live.why["https"]
		}
	}
	return rig, nil
}

// startKiln runs `kiln door --dir DIR` on the scenario's configuration; HTTPS is
// unavailable, with the client's error, when the door does not serve TLS on its TLS
// service's address.
func (rig *doorRig) startKiln(ctx context.Context, t *doorLive, port, tlsPort int) error {
	dir := filepath.Join(rig.dir, "kiln-door")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	listen, tlsListen := fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", tlsPort)
	cfg, err := doorConfig(listen, tlsListen, rig.upstreamHTTP, rig.cert, rig.key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o600); err != nil {
		return err
	}
	p, err := startProc(rig.ns, filepath.Join(rig.dir, "kiln-door.log"), nil, rig.env.Kiln, "door", "--dir", dir)
	if err != nil {
		return err
	}
	rig.procs = append(rig.procs, p)
	t.pid = p.pid()
	t.urls["http"] = "http://" + listen + "/"
	if err := rig.waitServing(ctx, p, t.urls["http"], doorProtos[0], 10*time.Second); err != nil {
		return fmt.Errorf("kiln door: %w", err)
	}
	// Both services are applied at once: HTTP answering, HTTPS should too.
	if err := rig.waitServing(ctx, p, "https://"+tlsListen+"/", doorProtos[1], time.Second); err != nil {
		t.why["https"] = fmt.Sprintf("kiln door does not serve its TLS service (`\"tls\": {\"cert_file\", \"key_file\"}` on %s) over HTTPS: %v", tlsListen, err)
		return nil
	}
	t.urls["https"] = "https://" + tlsListen + "/"
	return nil
}

// startKamal runs kamal-proxy, if there is a binary and a namespace of the scenario's
// own: kamal-proxy listens on every interface (it has no flag to bind one), and the
// namespace has nothing but loopback.
func (rig *doorRig) startKamal(ctx context.Context, t *doorLive, port, tlsPort int) error {
	b, err := findKamalProxy()
	if err != nil {
		return err
	}
	rig.kamalBuild = b
	if rig.ns == nil {
		return fmt.Errorf("kamal-proxy listens on every interface (it has no flag to bind one), so the scenario runs it only in a network namespace of its own with nothing but loopback, which it could not make: %v", rig.nsErr)
	}
	k, err := startKamalProxy(ctx, rig.ns, b, filepath.Join(rig.dir, "kamal-proxy"), port, tlsPort, rig.upstreamHTTP, rig.cert, rig.key)
	if err != nil {
		return err
	}
	rig.kamal = k
	rig.procs = append(rig.procs, k.proc)
	t.pid = k.proc.pid()
	t.urls["http"] = fmt.Sprintf("http://127.0.0.1:%d/", port)
	t.urls["https"] = fmt.Sprintf("https://127.0.0.1:%d/", tlsPort)
	for _, p := range doorProtos[:2] {
		if err := rig.waitServing(ctx, k.proc, t.urls[p.name], p, 10*time.Second); err != nil {
			return fmt.Errorf("kamal-proxy over %s: %w", p.label, err)
		}
	}
	return nil
}

// waitServing waits (up to timeout) until a short load of url over p all succeeds.
func (rig *doorRig) waitServing(ctx context.Context, p *bgProc, url string, proto doorProto, timeout time.Duration) error {
	return waitFor(ctx, timeout, 100*time.Millisecond, url+" answering", func() (bool, error) {
		if why := p.exited(); why != "" {
			return false, errors.New(why)
		}
		s, err := rig.load(ctx, url, proto, "-rate", "50", "-duration", "200ms")
		if err != nil {
			return false, err
		}
		if s.Sent == 0 || s.Failed > 0 {
			return false, errors.New(loadFailures(s))
		}
		return true, nil
	})
}

// loadFailures says what failed in a load.
func loadFailures(s LoadSummary) string {
	var samples []string
	for _, k := range slices.Sorted(maps.Keys(s.ErrorSamples)) {
		samples = append(samples, fmt.Sprintf("%d× %s", s.ErrorSamples[k], k))
	}
	return fmt.Sprintf("%d failed of %d: %s", s.Failed, s.Sent, strings.Join(samples, "; "))
}

// load runs bench/loadgen in the namespace against url over p with args, and returns
// its summary.
func (rig *doorRig) load(ctx context.Context, url string, p doorProto, args ...string) (LoadSummary, error) {
	f, err := os.CreateTemp(rig.dir, "load-*.json")
	if err != nil {
		return LoadSummary{}, err
	}
	f.Close()
	defer os.Remove(f.Name())
	args = append([]string{"-url", url, "-json", f.Name()}, args...)
	if p.https {
		args = append(args, "-ca", rig.cert, "-host", doorHost)
	}
	if p.h2 {
		args = append(args, "-h2")
	}
	cmd := rig.ns.command(ctx, rig.loadgen, args...)
	cmd.Dir = rig.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return LoadSummary{}, fmt.Errorf("bench/loadgen %s: %w: %s", strings.Join(args, " "), err, tail(string(out), 300))
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return LoadSummary{}, err
	}
	return parseLoadSummary(b)
}

// measure runs one load of t over p, the latency part's or (saturation) the closed
// loop's, and records it; false when t is unavailable over p or the load failed.
func (rig *doorRig) measure(ctx context.Context, r *Result, run int, t *doorLive, p doorProto, saturation bool) (LoadSummary, bool) {
	url, ok := t.urls[p.name]
	if !ok {
		return LoadSummary{}, false
	}
	sys := doorSystem(t.label, p.label)
	args, untimed := []string{"-rate", strconv.Itoa(doorRate), "-duration", doorRun.String(), "-warmup", strconv.Itoa(doorWarmup)}, doorWarmup
	if saturation {
		args, untimed = []string{"-conns", strconv.Itoa(doorConns), "-duration", doorSatRun.String()}, doorConns
	}
	// The target's CPU over the whole load, its untimed requests included: per request
	// it is counted over all of them, as a share of a core over the load's wall time.
	c0, cerr := cpuTicks(t.pid)
	t0 := time.Now()
	sum, err := rig.load(ctx, url, p, args...)
	wall := time.Since(t0)
	c1, cerr1 := cpuTicks(t.pid)
	if rig.kamal != nil {
		rig.kamal.truncateLog()
	}
	if err != nil {
		r.Failf("%s run %d (%s): %v", sys, run, map[bool]string{false: "latency", true: "saturation"}[saturation], err)
		return LoadSummary{}, false
	}
	want := "HTTP/1.1"
	if p.h2 {
		want = "HTTP/2.0"
	}
	if sum.Protocols[want] != sum.OK {
		r.Failf("%s run %d: %d of %d answers over %s (%v)", sys, run, sum.Protocols[want], sum.OK, want, sum.Protocols)
		return LoadSummary{}, false
	}
	cpu := float64(c1-c0) / clockTicks // seconds
	haveCPU := cerr == nil && cerr1 == nil
	// The load's own clock: its timed run, without its start and warm-up.
	secs := sum.Seconds
	if secs <= 0 {
		secs = wall.Seconds()
	}
	if saturation {
		r.Add(sys, satThroughput, "req/s", float64(sum.OK)/secs)
		r.Add(sys, satFailed, "", float64(sum.Failed))
		r.Add(sys, satP50, "ms", sum.Service.P50)
		r.Add(sys, satP99, "ms", sum.Service.P99)
		if haveCPU && sum.OK > 0 {
			r.Add(sys, satCPU, "%", percent(c1-c0, wall))
			r.Add(sys, satCPUPerReq, "µs", cpu/float64(sum.Sent+untimed)*1e6)
		}
		rig.env.Log.Info("saturation", "target", sys, "run", run, "req_per_s", float64(sum.OK)/secs, "failed", sum.Failed)
	} else {
		r.Add(sys, "p50 latency", "ms", sum.Service.P50)
		r.Add(sys, "p99 latency", "ms", sum.Service.P99)
		r.Add(sys, "p50 from schedule", "ms", sum.Latency.P50)
		r.Add(sys, "p99 from schedule", "ms", sum.Latency.P99)
		r.Add(sys, "failed requests", "", float64(sum.Failed))
		r.Add(sys, "requests sent", "", float64(sum.Sent))
		r.Add(sys, doorDials, "", float64(sum.Dials))
		if haveCPU {
			r.Add(sys, doorCPU, "%", percent(c1-c0, wall))
		}
		rig.env.Log.Info("latency", "target", sys, "run", run, "p50_ms", sum.Service.P50, "p99_ms", sum.Service.P99, "failed", sum.Failed)
	}
	if sum.Failed > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%s run %d (%s): %s", sys, run, map[bool]string{false: "latency", true: "saturation"}[saturation], loadFailures(sum)))
	}
	return sum, true
}

// addDoorLatency records, for each front door measured in got (by target label) over
// proto, what it added to one server directly in the same run: its percentiles less
// the direct ones.
func addDoorLatency(r *Result, proto string, got map[string]LoadSummary) {
	kiln, ok1 := got[doorTargets[1].label]
	kamal, ok2 := got[doorTargets[2].label]
	if ok1 && ok2 {
		// The two front doors run by run: the drift of the machine between runs cancels.
		d := doorPaired(proto)
		r.Add(d, "p50 latency", "ms", kiln.Service.P50-kamal.Service.P50)
		r.Add(d, "p99 latency", "ms", kiln.Service.P99-kamal.Service.P99)
		r.Add(d, "p50 from schedule", "ms", kiln.Latency.P50-kamal.Latency.P50)
		r.Add(d, "p99 from schedule", "ms", kiln.Latency.P99-kamal.Latency.P99)
	}
	direct, ok := got[latencyDirect]
	if !ok {
		return
	}
	for _, t := range doorTargets {
		s, ok := got[t.label]
		if !ok || t.label == latencyDirect {
			continue
		}
		a := doorAdded(t.label, proto)
		r.Add(a, "p50 latency", "ms", s.Service.P50-direct.Service.P50)
		r.Add(a, "p99 latency", "ms", s.Service.P99-direct.Service.P99)
		r.Add(a, "p50 from schedule", "ms", s.Latency.P50-direct.Latency.P50)
		r.Add(a, "p99 from schedule", "ms", s.Latency.P99-direct.Latency.P99)
	}
}

// addDoorSaturation records, when both front doors' saturation loads of a run over
// proto are in got, kamal-proxy's throughput over kiln's in that run.
func addDoorSaturation(r *Result, proto string, got map[string]LoadSummary) {
	kiln, ok1 := got[doorTargets[1].label]
	kamal, ok2 := got[doorTargets[2].label]
	if ok1 && ok2 && kiln.OK > 0 && kiln.Seconds > 0 && kamal.Seconds > 0 {
		r.Add(doorPairedRatio(proto), satThroughput, "×", (float64(kamal.OK)/kamal.Seconds)/(float64(kiln.OK)/kiln.Seconds))
	}
}

// doorPaired names the series of kiln's door less kamal-proxy, run by run, and
// doorPairedRatio that of kamal-proxy's throughput over kiln's.
func doorPaired(proto string) string      { return "kiln door − kamal-proxy, run by run, " + proto }
func doorPairedRatio(proto string) string { return "kamal-proxy / kiln door, run by run, " + proto }

// doorConclude adds the door scenario's ratios, goals and tables from the medians of
// its series. A goal whose figures are missing (a target unavailable) is not
// evaluated, and a note says so.
func doorConclude(r *Result, protos []doorProto) {
	kiln, kamal := doorTargets[1].label, doorTargets[2].label
	var notEvaluated []string
	goal := func(name string, v float64, ok bool, unit string, bound float64, boundOK bool) {
		if !ok || !boundOK {
			notEvaluated = append(notEvaluated, name)
			return
		}
		r.AddGoal(name, v, unit, bound, true)
	}
	for _, p := range protos {
		for _, t := range doorTargets[1:] {
			r.AddRatio(fmt.Sprintf("%s / one server directly, throughput, %s", t.label, p.label), doorSystem(t.label, p.label), doorSystem(latencyDirect, p.label), satThroughput)
		}
		if p.h2 {
			continue // the goals are over HTTP/1.1
		}
		for _, m := range []string{"p50 latency", "p99 latency"} {
			k, ok1 := r.Median(doorAdded(kiln, p.label), m)
			c, ok2 := r.Median(doorAdded(kamal, p.label), m)
			goal(fmt.Sprintf("kiln's door adds less than kamal-proxy at %s, %s (bound: kamal-proxy's)", strings.TrimSuffix(m, " latency"), p.label), k, ok1, "ms", c, ok2)
		}
		ratio, ok := r.AddRatio(fmt.Sprintf("kamal-proxy / kiln door, throughput, %s", p.label), doorSystem(kamal, p.label), doorSystem(kiln, p.label), satThroughput)
		goal(fmt.Sprintf("kiln's door saturates higher than kamal-proxy, %s (kamal-proxy's throughput / kiln's)", p.label), ratio, ok, "×", 1, true)
	}
	if slices.ContainsFunc(protos, func(p doorProto) bool { return p.name == "http" }) {
		v, ok := r.Median(doorAdded(kiln, "HTTP"), "p99 latency")
		goal(fmt.Sprintf("kiln's door adds < 1 ms at p99, %d requests/s, HTTP", doorRate), v, ok, "ms", 1, true)
	}
	if len(notEvaluated) > 0 {
		r.Notes = append(r.Notes, "Goals not evaluated, for want of figures (see the failed runs): "+strings.Join(notEvaluated, "; ")+".")
	}
	var added, all, sat []string
	for _, p := range protos {
		for _, t := range doorTargets {
			all = append(all, doorSystem(t.label, p.label))
			if t.label != latencyDirect {
				added = append(added, doorAdded(t.label, p.label))
			}
		}
		added = append(added, doorPaired(p.label))
	}
	sat = slices.Clone(all)
	for _, p := range protos {
		sat = append(sat, doorPairedRatio(p.label))
	}
	r.AddTable(Table{Title: fmt.Sprintf("Latency added by the front door at %d requests/s", doorRate),
		Note:    "Milliseconds: the front door's percentile less one server's directly, run by run, over the same protocol (HTTPS: the server's own TLS); *kiln door − kamal-proxy, run by run*: kiln's percentile less kamal-proxy's of the same run (negative: kiln's door adds less).",
		Systems: added, Metrics: []string{"p50 latency", "p99 latency", "p50 from schedule", "p99 from schedule"}})
	r.AddTable(Table{Title: fmt.Sprintf("Saturation: %d keep-alive connections, closed loop, %s", doorConns, doorSatRun),
		Note:    "Answers a second; latency from each request's send; CPU of the target's process (the proxy's, or the server's for one server directly) over the load, % of one core and per request sent; *kamal-proxy / kiln door, run by run*: the two throughputs of the same run, divided (below 1: kiln's door is the faster).",
		Systems: sat, Metrics: satMetrics})
	r.AddTable(Table{Title: fmt.Sprintf("Latency at %d requests/s", doorRate), Note: "Milliseconds; CPU of the target's process, % of one core.",
		Systems: all, Metrics: append(slices.Clone(latencyMetrics), doorDials, doorCPU)})
}

// doorNotes say how the door scenario measured.
func doorNotes(rig *doorRig) []string {
	where := "All processes (the upstream, kiln's door, kamal-proxy and bench/loadgen) run in one network namespace of the harness's own (`unshare --net`, entered with `nsenter`), with nothing but its loopback, 127.0.0.1."
	if rig.ns == nil {
		where = fmt.Sprintf("No network namespace could be made (%v): the upstream, kiln's door and bench/loadgen run on the machine's loopback, 127.0.0.1; kamal-proxy, which listens on every interface, not at all.", rig.nsErr)
	}
	kamal := "kamal-proxy: not run (see the failed runs)."
	if rig.kamalBuild.Module != "" {
		kamal = "kamal-proxy: " + rig.kamalBuild.String() + "."
	}
	return []string{
		where,
		fmt.Sprintf("Upstream: one process (bench/loadgen/upstream, Go's net/http, as examples/hello) answering GET / with %d bytes (the example's greeting, version and server lines, padded) and /up and /healthz with 200; over HTTP, and over HTTPS on a second port for *one server directly* over HTTPS (HTTP/1.1 and h2 offered). Both front doors forward to its HTTP port.", doorBody),
		"kiln's door: `kiln door --dir DIR` of the measured kiln (built from the work tree), standalone, serving DIR/config.json (internal/door's format): service `web` (HTTP, any host) and `web-tls` (host localhost, `\"tls\": {\"cert_file\", \"key_file\"}`) on two ports, one upstream each, health-checked with GET /up every 1s; no access log (kiln's default).",
		"kamal-proxy: `kamal-proxy run --http-port P --https-port Q` (its state and control socket under the run's scratch directory: HOME and KAMAL_PROXY_SOCKET), then `kamal-proxy deploy web --target UPSTREAM` (any host) and `kamal-proxy deploy web-tls --target UPSTREAM --host localhost --tls --tls-certificate-path … --tls-private-key-path …`, each with what Kamal adds when an app's proxy settings are left at their defaults: `" + strings.Join(kamalDeployFlags, " ") + "`. It logs a JSON line per request to its standard output, as it does by default (in production Docker captures it), here into a file emptied after each load.",
		kamal,
		("TLS: a self-signed ECDSA P-256 certificate for localhost and 127.0.0.1, made by the harness, trusted by the load generator (`-ca`), which sends `Host: localhost` and that server name; TLS 1.3 as Go negotiates it; HTTP/1.1 unless the protocol is `HTTPS h2`. HTTP is sent to 127.0.0.1:PORT, which both front doors route to their any-host service."),
		fmt.Sprintf("Latency: bench/loadgen, %d requests/s open loop for %s after %d untimed requests (one at a time, on one connection), keep-alive (a request due while every open connection is busy opens another: *connections opened*, with a TLS handshake over HTTPS); *p50/p99 latency* from each request's send, *from schedule* from its scheduled time (as wrk2 counts, so including the generator's own lateness, the same for every target). *added by …*: the front door's percentile less one server's directly, run by run, over the same protocol.", doorRate, doorRun, doorWarmup),
		fmt.Sprintf("Saturation: bench/loadgen closed loop, %d keep-alive connections (each opened by one untimed request) each sending its next request as soon as the previous one was answered, for %s; *throughput* is answers (2xx) a second. The load generator, the upstream and the front door share the machine's cores, so this is the throughput of the whole on this machine, not of the front door alone: compare the targets with each other, and see the CPU the front door's process used per request.", doorConns, doorSatRun),
		"Order: each run measures the latency of every target over HTTP, then over HTTPS, then the saturation of every target over HTTP, then over HTTPS (direct, kiln, kamal-proxy, always in that order), so that the machine's drift over the runs falls on all alike; the medians are over the runs.",
		"The machine is shared with other engineers running tests (see the load average in Setup): p99 figures are noisy; compare medians of the same run.",
	}
}

// freePorts returns n distinct loopback ports nobody listens on now.
func freePorts(n int) ([]int, error) {
	var ports []int
	for len(ports) < n {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		if !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

func (rig *doorRig) close() {
	for i := len(rig.procs) - 1; i >= 0; i-- {
		rig.procs[i].stop()
	}
	rig.procs = nil
	rig.ns.close()
}
