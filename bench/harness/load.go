package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Loader sends GETs to a URL open-loop at a fixed rate (a request goes at its time
// whatever happened to earlier ones) and counts the answers, as bench/loadgen does.
type Loader struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{}

	mu     sync.Mutex
	counts LoadCounts
}

// LoadCounts are a Loader's requests: a failure is a transport error or an answer
// outside 2xx.
type LoadCounts struct {
	Sent, Errors, Non2xx int
	// Samples are the first few failures, to say what went wrong.
	Samples []string
}

// Failed is Errors + Non2xx.
func (c LoadCounts) Failed() int { return c.Errors + c.Non2xx }

// StartLoad starts sending rate requests a second to url until Stop.
func StartLoad(ctx context.Context, url string, rate int) *Loader {
	ctx, cancel := context.WithCancel(ctx)
	l := &Loader{cancel: cancel, done: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				l.one(context.WithoutCancel(ctx), client, url)
			}()
		}
	}()
	return l
}

func (l *Loader) one(ctx context.Context, c *http.Client, url string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	var fail string
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			fail = fmt.Sprintf("status %d", resp.StatusCode)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts.Sent++
	switch {
	case err != nil:
		l.counts.Errors++
		fail = err.Error()
	case fail != "":
		l.counts.Non2xx++
	}
	if fail != "" && len(l.counts.Samples) < 5 {
		l.counts.Samples = append(l.counts.Samples, fail)
	}
}

// Stop stops sending, waits for the requests in flight and returns the counts.
func (l *Loader) Stop() LoadCounts {
	l.cancel()
	<-l.done
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts
}

func fields(s string) []string { return strings.Fields(s) }

func splitLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func cut(s, sep string) (string, string, bool) { return strings.Cut(s, sep) }

// LoadSummary is what bench/loadgen reports in its -json file (its summary type):
// counts, latency percentiles, a few error samples, and for each version and server
// named in the answers when they answered first and last.
type LoadSummary struct {
	Sent   int `json:"sent"`
	OK     int `json:"ok"`
	Failed int `json:"failed"`
	Errors int `json:"errors"`  // transport errors
	Non2xx int `json:"non_2xx"` // answers outside 2xx
	// Seconds is how long the timed run sent (without the warm-up); Conns, for a
	// closed-loop run, its connections; Dials, the connections it opened; Protocols
	// counts the answers by protocol ("HTTP/1.1", "HTTP/2.0").
	Seconds   float64        `json:"seconds"`
	Conns     int            `json:"conns,omitempty"`
	Dials     int            `json:"dials"` // connections opened during the timed run
	Protocols map[string]int `json:"protocols,omitempty"`
	// ErrorSamples counts the failures by message.
	ErrorSamples map[string]int `json:"error_samples,omitempty"`
	// FailureTimes are the arrival times of the first 100 failures, in Unix ns.
	FailureTimes []int64 `json:"failure_unix_ns,omitempty"`
	// Latency is counted from each request's scheduled time (wrk2's way, so it
	// includes the generator's own lateness), Service from its actual send.
	Latency     LoadLatency             `json:"latency"`
	Service     LoadLatency             `json:"service_latency"`
	SendLateP99 float64                 `json:"send_late_p99_ms"`
	Versions    map[string]*VersionSpan `json:"versions,omitempty"`
}

// LoadLatency are percentiles of successful requests, in ms.
type LoadLatency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}

// VersionSpan is when the answers naming one version ("version: X") arrived, and
// those of each server of it ("server: X").
type VersionSpan struct {
	Count     int                    `json:"count"`
	FirstUnix int64                  `json:"first_unix_ns"`
	LastUnix  int64                  `json:"last_unix_ns"`
	Servers   map[string]*ServerSpan `json:"servers"`
}

// ServerSpan is when one server's answers arrived.
type ServerSpan struct {
	Count     int   `json:"count"`
	FirstUnix int64 `json:"first_unix_ns"`
	LastUnix  int64 `json:"last_unix_ns"`
}

// parseLoadSummary reads bench/loadgen's -json file.
func parseLoadSummary(b []byte) (LoadSummary, error) {
	var s LoadSummary
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("reading bench/loadgen's summary: %w", err)
	}
	if s.Sent != s.OK+s.Failed || s.Failed != s.Errors+s.Non2xx {
		return s, fmt.Errorf("bench/loadgen's summary does not add up: %d sent, %d ok, %d failed (%d errors + %d non-2xx)", s.Sent, s.OK, s.Failed, s.Errors, s.Non2xx)
	}
	return s, nil
}

// ClientView is a rollout as the load generator saw it, in seconds after the update
// was issued: when the last of the new version's servers answered its first request,
// and when the old version answered last. A field is NaN when it did not happen (fewer
// than n servers of the new version answered; the old version never answered).
type ClientView struct {
	NewOnAll, OldLast float64
}

// clientView reads a rollout from version from to version to of n servers out of s.
func clientView(s LoadSummary, from, to string, n int, t0 time.Time) ClientView {
	v := ClientView{NewOnAll: math.NaN(), OldLast: math.NaN()}
	rel := func(ns int64) float64 { return time.Unix(0, ns).Sub(t0).Seconds() }
	if nv := s.Versions[to]; nv != nil && len(nv.Servers) >= n {
		var firsts []int64
		for _, sv := range nv.Servers {
			firsts = append(firsts, sv.FirstUnix)
		}
		slices.Sort(firsts)
		v.NewOnAll = rel(firsts[n-1])
	}
	if ov := s.Versions[from]; ov != nil {
		v.OldLast = rel(ov.LastUnix)
	}
	return v
}

// settledOn reports whether a short burst of requests all succeeded and reached n
// distinct servers of one version: the previous rollout is over, from the client's
// side.
func settledOn(s LoadSummary, n int) bool {
	if s.Sent == 0 || s.Failed > 0 || len(s.Versions) != 1 {
		return false
	}
	for _, v := range s.Versions {
		return len(v.Servers) == n
	}
	return false
}

// failureNote says what failed in a load: the error samples and when the failures
// arrived, in seconds after t0.
func failureNote(s LoadSummary, t0 time.Time) string {
	var samples []string
	for _, k := range slices.Sorted(maps.Keys(s.ErrorSamples)) {
		samples = append(samples, fmt.Sprintf("%d× %s", s.ErrorSamples[k], k))
	}
	var at []string
	for _, t := range s.FailureTimes {
		at = append(at, strconv.FormatFloat(time.Unix(0, t).Sub(t0).Seconds(), 'f', 3, 64))
	}
	return fmt.Sprintf("%d failed of %d (%d transport errors + %d non-2xx): %s; at (s after the update was issued) %s",
		s.Failed, s.Sent, s.Errors, s.Non2xx, strings.Join(samples, "; "), strings.Join(at, ", "))
}

// Loadgen is a running bench/loadgen: requests sent open-loop at a fixed rate until
// Stop.
type Loadgen struct {
	cmd    *exec.Cmd
	json   string
	stderr bytes.Buffer
	done   chan error
}

// LoadgenBinary builds bench/loadgen (a module of its own) into the scratch
// directory, once, and returns its path.
func (e *Env) LoadgenBinary(ctx context.Context) (string, error) {
	bin := filepath.Join(e.Work, "bin", "loadgen")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if _, err := e.Run(ctx, filepath.Join(e.Root, "bench", "loadgen"), nil, "go", "build", "-o", bin, "."); err != nil {
		return "", fmt.Errorf("building bench/loadgen: %w", err)
	}
	return bin, nil
}

// StartLoadgen starts bench/loadgen against url at rate requests a second, after
// warmup untimed requests, and returns once its timed run has started.
func (e *Env) StartLoadgen(ctx context.Context, url string, rate, warmup int) (*Loadgen, error) {
	bin, err := e.LoadgenBinary(ctx)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(e.Work, "load-*.json")
	if err != nil {
		return nil, err
	}
	f.Close()
	ready := f.Name() + ".ready"
	l := &Loadgen{json: f.Name(), done: make(chan error, 1)}
	l.cmd = exec.Command(bin, "-url", url, "-rate", strconv.Itoa(rate), "-duration", "1h", "-warmup", strconv.Itoa(warmup),
		"-ready-file", ready, "-json", l.json)
	l.cmd.Stderr = &l.stderr
	if err := l.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting bench/loadgen: %w", err)
	}
	go func() { l.done <- l.cmd.Wait() }()
	err = waitFor(ctx, 30*time.Second, 20*time.Millisecond, "bench/loadgen's warm-up", func() (bool, error) {
		select {
		case err := <-l.done:
			l.done <- err
			return false, fmt.Errorf("bench/loadgen exited: %v: %s", err, tail(l.stderr.String(), 300))
		default:
		}
		_, err := os.Stat(ready)
		return err == nil, err
	})
	if err != nil {
		l.cmd.Process.Kill()
		<-l.done
		return nil, err
	}
	return l, nil
}

// Stop stops sending (SIGINT), waits for the requests in flight and returns the
// summary.
func (l *Loadgen) Stop() (LoadSummary, error) {
	l.cmd.Process.Signal(os.Interrupt)
	if err := <-l.done; err != nil {
		return LoadSummary{}, fmt.Errorf("bench/loadgen: %w: %s", err, tail(l.stderr.String(), 300))
	}
	b, err := os.ReadFile(l.json)
	if err != nil {
		return LoadSummary{}, err
	}
	os.Remove(l.json)
	return parseLoadSummary(b)
}

// RunLoadgen runs bench/loadgen against url at rate requests a second for d, after
// warmup untimed requests, and returns its summary.
func (e *Env) RunLoadgen(ctx context.Context, url string, rate int, d time.Duration, warmup int) (LoadSummary, error) {
	bin, err := e.LoadgenBinary(ctx)
	if err != nil {
		return LoadSummary{}, err
	}
	f, err := os.CreateTemp(e.Work, "load-*.json")
	if err != nil {
		return LoadSummary{}, err
	}
	f.Close()
	defer os.Remove(f.Name())
	if _, err := e.Run(ctx, e.Work, nil, bin, "-url", url, "-rate", strconv.Itoa(rate), "-duration", d.String(),
		"-warmup", strconv.Itoa(warmup), "-json", f.Name()); err != nil {
		return LoadSummary{}, err
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return LoadSummary{}, err
	}
	return parseLoadSummary(b)
}

// settle waits (up to a minute) until a one-second burst of 200 requests to url all
// succeed and reach n servers of one version.
func (e *Env) settle(ctx context.Context, url string, n int) error {
	return waitFor(ctx, time.Minute, time.Second, fmt.Sprintf("%s answering from %d servers of one version", url, n), func() (bool, error) {
		s, err := e.RunLoadgen(ctx, url, 200, time.Second, 0)
		if err != nil {
			return false, err
		}
		if !settledOn(s, n) {
			return false, fmt.Errorf("%d failed of %d, %d versions", s.Failed, s.Sent, len(s.Versions))
		}
		return true, nil
	})
}
