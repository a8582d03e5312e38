// Command loadgen is the fixed-rate HTTP load generator of kiln-bench (its rollout and
// python scenarios).
//
// It sends GET requests to one URL at a fixed rate (open loop, as wrk2 does: a
// request is sent at its scheduled time whether or not earlier ones have been
// answered), until -duration has passed or it receives SIGINT/SIGTERM, then
// waits for the requests in flight and prints a summary on stdout as "key value"
// lines (and, with -json FILE, as JSON).
//
// Latency is measured from the request's scheduled send time, so a stalled
// generator or server cannot hide queueing delay (no coordinated omission); the
// summary also reports the lateness of the sends themselves, to tell a slow
// generator from a slow server.
//
// A request fails when it gets a transport error or a status outside 2xx (redirects
// are not followed). The
// summary counts both, keeps a few samples of each kind of error, and records,
// for every "version: X" line found in response bodies (the example service
// prints its version), when the first and the last response of that version
// arrived, and the same for every server ("server: X" line) of each version:
// kiln-bench uses this to see when the traffic moved to the new version.
//
// With -conns N it runs closed loop instead, to find a target's saturation
// throughput: N keep-alive connections, each sending its next request as soon as the
// previous one was answered; latency is then counted from each request's send.
//
// HTTPS targets are verified: -ca names the PEM certificates to trust (the system's
// otherwise) and -host the name sent as Host and TLS server name. Requests go over
// HTTP/1.1 unless -h2 asks for HTTP/2; the summary counts the protocols answered.
//
// The generator only ever targets the URL it is given; kiln-bench passes
// loopback addresses only.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type result struct {
	sched   time.Time     // when the request was due
	lat     time.Duration // from sched to the end of the body (or the error)
	svc     time.Duration // from the actual send to the end of the body
	late    time.Duration // how late the send was
	status  int
	err     string
	version string
	server  string
	proto   string // of the response, "HTTP/1.1" or "HTTP/2.0"
}

type versionSpan struct {
	Count     int                    `json:"count"`
	FirstUnix int64                  `json:"first_unix_ns"` // arrival of the first response of this version
	LastUnix  int64                  `json:"last_unix_ns"`  // arrival of the last one
	Servers   map[string]*serverSpan `json:"servers"`       // by the "server: X" line of the body
}

type serverSpan struct {
	Count     int   `json:"count"`
	FirstUnix int64 `json:"first_unix_ns"`
	LastUnix  int64 `json:"last_unix_ns"`
}

type latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

type summary struct {
	URL          string                  `json:"url"`
	Rate         float64                 `json:"rate"`            // open loop; 0 in closed loop
	Conns        int                     `json:"conns,omitempty"` // closed loop: the connections
	Dials        int64                   `json:"dials"`           // connections opened during the timed run
	Protocols    map[string]int          `json:"protocols,omitempty"`
	StartUnix    int64                   `json:"start_unix_ns"`
	EndUnix      int64                   `json:"end_unix_ns"`
	Seconds      float64                 `json:"seconds"`
	Sent         int                     `json:"sent"`
	OK           int                     `json:"ok"`
	Failed       int                     `json:"failed"`
	Errors       int                     `json:"errors"`   // transport errors (no response)
	Non2xx       int                     `json:"non_2xx"`  // responses outside 2xx
	Statuses     map[string]int          `json:"statuses"` // by status code, "error" for none
	ErrorSamples map[string]int          `json:"error_samples,omitempty"`
	FailureTimes []int64                 `json:"failure_unix_ns,omitempty"` // up to 100
	Latency      latency                 `json:"latency"`                   // from the scheduled time, successful requests
	Service      latency                 `json:"service_latency"`           // from the actual send, successful requests
	SendLateP99  float64                 `json:"send_late_p99_ms"`
	SendLateMax  float64                 `json:"send_late_max_ms"`
	Versions     map[string]*versionSpan `json:"versions,omitempty"`
}

func main() {
	var (
		url      = flag.String("url", "", "the URL to GET (required)")
		rate     = flag.Float64("rate", 1000, "requests per second")
		duration = flag.Duration("duration", 10*time.Second, "how long to send; SIGINT or SIGTERM stops earlier")
		timeout  = flag.Duration("timeout", 10*time.Second, "per-request timeout (counts as an error)")
		conns    = flag.Int("max-idle", 512, "idle keep-alive connections kept to the target")
		warmup   = flag.Int("warmup", 0, "untimed requests sent (one at a time) before the run, to open connections")
		readyF   = flag.String("ready-file", "", "if set, written once the warm-up is done and the timed run starts")
		jsonF    = flag.String("json", "", "also write the summary as JSON to this file")
		closed   = flag.Int("conns", 0, "if set, run closed loop on this many connections (each sends its next request once answered) instead of at -rate")
		caF      = flag.String("ca", "", "PEM file of the certificates to trust for HTTPS (the system's if empty)")
		host     = flag.String("host", "", "Host header and TLS server name to send (the URL's if empty)")
		h2       = flag.Bool("h2", false, "HTTP/2 over TLS (HTTP/1.1 otherwise)")
	)
	flag.Parse()
	if *url == "" || (*rate <= 0 && *closed <= 0) || *closed < 0 {
		fmt.Fprintln(os.Stderr, "loadgen: -url is required and -rate (or -conns) must be positive")
		os.Exit(2)
	}
	tlsConf, err := clientTLS(*caF, *host)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	target := request{url: *url, host: *host}
	var dials atomic.Int64
	dialer := &net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return dialer.DialContext(ctx, network, addr)
	}
	newClient := func(idle int) *http.Client {
		tr := &http.Transport{
			Proxy:               nil,
			DialContext:         dial,
			MaxIdleConns:        idle,
			MaxIdleConnsPerHost: idle,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			TLSClientConfig:     tlsConf.Clone(),
			ForceAttemptHTTP2:   *h2,
		}
		if !*h2 {
			// A non-nil empty map keeps HTTP/2 off even where the server offers it.
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		// A redirect is an answer like any other (outside 2xx), never followed.
		noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		return &http.Client{Transport: tr, Timeout: *timeout, CheckRedirect: noRedirect}
	}
	client := newClient(*conns)

	for i := 0; i < *warmup; i++ {
		if res, err := target.get(client); err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()

	results := make(chan result, 4096)
	var all []result
	collected := make(chan struct{})
	go func() {
		for r := range results {
			all = append(all, r)
		}
		close(collected)
	}()

	var start, end time.Time
	var dialed int64 // before the timed run
	started := func() {
		dialed = dials.Load()
		if *readyF != "" {
			os.WriteFile(*readyF, []byte("ready\n"), 0o644)
		}
	}
	if *closed > 0 {
		start, end = closedLoop(ctx, *closed, newClient, target, started, results)
		*rate = 0
	} else {
		start, end = openLoop(ctx, *rate, client, target, started, results)
	}
	close(results)
	<-collected

	s := summarize(all, *url, *rate, start, end)
	s.Conns = *closed
	s.Dials = dials.Load() - dialed
	if *jsonF != "" {
		b, _ := json.MarshalIndent(s, "", "  ")
		if err := os.WriteFile(*jsonF, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
	}
	s.printKV(os.Stdout)
}

// openLoop calls started, then sends a request every 1/rate s until ctx ends, whatever happened to the
// earlier ones, waits for those in flight, and returns when it started and stopped
// sending.
func openLoop(ctx context.Context, rate float64, client *http.Client, target request, started func(), results chan<- result) (start, end time.Time) {
	interval := time.Duration(float64(time.Second) / rate)
	started()
	start = time.Now()
	var wg sync.WaitGroup
	timer := time.NewTimer(0)
	defer timer.Stop()
loop:
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				break loop
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- do(client, target, due)
		}()
	}
	end = time.Now()
	wg.Wait()
	return start, end
}

// closedLoop runs n workers, each with a client of its own and so one keep-alive
// connection, opened by one untimed request before started is called; each sends its next
// request as soon as the previous one was answered, until ctx ends. A request's
// scheduled time is its send.
func closedLoop(ctx context.Context, n int, newClient func(idle int) *http.Client, target request, started func(), results chan<- result) (start, end time.Time) {
	clients := make([]*http.Client, n)
	var wg sync.WaitGroup
	for i := range clients {
		clients[i] = newClient(1)
		clients[i].Transport.(*http.Transport).MaxConnsPerHost = 1
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res, err := target.get(clients[i]); err == nil {
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		}()
	}
	wg.Wait()
	started()
	start = time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				results <- do(c, target, time.Now())
			}
		}()
	}
	<-ctx.Done()
	end = time.Now()
	wg.Wait()
	return start, end
}

// request is what every request of a run asks for: the URL, and the Host to send.
type request struct{ url, host string }

func (q request) get(c *http.Client) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, q.url, nil)
	if err != nil {
		return nil, err
	}
	if q.host != "" {
		req.Host = q.host
	}
	return c.Do(req)
}

// clientTLS is the TLS of the requests: the certificates of caFile trusted (the
// system's when empty), serverName sent and verified (the URL's host when empty).
func clientTLS(caFile, serverName string) (*tls.Config, error) {
	c := &tls.Config{ServerName: serverName}
	if caFile == "" {
		return c, nil
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("-ca: %w", err)
	}
	c.RootCAs = x509.NewCertPool()
	if !c.RootCAs.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("-ca: %s holds no PEM certificate", caFile)
	}
	return c, nil
}

// printKV prints the summary as "key value" lines, for shell scripts.
func (s summary) printKV(w io.Writer) {
	p := func(k string, v any) { fmt.Fprintf(w, "%s %v\n", k, v) }
	p("sent", s.Sent)
	p("ok", s.OK)
	p("failed", s.Failed)
	p("errors", s.Errors)
	p("non_2xx", s.Non2xx)
	p("start_ns", s.StartUnix)
	p("end_ns", s.EndUnix)
	p("seconds", fmt.Sprintf("%.3f", s.Seconds))
	p("dials", s.Dials)
	for _, k := range slices.Sorted(maps.Keys(s.Protocols)) {
		p("protocol "+k, s.Protocols[k])
	}
	for _, l := range []struct {
		pre string
		d   latency
	}{{"lat", s.Latency}, {"svc", s.Service}} {
		p(l.pre+"_p50_ms", l.d.P50)
		p(l.pre+"_p90_ms", l.d.P90)
		p(l.pre+"_p99_ms", l.d.P99)
		p(l.pre+"_p999_ms", l.d.P999)
		p(l.pre+"_max_ms", l.d.Max)
		p(l.pre+"_mean_ms", l.d.Mean)
	}
	p("late_p99_ms", s.SendLateP99)
	p("late_max_ms", s.SendLateMax)
	for _, v := range slices.Sorted(maps.Keys(s.Versions)) {
		x := s.Versions[v]
		p("version "+v, fmt.Sprintf("%d %d %d %d", x.Count, x.FirstUnix, x.LastUnix, len(x.Servers)))
		for _, h := range slices.Sorted(maps.Keys(x.Servers)) {
			sv := x.Servers[h]
			p("server "+v+" "+h, fmt.Sprintf("%d %d %d", sv.Count, sv.FirstUnix, sv.LastUnix))
		}
	}
	for _, e := range slices.Sorted(maps.Keys(s.ErrorSamples)) {
		p("error_sample", fmt.Sprintf("%d %s", s.ErrorSamples[e], strings.ReplaceAll(e, "\n", " ")))
	}
	for _, t := range s.FailureTimes {
		p("failure_ns", t)
	}
}

func do(client *http.Client, target request, due time.Time) result {
	sent := time.Now()
	r := result{sched: due, late: sent.Sub(due)}
	res, err := target.get(client)
	if err != nil {
		r.err = err.Error()
		r.lat, r.svc = time.Since(due), time.Since(sent)
		return r
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	r.lat, r.svc = time.Since(due), time.Since(sent)
	r.status, r.proto = res.StatusCode, res.Proto
	if err != nil {
		r.err = "reading body: " + err.Error()
		return r
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "version: "); ok {
			r.version = strings.TrimSpace(v)
		} else if v, ok := strings.CutPrefix(sc.Text(), "server: "); ok {
			r.server = strings.TrimSpace(v)
		}
	}
	return r
}

func summarize(all []result, url string, rate float64, start, end time.Time) summary {
	s := summary{
		URL: url, Rate: rate, StartUnix: start.UnixNano(), EndUnix: end.UnixNano(),
		Seconds: end.Sub(start).Seconds(), Sent: len(all),
		Statuses: map[string]int{}, ErrorSamples: map[string]int{}, Versions: map[string]*versionSpan{},
		Protocols: map[string]int{},
	}
	var lat, svc, late []time.Duration
	slices.SortFunc(all, func(a, b result) int { return a.sched.Compare(b.sched) })
	for _, r := range all {
		late = append(late, r.late)
		if r.proto != "" {
			s.Protocols[r.proto]++
		}
		arrived := r.sched.Add(r.lat).UnixNano()
		switch {
		case r.err != "":
			s.Errors++
			s.Statuses["error"]++
			s.ErrorSamples[shorten(r.err)]++
		case r.status < 200 || r.status > 299:
			s.Non2xx++
			s.Statuses[fmt.Sprint(r.status)]++
			s.ErrorSamples[fmt.Sprintf("HTTP %d", r.status)]++
		default:
			s.OK++
			s.Statuses[fmt.Sprint(r.status)]++
			lat = append(lat, r.lat)
			svc = append(svc, r.svc)
			if r.version != "" {
				v := s.Versions[r.version]
				if v == nil {
					v = &versionSpan{FirstUnix: arrived, LastUnix: arrived, Servers: map[string]*serverSpan{}}
					s.Versions[r.version] = v
				}
				v.Count++
				v.FirstUnix = min(v.FirstUnix, arrived)
				v.LastUnix = max(v.LastUnix, arrived)
				if r.server != "" {
					sv := v.Servers[r.server]
					if sv == nil {
						sv = &serverSpan{FirstUnix: arrived, LastUnix: arrived}
						v.Servers[r.server] = sv
					}
					sv.Count++
					sv.FirstUnix = min(sv.FirstUnix, arrived)
					sv.LastUnix = max(sv.LastUnix, arrived)
				}
			}
			continue
		}
		if len(s.FailureTimes) < 100 {
			s.FailureTimes = append(s.FailureTimes, arrived)
		}
	}
	s.Failed = s.Errors + s.Non2xx
	s.Latency = dist(lat)
	s.Service = dist(svc)
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	s.SendLateP99 = ms(pct(late, 99))
	if len(late) > 0 {
		s.SendLateMax = ms(late[len(late)-1])
	}
	if len(s.ErrorSamples) == 0 {
		s.ErrorSamples = nil
	}
	return s
}

// shorten keeps error messages groupable: the local port of a connection changes
// on every error and would make each message unique.
func shorten(e string) string {
	if i := strings.Index(e, "->"); i >= 0 {
		j := strings.LastIndex(e[:i], " ")
		e = e[:j+1] + "<local>" + e[i:]
	}
	if len(e) > 200 {
		e = e[:200]
	}
	return e
}

func dist(d []time.Duration) latency {
	if len(d) == 0 {
		return latency{}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return latency{
		P50: ms(pct(d, 50)), P90: ms(pct(d, 90)), P99: ms(pct(d, 99)), P999: ms(pct(d, 99.9)),
		Max: ms(d[len(d)-1]), Mean: ms(sum / time.Duration(len(d))),
	}
}

// pct is the nearest-rank percentile of sorted d.
func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(d)))) - 1
	return d[min(max(i, 0), len(d)-1)]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
