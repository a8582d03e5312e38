package harness

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{2, 2, 9}, 2},
	} {
		in := append([]float64(nil), c.in...)
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Fatalf("Median changed its argument: %v became %v", in, c.in)
			}
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
	if !math.IsNaN(Div(1, 0)) || Div(3, 4) != 0.75 {
		t.Error("Div")
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize([]float64{4, 1, 7})
	if s != (Summary{N: 3, Median: 4, Min: 1, Max: 7, Sum: 12}) {
		t.Errorf("Summarize = %+v", s)
	}
	if Summarize(nil) != (Summary{}) {
		t.Error("Summarize(nil) is not the zero Summary")
	}
}

// A result with ratios and goals survives its JSON file and renders the figures
// computed from its samples.
func TestResultRoundTrip(t *testing.T) {
	r := &Result{Scenario: "rollout", Title: "Rolling update", Date: time.Date(2026, 12, 1, 23, 40, 0, 0, time.UTC), Runs: 3,
		Machine: Machine{CPU: "test CPU", Cores: 2}, Kiln: Kiln{Commit: "abc123", Dirty: true}}
	for _, v := range []float64{1.9, 1.7, 2.1} {
		r.Add("kiln-mh0", "rollout time", "s", v)
	}
	for _, v := range []float64{8, 7.5, 7.9} {
		r.Add("swarm-hc", "rollout time", "s", v)
	}
	r.Add("kiln-mh0", "failed requests", "", 0)
	ratio, ok := r.AddRatio("kiln / Swarm", "kiln-mh0", "swarm-hc", "rollout time")
	if !ok || math.Abs(ratio-1.9/7.9) > 1e-12 {
		t.Fatalf("ratio = %v, %v; want %v", ratio, ok, 1.9/7.9)
	}
	if _, ok := r.AddRatio("missing", "kiln-mh0", "nobody", "rollout time"); ok {
		t.Error("a ratio over a series with no samples was recorded")
	}
	r.AddGoal("≤ 0.3× Swarm", ratio, "×", 0.3, false)
	r.AddGoal("replaced in < 0.6 s", 0.6, "s", 0.6, true)
	if !r.Goals[0].Met || r.Goals[1].Met {
		t.Errorf("goals: %+v", r.Goals)
	}
	r.Failf("swarm run %d: %s", 2, "update state paused")

	path, err := r.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "rollout-2026-12-01-2340.json" {
		t.Errorf("written as %s", path)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	md := Markdown(got)
	for _, want := range []string{
		"# Rolling update (2026-12-01T23:40Z)",
		"| kiln-mh0 | rollout time | 1.90 s | 1.70–2.10 | 3 | 1.90, 1.70, 2.10 |",
		"| swarm-hc | rollout time | 7.90 s | 7.50–8.00 | 3 |",
		"| kiln / Swarm | kiln-mh0 / rollout time | swarm-hc / rollout time | 0.24× |",
		"| ≤ 0.3× Swarm | 0.241× | ≤ 0.300× | yes |",
		"| replaced in < 0.6 s | 0.600 s | < 0.600 s | **no** |",
		"- swarm run 2: update state paused",
		"kiln: commit abc123 (with uncommitted changes)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the Markdown lacks %q:\n%s", want, md)
		}
	}
	if md != Markdown(r) {
		t.Error("the result read back renders differently from the one written")
	}
}

func TestLoadRefusesOtherJSON(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.json")
	if err := writeFile(p, `{"name": "not a result"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil {
		t.Error("Load took a JSON file without a scenario")
	}
}

func TestServiceSpec(t *testing.T) {
	tmpl := "service \"hello\" {\n  image    = image.hello\n  replicas = 2\n  listen   = var.listen\n  health {\n    interval = \"500ms\"\n  }\n  update {\n    strategy = \"rolling\"\n    max_surge = 1\n    min_healthy = \"1s\"\n  }\n}\n"
	got, err := serviceSpec(tmpl, "bench-hello", ServiceOptions{Name: "web", Replicas: 50, Interval: "1s", MinHealthy: "0s", Memory: "32MiB", Port: 18080})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`service "web" {`, "= image.bench-hello\n", "replicas = 50\n", `listen   = "127.0.0.1:18080"`, `interval = "1s"`, `min_healthy = "0s"`, "resources {\n    memory = \"32MiB\"\n  }\n}\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("the service block lacks %q:\n%s", want, got)
		}
	}
	if _, err := serviceSpec("service \"hello\" {\n}\n", "x", ServiceOptions{Name: "web"}); err == nil {
		t.Error("a template without replicas was taken")
	}
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o644) }

func TestParseMetrics(t *testing.T) {
	m := parseMetrics("# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 126\ngo_memstats_heap_inuse_bytes 5.1e+06\nkiln_requests_total{service=\"web\"} 7\n")
	if len(m) != 2 || m["go_goroutines"] != 126 || m["go_memstats_heap_inuse_bytes"] != 5.1e6 {
		t.Errorf("parseMetrics = %v", m)
	}
}

func TestCPUTicksOfThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	n, err := cpuTicks(os.Getpid())
	if err != nil || n < 0 {
		t.Fatalf("cpuTicks = %d, %v", n, err)
	}
	if rssMiB(os.Getpid()) <= 0 {
		t.Error("rssMiB of this process is not positive")
	}
}

func TestParseKV(t *testing.T) {
	m := parseKV("answer_ms 1712.4\ndetect_ms -\nnew_server 3f2a\nrecovered_ms 1720\n")
	if len(m) != 2 || m["answer_ms"] != 1712.4 || m["recovered_ms"] != 1720 {
		t.Errorf("parseKV = %v", m)
	}
}

func TestDoorServer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "Hello from kiln!\nversion: 2\nserver: 3f2a9c1b7d4e\n")
	}))
	defer srv.Close()
	id := doorServer(context.Background(), srv.URL)
	if id != "3f2a9c1b7d4e" {
		t.Fatalf("doorServer = %q", id)
	}
	if !shortIn(id, map[string]bool{"3f2a9c1b7d4e5566778899": true}) || shortIn(id, map[string]bool{"aaaa": true}) {
		t.Error("shortIn")
	}
}

// A table shows the median (min–max) of each (system, metric) pair, the range only
// when the samples differ, systems as rows or, ByMetric, as columns; a missing pair
// shows as "–". It survives the JSON file.
func TestTables(t *testing.T) {
	r := &Result{Scenario: "pipeline", Title: "Continuous delivery", Date: time.Date(2026, 12, 1, 23, 40, 0, 0, time.UTC), Runs: 3}
	for _, v := range []float64{2.1, 1.9, 2.4} {
		r.Add("fast-hook", "total", "s", v)
	}
	r.Add("fast-hook", "failed requests", "", 0)
	r.Add("fast-hook", "failed requests", "", 0)
	r.Add("example-poll", "total", "s", 3.5)
	r.Add("example-poll", "teardown", "s", -0.019)
	r.Add("example-poll", "teardown", "s", -0.014)
	r.AddTable(Table{Title: "By system", Systems: []string{"fast-hook", "example-poll"}, Metrics: []string{"total", "failed requests"}})
	r.AddTable(Table{Title: "By step", Note: "Seconds.", Corner: "step", Systems: []string{"fast-hook", "example-poll"}, Metrics: []string{"total", "teardown"}, ByMetric: true})
	path, err := r.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	md := Markdown(got)
	for _, want := range []string{
		"## By system\n\n| system | total | failed requests |\n| --- | ---: | ---: |\n" +
			"| fast-hook | 2.10 s (1.90–2.40) | 0 |\n" +
			"| example-poll | 3.50 s | – |\n",
		"## By step\n\nSeconds.\n\n| step | fast-hook | example-poll |\n| --- | ---: | ---: |\n| total | 2.10 s (1.90–2.40) | 3.50 s |\n| teardown | – | -0.017 s (-0.019 to -0.014) |\n",
		"| example-poll | teardown | -0.017 s | -0.019 to -0.014 | 2 | -0.019, -0.014 |",
		"## Every series\n\n| system | metric |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the Markdown lacks\n%s\nin\n%s", want, md)
		}
	}
	if strings.Index(md, "## By system") > strings.Index(md, "## Every series") {
		t.Error("the tables come after the list of every series")
	}
}
