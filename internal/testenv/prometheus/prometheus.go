package prometheus

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv/proc"
)

// Bin is the Prometheus a test runs.
const Bin = "/usr/bin/prometheus"

// Target is one scrape target: a host:port, and a bearer token when it asks one.
type Target struct {
	Addr, Token string
	Path        string // "/metrics" when empty
}

// Start runs Prometheus scraping targets every second and returns its base URL; it
// is stopped when the test ends. Under -short, where Bin is missing, the test is
// skipped; otherwise a missing Bin fails it (CI runs scripts/ensure-prometheus).
func Start(t testing.TB, targets ...Target) string {
	t.Helper()
	if _, err := os.Stat(Bin); err != nil {
		if testing.Short() {
			t.Skipf("%s is not installed (scripts/ensure-prometheus installs it)", Bin)
		}
		t.Fatalf("%s is not installed: run scripts/ensure-prometheus", Bin)
	}
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n")
	for i, tg := range targets {
		fmt.Fprintf(&b, "  - job_name: target%d\n    metrics_path: %q\n", i, cmpOr(tg.Path, "/metrics"))
		if tg.Token != "" {
			tokenFile := filepath.Join(dir, fmt.Sprintf("token%d", i))
			if err := os.WriteFile(tokenFile, []byte(tg.Token), 0o600); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "    authorization:\n      credentials_file: %q\n", tokenFile)
		}
		fmt.Fprintf(&b, "    static_configs:\n      - targets: [%q]\n", tg.Addr)
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ports, err := proc.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := proc.Addr(ports[0])
	p, err := proc.Start("prometheus", Bin, nil,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--web.listen-address="+addr,
		"--storage.tsdb.path="+filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("prometheus's output:\n%s", p.Output())
		}
	})
	url := "http://" + addr
	client := &http.Client{Timeout: time.Second}
	err = proc.WaitFor(p, 30*time.Second, func() error {
		resp, err := client.Get(url + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("prometheus: %v\n%s", err, p.Output())
	}
	return url
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
