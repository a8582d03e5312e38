package spec

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

// fullCanary is an update block that sets every canary setting.
const fullCanary = `update {
    strategy = "canary"
    sticky   = "header:X-User-Id"
    step {
      weight   = 0.5
      duration = "1m"
    }
    step {
      weight   = 25
      duration = "2m"
    }
    step { pause = true }
    step {
      weight   = 50
      duration = "30s"
    }
    analysis {
      interval                    = "2s"
      min_requests                = 50
      max_error_ratio             = 0.05
      max_error_ratio_over_stable = 0.02
      max_p50                     = "200ms"
      max_p99                     = "500ms"
      max_p50_over_stable         = "10ms"
      max_p99_over_stable         = "0s"
      prometheus                  = "http://127.0.0.1:9090"
      query "checkout_errors" {
        query = "sum(rate(checkout_errors_total{revision=\"$CANARY_REVISION\"}[1m]))"
        max   = 0.1
      }
      query "orders" {
        query = "sum(rate(orders_total[1m]))"
        min   = 1
        max   = 1000
      }
    }
  }`

func float(v float64) *float64 { return &v }

func TestCanaryDecode(t *testing.T) {
	cfg, diags := parseServices(t, testOpts, service("web", "127.0.0.1:8080", fullCanary))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	want := &Canary{
		Steps:  []CanaryStep{{Weight: 0.5, Duration: time.Minute}, {Weight: 25, Duration: 2 * time.Minute}, {Pause: true}, {Weight: 50, Duration: 30 * time.Second}},
		Sticky: "header:X-User-Id",
		Analysis: Analysis{Interval: 2 * time.Second, MinRequests: 50, MaxErrorRatio: 0.05, MaxErrorRatioOverStable: 0.02,
			MaxP50: 200 * time.Millisecond, MaxP99: 500 * time.Millisecond, MaxP50OverStable: 10 * time.Millisecond,
			Prometheus: "http://127.0.0.1:9090", Queries: []Query{
				{Name: "checkout_errors", Query: `sum(rate(checkout_errors_total{revision="$CANARY_REVISION"}[1m]))`, Max: float(0.1)},
				{Name: "orders", Query: "sum(rate(orders_total[1m]))", Min: float(1), Max: float(1000)},
			}},
	}
	u := cfg.Service("web").Update
	if u.Strategy != StrategyCanary {
		t.Errorf("strategy %q", u.Strategy)
	}
	if diff := cmp.Diff(want, u.Canary); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// The spec above covers every canary attribute of the service block.
	for _, a := range ServiceAttributes() {
		name := a[strings.LastIndex(a, ".")+1:]
		if (strings.HasPrefix(a, "update.step.") || strings.HasPrefix(a, "update.analysis.") || a == "update.sticky") && !strings.Contains(fullCanary, name+" ") {
			t.Errorf("%s is not set by the test's spec", a)
		}
	}
	for _, a := range []string{"update.sticky", "update.step.weight", "update.step.duration", "update.step.pause", "update.analysis.interval",
		"update.analysis.prometheus", "update.analysis.query.query", "update.analysis.query.max", "update.analysis.query.min"} {
		if !slices.Contains(ServiceAttributes(), a) {
			t.Errorf("ServiceAttributes lacks %s", a)
		}
	}
}

func TestCanaryDefaults(t *testing.T) {
	cfg, diags := parseServices(t, testOpts,
		service("web", "127.0.0.1:8080", `update { strategy = "canary" }`),
		service("off", "127.0.0.1:8081", "update {\n    strategy = \"canary\"\n    analysis { max_p99_over_stable = \"0s\" }\n  }"),
		service("rolling", "127.0.0.1:8082"),
		// A canary does not need max_surge or max_unavailable.
		service("zero", "127.0.0.1:8083", "update {\n    strategy        = \"canary\"\n    max_surge       = 0\n    max_unavailable = 0\n  }"),
	)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	c := cfg.Service("web").Update.Canary
	if c == nil {
		t.Fatal("no canary")
	}
	if diff := cmp.Diff(&Canary{Steps: DefaultCanarySteps, Analysis: DefaultAnalysis}, c); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	c.Steps[0].Weight = 99
	if DefaultCanarySteps[0].Weight == 99 {
		t.Error("the canary's steps are DefaultCanarySteps' array, not a copy")
	}
	off := cfg.Service("off").Update.Canary.Analysis
	want := DefaultAnalysis
	want.MaxP99OverStable = 0
	if diff := cmp.Diff(want, off); diff != "" {
		t.Errorf("max_p99_over_stable = \"0s\" (-want +got):\n%s", diff)
	}
	if c := cfg.Service("rolling").Update.Canary; c != nil {
		t.Errorf("a rolling update has canary settings %+v", c)
	}
}

// canaryCase is an update block's body and the one error it makes: its summary and
// detail hold want, on body line line (1 is the line after "update {").
type canaryCase struct {
	name, body, want string
	line             int
}

var canaryCases = []canaryCase{
	{"step outside a canary", "step {\n  weight   = 5\n  duration = \"1m\"\n}", `step blocks apply to strategy = "canary" only; this update's strategy is "rolling". Add strategy = "canary"`, 1},
	{"analysis outside a canary", "strategy = \"blue-green\"\nanalysis { interval = \"1s\" }", `analysis blocks apply to strategy = "canary" only`, 2},
	{"sticky outside a canary", "sticky = \"cookie\"", `sticky applies to strategy = "canary" only`, 1},
	{"unknown strategy", "strategy = \"canry\"\nstep { pause = true }", `use "rolling", "blue-green" or "canary". Did you mean "canary"?`, 1},
	{"pause with weight", "strategy = \"canary\"\nstep {\n  weight   = 5\n  duration = \"1m\"\n}\nstep {\n  pause  = true\n  weight = 10\n}", "Step 2 pauses at the weight of the step before it", 8},
	{"pause with duration", "strategy = \"canary\"\nstep {\n  weight   = 5\n  duration = \"1m\"\n}\nstep {\n  pause    = true\n  duration = \"1m\"\n}", "Step 2 pauses until `kiln promote`", 8},
	{"pause first", "strategy = \"canary\"\nstep { pause = true }\nstep {\n  weight   = 5\n  duration = \"1m\"\n}", "The first step cannot be a pause", 2},
	{"no weight", "strategy = \"canary\"\nstep { duration = \"1m\" }", "Step 1 sends no requests to the canary", 2},
	{"weight 0", "strategy = \"canary\"\nstep {\n  weight   = 0\n  duration = \"1m\"\n}", "Step 1 sends no requests to the canary", 3},
	{"weight 100", "strategy = \"canary\"\nstep {\n  weight   = 100\n  duration = \"1m\"\n}", "weight = 100: a step's weight is the percent of the requests the canary takes, above 0 and below 100", 3},
	{"negative weight", "strategy = \"canary\"\nstep {\n  weight   = -1\n  duration = \"1m\"\n}", "weight = -1:", 3},
	{"weight not a number", "strategy = \"canary\"\nstep {\n  weight   = \"half\"\n  duration = \"1m\"\n}", `Inappropriate value for attribute "weight": number required.`, 3},
	{"no duration", "strategy = \"canary\"\nstep { weight = 5 }", "Step 1 needs a duration", 2},
	{"short duration", "strategy = \"canary\"\nstep {\n  weight   = 5\n  duration = \"500ms\"\n}", "duration = 500ms: a step lasts at least 1s", 4},
	{"duration not a duration", "strategy = \"canary\"\nstep {\n  weight   = 5\n  duration = \"soon\"\n}", `duration = "soon": write a duration`, 4},
	{"weights go down", "strategy = \"canary\"\nstep {\n  weight   = 25\n  duration = \"1m\"\n}\nstep { pause = true }\nstep {\n  weight   = 10\n  duration = \"1m\"\n}", "Step 3's weight (10) is below step 1's (25): a canary's weights never decrease from one step to the next. Raise it to 25 or more", 8},
	{"too many steps", "strategy = \"canary\"\n" + strings.Repeat("step {\n  weight   = 5\n  duration = \"1m\"\n}\n", 21), "at most 20 steps, and this one has 21", 2 + 20*4},
	{"too many queries", "strategy = \"canary\"\nanalysis {\n  prometheus = \"http://prom:9090\"\n" + manyQueries(21) + "}", "at most 20 queries at each interval, and this one has 21", 4 + 20*4},
	{"interval", "strategy = \"canary\"\nanalysis { interval = \"50ms\" }", "interval = 50ms: how often the canary's figures are read and judged, at least 100ms", 2},
	{"min_requests 0", "strategy = \"canary\"\nanalysis { min_requests = 0 }", "min_requests must be a whole number from 1 to 1000000.", 2},
	{"min_requests fraction", "strategy = \"canary\"\nanalysis { min_requests = 1.5 }", "min_requests must be a whole number from 1 to 1000000.", 2},
	{"error ratio", "strategy = \"canary\"\nanalysis { max_error_ratio = 1.5 }", "max_error_ratio = 1.5: write a share of the requests from 0 to 1", 2},
	{"error ratio over stable", "strategy = \"canary\"\nanalysis { max_error_ratio_over_stable = -0.1 }", "max_error_ratio_over_stable = -0.1:", 2},
	{"negative latency", "strategy = \"canary\"\nanalysis { max_p99 = \"-1s\" }", "max_p99 = -1s: write a duration of 0s or more", 2},
	{"prometheus without scheme", "strategy = \"canary\"\nanalysis { prometheus = \"127.0.0.1:9090\" }", `prometheus = "127.0.0.1:9090": write the base URL of a Prometheus`, 2},
	{"prometheus ftp", "strategy = \"canary\"\nanalysis { prometheus = \"ftp://prom:9090\" }", "Invalid Prometheus URL", 2},
	{"prometheus without host", "strategy = \"canary\"\nanalysis { prometheus = \"http://\" }", "Invalid Prometheus URL", 2},
	{"query without prometheus", "strategy = \"canary\"\nanalysis {\n  query \"errors\" {\n    query = \"up\"\n    max   = 1\n  }\n}", `Query "errors" is sent to a Prometheus, and the analysis names none`, 3},
	{"query without limit", "strategy = \"canary\"\nanalysis {\n  prometheus = \"http://prom:9090\"\n  query \"errors\" { query = \"up\" }\n}", `Query "errors" needs max, min or both`, 4},
	{"query without query", "strategy = \"canary\"\nanalysis {\n  prometheus = \"http://prom:9090\"\n  query \"errors\" { max = 1 }\n}", `Query "errors" needs query = "..."`, 4},
	{"empty query", "strategy = \"canary\"\nanalysis {\n  prometheus = \"http://prom:9090\"\n  query \"errors\" {\n    query = \"\"\n    max   = 1\n  }\n}", `Query "errors" needs query = "..."`, 5},
	{"query limits", "strategy = \"canary\"\nanalysis {\n  prometheus = \"http://prom:9090\"\n  query \"errors\" {\n    query = \"up\"\n    max   = 1\n    min   = 2\n  }\n}", `Query "errors"'s min (2) is above its max (1)`, 7},
	{"duplicate query", "strategy = \"canary\"\nanalysis {\n  prometheus = \"http://prom:9090\"\n  query \"errors\" {\n    query = \"up\"\n    max   = 1\n  }\n  query \"errors\" {\n    query = \"up\"\n    min   = 1\n  }\n}", `A query named "errors" is already declared (query 1)`, 8},
	{"query without name", "strategy = \"canary\"\nanalysis {\n  prometheus = \"http://prom:9090\"\n  query {\n    query = \"up\"\n    max   = 1\n  }\n}", "All query blocks must have 1 labels (name).", 4},
	{"duplicate analysis", "strategy = \"canary\"\nanalysis { interval = \"1s\" }\nanalysis { interval = \"2s\" }", "An analysis block was already declared at", 3},
	{"sticky misspelt", "strategy = \"canary\"\nsticky = \"cokie\"", `sticky = "cokie": use "cookie" (a cookie keeps each client on one side), "header:NAME"`, 2},
	{"sticky header case", "strategy = \"canary\"\nsticky = \"Header:X-User-Id\"", `Did you mean "header:X-User-Id"?`, 2},
	{"sticky header name", "strategy = \"canary\"\nsticky = \"header:X_User\"", `sticky = "header:X_User": use`, 2},
	{"sticky empty header", "strategy = \"canary\"\nsticky = \"header:\"", "Invalid sticky", 2},
}

// TestCanaryErrors: each bad canary setting makes one error, at its place.
func TestCanaryErrors(t *testing.T) {
	for _, c := range canaryCases {
		body := "  " + strings.ReplaceAll(c.body, "\n", "\n    ")
		_, diags := parseServices(t, testOpts, service("web", "127.0.0.1:8080", "update {\n  "+body+"\n  }"))
		errs := diags.Errs()
		if len(errs) != 1 {
			t.Errorf("%s: %d errors, want 1: %v", c.name, len(errs), diags)
			continue
		}
		d := errs[0].(*hcl.Diagnostic)
		// The update block is on line 8: three of the image block, four of the service's.
		if msg := d.Summary + ": " + d.Detail; !strings.Contains(msg, c.want) || d.Subject == nil || d.Subject.Start.Line != 8+c.line {
			t.Errorf("%s: %v (%s), want an error on line %d saying %q", c.name, d.Subject, msg, 8+c.line, c.want)
		}
	}
}

// TestValidateCanaryOfAPIValues: ValidateService refuses the canary settings only an API
// client can get wrong.
func TestValidateCanaryOfAPIValues(t *testing.T) {
	base := Service{Name: "web", Replicas: 1, Port: 8080, Listen: "127.0.0.1:8080", Health: DefaultHealth, Update: DefaultUpdate}
	base.Update.Strategy = StrategyCanary
	base.Update.Canary = &Canary{Steps: DefaultCanarySteps, Analysis: DefaultAnalysis}
	if p := ValidateService(&base); len(p) != 0 {
		t.Fatalf("the default canary: %v", p)
	}
	for _, tt := range []struct {
		mutate func(*Update)
		attr   string
		detail string
	}{
		{func(u *Update) { u.Strategy = StrategyRolling }, "update", `apply to strategy = "canary" only`},
		{func(u *Update) { u.Canary = nil }, "update", "needs the canary's steps"},
		{func(u *Update) { u.Canary.Steps = nil }, "update.step", "at least one step"},
		{func(u *Update) { u.Canary.Steps = []CanaryStep{{Weight: 5, Duration: time.Second}, {Weight: 5}} }, "update.step[1].duration", "Step 2 needs a duration"},
		{func(u *Update) { u.Canary.Analysis.MinRequests = 0 }, "update.analysis.min_requests", "from 1 to 1000000"},
		{func(u *Update) { u.Canary.Analysis.Queries = []Query{{Query: "up", Max: float(1)}} }, "update.analysis.query[0].name", "Query 1 needs a name"},
	} {
		s := base
		c := *base.Update.Canary
		s.Update.Canary = &c
		tt.mutate(&s.Update)
		var problems []Problem
		for _, p := range ValidateService(&s) {
			if p.Attribute != "update.analysis.query[0]" { // the query's Prometheus: not this test's
				problems = append(problems, p)
			}
		}
		if len(problems) != 1 || problems[0].Attribute != tt.attr || !strings.Contains(problems[0].Detail, tt.detail) {
			t.Errorf("got %v, want one problem of %s containing %q", problems, tt.attr, tt.detail)
		}
	}
}

// manyQueries is n query blocks of 4 lines each.
func manyQueries(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "  query \"q%d\" {\n    query = \"up\"\n    max   = 1\n  }\n", i)
	}
	return b.String()
}
