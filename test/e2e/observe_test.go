package e2e

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestObservability: metrics in the Prometheus format behind the API token, events
// followed as they happen, the servers' logs, and the service's state in status.
func TestObservability(t *testing.T) {
	d := newDeployment(t)
	d.startDaemon("revision 1 deployed", "up")
	for range 5 {
		d.get("/")
	}

	if r := d.kiln(nil, "logs", d.service); r.code != 0 || !strings.Contains(r.stdout, "listening") || !strings.Contains(r.stdout, " | ") {
		t.Errorf("kiln logs: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if st := d.status(); len(st.Services) != 1 {
		t.Fatalf("status: %+v", st)
	}
	if r := d.kiln(nil, "status"); !strings.Contains(r.stdout, "healthy") {
		t.Errorf("status shows no state:\n%s", r.stdout)
	}

	// /metrics needs the token, like every route but /healthz.
	addr, _ := os.ReadFile(filepath.Join(d.dir, ".kiln", "api.addr"))
	token, _ := os.ReadFile(filepath.Join(d.dir, ".kiln", "token"))
	url := strings.TrimSpace(string(addr)) + "/metrics"
	if resp, err := http.Get(url); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %v %v", resp.StatusCode, err)
	}
	scrape := func() string {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// Health checks run at the service's interval: wait for the first ones.
	var body string
	eventually(t, 10*time.Second, "health-check metrics", func() bool {
		body = scrape()
		return strings.Contains(body, "kiln_health_check_duration_seconds_count")
	})
	for _, want := range []string{
		`kiln_servers{service="` + d.service + `",state="running"} 2`,
		`kiln_frontdoor_requests_total{code="200",service="` + d.service + `"}`,
		`kiln_frontdoor_request_duration_seconds_bucket{service="` + d.service + `"`,
		`kiln_health_check_duration_seconds_count{service="` + d.service + `"}`,
		`go_build_info`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(string(body), "server_id") || strings.Contains(string(body), "kiln-"+d.service) {
		t.Error("/metrics has per-server labels")
	}

	// Events followed as they happen: a heal shows up in the stream.
	cmd := exec.Command(kiln, "events", "-f", "-json", "--service", d.service)
	cmd.Dir = d.dir
	cmd.Env = append(os.Environ(), d.env...)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(500 * time.Millisecond)
	sh(t, "/", nil, "docker", "kill", d.running()[0])
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("events -f ended")
			}
			if strings.Contains(l, `"type":"heal"`) {
				return
			}
		case <-deadline:
			t.Fatal("events -f showed no heal within 20s of a kill")
		}
	}
}
