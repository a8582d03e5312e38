package harness

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A summary as bench/loadgen writes it: version 1 served by two servers until 2.5 s
// after t0, version 2 by three, the last of which answered first 3.2 s after t0.
func sampleSummary(t0 time.Time) string {
	ns := func(s float64) int64 { return t0.Add(time.Duration(s * float64(time.Second))).UnixNano() }
	return fmt.Sprintf(`{
  "url": "http://127.0.0.1:1/", "rate": 1000, "sent": 10, "ok": 7, "failed": 3, "errors": 1, "non_2xx": 2,
  "error_samples": {"HTTP 502": 2, "dial tcp 127.0.0.1:1: connect: connection refused": 1},
  "failure_unix_ns": [%d, %d],
  "latency": {"p50_ms": 0.9, "p99_ms": 7.5},
  "service_latency": {"p50_ms": 0.4, "p99_ms": 5.6},
  "versions": {
    "1": {"count": 4, "first_unix_ns": %d, "last_unix_ns": %d, "servers": {"a": {"count": 2, "first_unix_ns": %d, "last_unix_ns": %d}, "b": {"count": 2, "first_unix_ns": %d, "last_unix_ns": %d}}},
    "2": {"count": 3, "first_unix_ns": %d, "last_unix_ns": %d, "servers": {"c": {"count": 1, "first_unix_ns": %d, "last_unix_ns": %d}, "d": {"count": 1, "first_unix_ns": %d, "last_unix_ns": %d}, "e": {"count": 1, "first_unix_ns": %d, "last_unix_ns": %d}}}
  }
}`, ns(0.5), ns(1.25),
		ns(-1), ns(2.5), ns(-1), ns(2.5), ns(-0.5), ns(1),
		ns(1.1), ns(4), ns(1.1), ns(4), ns(3.2), ns(3.5), ns(2), ns(3.9))
}

func TestLoadSummary(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	s, err := parseLoadSummary([]byte(sampleSummary(t0)))
	if err != nil {
		t.Fatal(err)
	}
	if s.Sent != 10 || s.Failed != 3 || s.Service.P99 != 5.6 || s.Latency.P50 != 0.9 || len(s.Versions["2"].Servers) != 3 {
		t.Errorf("parsed %+v", s)
	}
	v := clientView(s, "1", "2", 3, t0)
	if math.Abs(v.NewOnAll-3.2) > 1e-9 || math.Abs(v.OldLast-2.5) > 1e-9 {
		t.Errorf("clientView = %+v, want new on all 3 servers at 3.2 s, old last at 2.5 s", v)
	}
	if v := clientView(s, "1", "2", 4, t0); !math.IsNaN(v.NewOnAll) {
		t.Errorf("a fourth new server was found: %+v", v)
	}
	if v := clientView(s, "7", "8", 1, t0); !math.IsNaN(v.NewOnAll) || !math.IsNaN(v.OldLast) {
		t.Errorf("versions that never answered: %+v", v)
	}
	note := failureNote(s, t0)
	for _, want := range []string{"3 failed of 10 (1 transport errors + 2 non-2xx)", "2× HTTP 502", "1× dial tcp", "0.500, 1.250"} {
		if !strings.Contains(note, want) {
			t.Errorf("the failure note lacks %q: %s", want, note)
		}
	}
	if settledOn(s, 2) {
		t.Error("a load with failures and two versions counts as settled")
	}
	one := LoadSummary{Sent: 200, OK: 200, Versions: map[string]*VersionSpan{"2": {Servers: map[string]*ServerSpan{"c": {}, "d": {}}}}}
	if !settledOn(one, 2) || settledOn(one, 3) {
		t.Error("settledOn: 2 servers of one version, no failure")
	}
}

func TestLoadSummaryRefusesWhatDoesNotAddUp(t *testing.T) {
	if _, err := parseLoadSummary([]byte(`{"sent": 10, "ok": 9, "failed": 0}`)); err == nil {
		t.Error("10 sent, 9 ok and 0 failed was taken")
	}
	if _, err := parseLoadSummary([]byte(`not json`)); err == nil {
		t.Error("a summary that is not JSON was taken")
	}
}

// bench/loadgen itself, against a server that names its version and server as the
// example does: the harness reads what it writes. It builds loadgen (a module of its
// own) with the go command.
func TestLoadgenContract(t *testing.T) {
	if testing.Short() {
		t.Skip("builds bench/loadgen")
	}
	root, err := filepath.Abs("../loadgen")
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{Work: t.TempDir()}
	bin := filepath.Join(e.Work, "bin", "loadgen") // where LoadgenBinary looks first
	if out, err := exec.Command("go", "build", "-C", root, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("building bench/loadgen: %v\n%s", err, out)
	}
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		if i == 3 {
			http.Error(w, "no", http.StatusBadGateway)
			return
		}
		fmt.Fprintf(w, "Hello from kiln!\nversion: 2\nserver: s%d\n", i%2)
	}))
	defer srv.Close()
	s, err := e.RunLoadgen(context.Background(), srv.URL, 50, 200*time.Millisecond, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Sent == 0 || s.Non2xx != 1 || s.Failed != 1 || s.OK != s.Sent-1 {
		t.Errorf("counts: %+v", s)
	}
	if v := s.Versions["2"]; v == nil || len(v.Servers) != 2 || v.Count != s.OK {
		t.Errorf("versions: %+v", s.Versions)
	}
	if s.Service.P50 <= 0 || s.Latency.P99 < s.Latency.P50 {
		t.Errorf("latency: %+v, from schedule %+v", s.Service, s.Latency)
	}
	if s.ErrorSamples["HTTP 502"] != 1 || len(s.FailureTimes) != 1 {
		t.Errorf("failures: %v at %v", s.ErrorSamples, s.FailureTimes)
	}
}
