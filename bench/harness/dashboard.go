package harness

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// dashboardPage is one page internal/dashboard's TestThousandServers measured: its
// median server time to render (the Server-Timing header) over 7 requests, and its
// size.
type dashboardPage struct {
	Label, Path string
	RenderMS    float64
	Bytes       int
}

// parsePages reads the "PAGE label|path|median_render_ms=X|bytes=N" lines of
// TestThousandServers's verbose output.
func parsePages(out string) ([]dashboardPage, error) {
	var pages []dashboardPage
	for _, l := range splitLines(out) {
		_, rest, ok := strings.Cut(l, "PAGE ")
		if !ok {
			continue
		}
		f := strings.Split(rest, "|")
		if len(f) != 4 {
			return nil, fmt.Errorf("a PAGE line of another shape: %q", l)
		}
		ms, err1 := strconv.ParseFloat(strings.TrimPrefix(f[2], "median_render_ms="), 64)
		n, err2 := strconv.Atoi(strings.TrimPrefix(f[3], "bytes="))
		if err1 != nil || err2 != nil || !strings.HasPrefix(f[2], "median_render_ms=") || !strings.HasPrefix(f[3], "bytes=") {
			return nil, fmt.Errorf("a PAGE line of another shape: %q", l)
		}
		pages = append(pages, dashboardPage{Label: f[0], Path: f[1], RenderMS: ms, Bytes: n})
	}
	return pages, nil
}

// dashboardFleet is the page the project's goal names.
const dashboardFleet = "fleet, 1,000 servers in 20 services"

// Dashboard runs internal/dashboard's TestThousandServers -runs times: a real engine,
// SQLite store and HTTP server with 20 services of 50 servers, then one more of 1,000,
// on the simulated driver; each page's server time to render and size.
func Dashboard(ctx context.Context, e *Env, o Options) (*Result, error) {
	r := e.newResult(ctx, "dashboard", "Dashboard pages with many servers", o)
	r.Notes = []string{
		"internal/dashboard's TestThousandServers (`go test -count=1 -run '^TestThousandServers$' -v ./internal/dashboard`), once a run: a real engine, SQLite store and HTTP server with 20 services of 50 servers, then one more service of 1,000, on the simulated driver (internal/driver/simdriver: each server an HTTP listener in the test process; this machine cannot run 2,000 containers). Each page is requested 7 times, signed in; *render* is the median of its `Server-Timing: render` header, *size* its HTML (CSS and script are about 10 KB more, cached).",
		"No peer is run: Nomad is not among Debian's packages and its Go module builds without its web UI (an Ember app built apart); Portainer and Argo CD ship as container images, which this machine cannot pull.",
		"The machine is shared with other engineers running tests: figures are noisy; compare medians of the same run.",
	}
	var order []string
	for run := 1; run <= o.Runs; run++ {
		out, err := e.Run(ctx, e.Source, []string{"GOFLAGS="}, "go", "test", "-count=1", "-run", "^TestThousandServers$", "-v", "./internal/dashboard/")
		if err != nil {
			r.Failf("run %d: %v", run, err)
			continue
		}
		pages, err := parsePages(out)
		if err == nil && len(pages) == 0 {
			err = fmt.Errorf("TestThousandServers printed no PAGE line: %s", tail(out, 300))
		}
		if err != nil {
			r.Failf("run %d: %v", run, err)
			continue
		}
		for _, p := range pages {
			sys := fmt.Sprintf("%s (`%s`)", p.Label, p.Path)
			if !slices.Contains(order, sys) {
				order = append(order, sys)
			}
			r.Add(sys, "render", "ms", p.RenderMS)
			r.Add(sys, "size", "KB", float64(p.Bytes)/1024)
		}
		e.Log.Info("dashboard", "run", run, "pages", len(pages))
	}
	fleet := fmt.Sprintf("%s (`/`)", dashboardFleet)
	if m, ok := r.Median(fleet, "render"); ok {
		r.AddGoal("the fleet page with 1,000 servers renders in < 200 ms", m, "ms", 200, true)
	}
	if m, ok := r.Median(fleet, "size"); ok {
		r.AddGoal("the fleet page with 1,000 servers is < 300 KB", m, "KB", 300, true)
	}
	r.AddTable(Table{Title: "Pages", Corner: "page", Systems: order, Metrics: []string{"render", "size"}})
	return e.finish(ctx, r), nil
}
