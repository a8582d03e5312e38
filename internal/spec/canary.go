package spec

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Canary is how a canary update (strategy "canary") tries a new revision: the canary's
// servers start beside the stable set, the front door sends them Steps' shares of the
// requests one step after the other, and Analysis judges each step from what the door
// measured of both. After the last step, the new revision replaces the stable set.
type Canary struct {
	Steps []CanaryStep
	// Sticky is how a client keeps its version through a step: "" draws each request
	// afresh, "cookie" gives the client a cookie that keeps it on one side, and
	// "header:NAME" assigns each value of the request header NAME to one side.
	Sticky   string
	Analysis Analysis
}

// CanaryStep is one step of a canary: Weight percent of the requests go to the
// canary for Duration, judged by the analysis; or, with Pause, the canary stays at the
// weight of the step before until `kiln promote` (or `kiln abort`).
type CanaryStep struct {
	Weight   float64 // percent, above 0 and below 100; 0 with Pause
	Duration time.Duration
	Pause    bool
}

// Analysis is what the canary must show at each step, measured by the front door over
// the step so far, the canary against the stable set over the same window. A limit at
// zero is not checked.
type Analysis struct {
	// Interval is how often the figures are read and judged.
	Interval time.Duration
	// MinRequests is how many requests the canary must have served in the step before
	// it is judged at all.
	MinRequests int
	// MaxErrorRatio bounds the canary's share of failed requests (5xx answers and
	// requests no server answered), from 0 to 1; MaxErrorRatioOverStable bounds how far
	// it may exceed the stable set's.
	MaxErrorRatio           float64
	MaxErrorRatioOverStable float64
	// MaxP50 and MaxP99 bound the canary's median and 99th-percentile latency;
	// MaxP50OverStable and MaxP99OverStable, how far they may exceed the stable set's.
	MaxP50, MaxP99                     time.Duration
	MaxP50OverStable, MaxP99OverStable time.Duration
	// Prometheus is the base URL of a Prometheus the Queries are sent to.
	Prometheus string
	Queries    []Query
}

// Query is a business metric from Prometheus: an instant query whose result (one
// number) must stay within Max and Min (when set). $CANARY_REVISION and
// $STABLE_REVISION in it are replaced by the revisions' numbers.
type Query struct {
	Name     string
	Query    string
	Max, Min *float64
}

// StrategyCanary tries a new revision on a share of the requests before it replaces
// the stable set (see Canary).
const StrategyCanary = "canary"

// Defaults of a canary update.
var (
	DefaultCanarySteps = []CanaryStep{{Weight: 10, Duration: time.Minute}, {Weight: 50, Duration: time.Minute}}
	DefaultAnalysis    = Analysis{Interval: time.Second, MinRequests: 100, MaxErrorRatioOverStable: 0.01, MaxP99OverStable: 25 * time.Millisecond}
)

// MaxCanarySteps is how many steps a canary may have; MaxQueries, how many Prometheus
// queries its analysis sends at each of its intervals.
const (
	MaxCanarySteps = 20
	MaxQueries     = 20
)

var stepSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "weight"}, {Name: "duration"}, {Name: "pause"}}}

var analysisSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "interval"}, {Name: "min_requests"}, {Name: "max_error_ratio"}, {Name: "max_error_ratio_over_stable"},
		{Name: "max_p50"}, {Name: "max_p99"}, {Name: "max_p50_over_stable"}, {Name: "max_p99_over_stable"},
		{Name: "prometheus"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "query", LabelNames: []string{"name"}}},
}

var querySchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "query"}, {Name: "max"}, {Name: "min"}}}

// canary decodes the canary settings of an update block's content, whose strategy is
// u's: nil unless it is StrategyCanary, after reporting each setting given under
// another valid strategy. It records in where the ranges of the steps
// ("update.step[0]"), of the analysis block and of the queries
// ("update.analysis.query[0]", its label as ".name") and of their attributes. The
// bounds of the values are ValidateService's to check, so that an API client is told
// the same.
func (d *decoder) canary(u *Update, content *hcl.BodyContent, where map[string]hcl.Range) *Canary {
	a := content.Attributes
	if u.Strategy != StrategyCanary {
		if u.Strategy != StrategyRolling && u.Strategy != StrategyBlueGreen {
			return nil // ValidateService reports the strategy; these would only add noise
		}
		fix := fmt.Sprintf("this update's strategy is %q. Add strategy = %q to the update block, or remove", u.Strategy, StrategyCanary)
		if attr, ok := a["sticky"]; ok {
			d.errorf(attr.NameRange.Ptr(), "Canary setting outside a canary", "sticky applies to strategy = %q only; %s sticky.", StrategyCanary, fix)
		}
		for _, b := range content.Blocks {
			d.errorf(b.DefRange.Ptr(), "Canary setting outside a canary", "%s blocks apply to strategy = %q only; %s the %s block.", b.Type, StrategyCanary, fix, b.Type)
		}
		return nil
	}
	c := &Canary{Analysis: DefaultAnalysis}
	c.Sticky, _ = d.str(a, "sticky")
	var analysis *hcl.Block
	for _, b := range content.Blocks {
		switch b.Type {
		case "step":
			c.Steps = append(c.Steps, d.canaryStep(b, fmt.Sprintf("update.step[%d]", len(c.Steps)), where))
		case "analysis":
			if analysis != nil {
				d.errorf(b.DefRange.Ptr(), "Duplicate analysis block", "An analysis block was already declared at %s; an update block has at most one.", analysis.DefRange)
				continue
			}
			analysis = b
			where["update.analysis"] = b.DefRange
			d.analysis(b, &c.Analysis, where)
		}
	}
	if c.Steps == nil {
		c.Steps = slices.Clone(DefaultCanarySteps)
	}
	return c
}

func (d *decoder) canaryStep(b *hcl.Block, key string, where map[string]hcl.Range) CanaryStep {
	content, diags := b.Body.Content(stepSchema)
	d.add(diags)
	a := content.Attributes
	where[key] = b.DefRange
	note(where, key, a)
	var st CanaryStep
	st.Weight, _ = d.number(a, "weight")
	st.Duration, _ = d.anyDuration(a, "duration")
	st.Pause = d.boolean(a, "pause")
	return st
}

func (d *decoder) analysis(b *hcl.Block, an *Analysis, where map[string]hcl.Range) {
	content, diags := b.Body.Content(analysisSchema)
	d.add(diags)
	a := content.Attributes
	note(where, "update.analysis", a)
	if v, ok := d.anyDuration(a, "interval"); ok {
		an.Interval = v
	}
	if attr, ok := a["min_requests"]; ok {
		if n, ok := d.whole(attr, "update.analysis.min_requests", minRequestsMin, minRequestsMax); ok {
			an.MinRequests = n
		}
	}
	for _, r := range []struct {
		name string
		f    *float64
	}{{"max_error_ratio", &an.MaxErrorRatio}, {"max_error_ratio_over_stable", &an.MaxErrorRatioOverStable}} {
		if v, ok := d.number(a, r.name); ok {
			*r.f = v
		}
	}
	for _, l := range []struct {
		name string
		f    *time.Duration
	}{{"max_p50", &an.MaxP50}, {"max_p99", &an.MaxP99}, {"max_p50_over_stable", &an.MaxP50OverStable}, {"max_p99_over_stable", &an.MaxP99OverStable}} {
		if v, ok := d.anyDuration(a, l.name); ok {
			*l.f = v
		}
	}
	if v, ok := d.str(a, "prometheus"); ok {
		an.Prometheus = v
	}
	for i, qb := range content.Blocks {
		key := fmt.Sprintf("update.analysis.query[%d]", i)
		where[key] = qb.DefRange
		where[key+".name"] = qb.LabelRanges[0]
		qc, diags := qb.Body.Content(querySchema)
		d.add(diags)
		note(where, key, qc.Attributes)
		q := Query{Name: qb.Labels[0]}
		q.Query, _ = d.str(qc.Attributes, "query")
		if v, ok := d.number(qc.Attributes, "max"); ok {
			q.Max = &v
		}
		if v, ok := d.number(qc.Attributes, "min"); ok {
			q.Min = &v
		}
		an.Queries = append(an.Queries, q)
	}
}

// number decodes a number attribute.
func (d *decoder) number(a hcl.Attributes, name string) (float64, bool) {
	attr, ok := a[name]
	if !ok {
		return 0, false
	}
	v, ok := d.eval(attr, cty.Number)
	if !ok {
		return 0, false
	}
	f, _ := v.AsBigFloat().Float64()
	return f, true
}

// anyDuration decodes a duration attribute, reporting only one that is not a duration:
// its bounds are ValidateService's.
func (d *decoder) anyDuration(a hcl.Attributes, name string) (time.Duration, bool) {
	s, ok := d.str(a, name)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.errorf(a[name].Expr.Range().Ptr(), "Invalid duration", "%s = %q: write a duration, like \"500ms\", \"30s\" or \"2m\".", name, s)
		return 0, false
	}
	return v, true
}

// Bounds of a canary's analysis.
const (
	minAnalysisInterval = 100 * time.Millisecond
	minRequestsMin      = 1
	minRequestsMax      = 1000000
)

// validateCanary checks the canary settings of u (see ValidateService): that they are
// given with strategy canary only, and their values.
func validateCanary(u Update) []Problem {
	var out []Problem
	add := func(attr, summary, format string, args ...any) {
		out = append(out, Problem{attr, summary, fmt.Sprintf(format, args...)})
	}
	c := u.Canary
	switch {
	case u.Strategy != StrategyCanary && c != nil:
		add("update", "Canary settings outside a canary", "The steps, analysis and sticky of a canary apply to strategy = %q only: set it, or remove them.", StrategyCanary)
		return out
	case u.Strategy != StrategyCanary:
		return out
	case c == nil:
		add("update", "Missing canary settings", "strategy = %q needs the canary's steps and analysis.", StrategyCanary)
		return out
	}
	switch n := len(c.Steps); {
	case n == 0:
		add("update.step", "Missing canary steps", "A canary needs at least one step, like step { weight = 10, duration = \"1m\" }.")
	case n > MaxCanarySteps:
		add(fmt.Sprintf("update.step[%d]", MaxCanarySteps), "Too many canary steps", "A canary has at most %d steps, and this one has %d: merge some of them.", MaxCanarySteps, n)
	}
	prev, prevStep := 0.0, 0 // the weight of the last step with a valid one, and its number
	for i, st := range c.Steps {
		key, n := fmt.Sprintf("update.step[%d]", i), i+1
		if st.Pause {
			if i == 0 {
				add(key+".pause", "Invalid canary step", "The first step cannot be a pause: there is no weight before it to keep. Start with a step that has weight and duration, like weight = 5 and duration = \"1m\".")
			}
			if st.Weight != 0 {
				add(key+".weight", "Invalid canary step", "Step %d pauses at the weight of the step before it, until `kiln promote`: remove its weight, or pause = true.", n)
			}
			if st.Duration != 0 {
				add(key+".duration", "Invalid canary step", "Step %d pauses until `kiln promote`, however long that takes: remove its duration, or pause = true.", n)
			}
			continue
		}
		switch w := st.Weight; {
		case w == 0:
			add(key+".weight", "Invalid canary step", "Step %d sends no requests to the canary: give it a weight (the percent of the requests the canary takes, above 0 and below 100, like 5 or 0.5) and a duration, or make it pause = true.", n)
		case !(w > 0 && w < 100):
			add(key+".weight", "Invalid canary weight", "weight = %g: a step's weight is the percent of the requests the canary takes, above 0 and below 100, like 5 or 0.5 (after the last step, the new revision takes them all).", w)
		case w < prev:
			add(key+".weight", "Canary weight goes down", "Step %d's weight (%g) is below step %d's (%g): a canary's weights never decrease from one step to the next. Raise it to %g or more, or lower the steps before it.", n, w, prevStep, prev, prev)
			prev, prevStep = w, n
		default:
			prev, prevStep = w, n
		}
		switch {
		case st.Duration == 0:
			add(key+".duration", "Invalid canary step", "Step %d needs a duration: how long the canary takes its weight of the requests before the next step, at least 1s, like \"1m\".", n)
		case st.Duration < time.Second:
			add(key+".duration", "Invalid canary step", "duration = %s: a step lasts at least 1s, like \"30s\" or \"2m\".", st.Duration)
		}
	}
	if !validSticky(c.Sticky) {
		var near []string
		for _, s := range []string{StickyCookie, "header:" + c.Sticky[strings.IndexAny(c.Sticky, ":=")+1:]} {
			if validSticky(s) {
				near = append(near, s)
			}
		}
		add("update.sticky", "Invalid sticky", "sticky = %q: use %q (a cookie keeps each client on one side), \"header:NAME\" (each value of the request header NAME, of letters, digits and '-', stays on one side, like \"header:X-User-Id\"), or leave it out to draw each request afresh.%s", c.Sticky, StickyCookie, didYouMean(c.Sticky, near))
	}
	return append(out, validateAnalysis(c.Analysis)...)
}

// StickyCookie is the Canary.Sticky that keeps each client on one side by a cookie.
const StickyCookie = "cookie"

// validSticky reports whether s is a Canary.Sticky: "", "cookie", or "header:NAME"
// with NAME of letters, digits and '-'.
func validSticky(s string) bool {
	if s == "" || s == StickyCookie {
		return true
	}
	name, ok := strings.CutPrefix(s, "header:")
	if !ok || name == "" {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func validateAnalysis(an Analysis) []Problem {
	var out []Problem
	add := func(attr, summary, format string, args ...any) {
		out = append(out, Problem{"update.analysis." + attr, summary, fmt.Sprintf(format, args...)})
	}
	if an.Interval < minAnalysisInterval {
		add("interval", "Invalid analysis interval", "interval = %s: how often the canary's figures are read and judged, at least %s, like \"1s\".", an.Interval, minAnalysisInterval)
	}
	if an.MinRequests < minRequestsMin || an.MinRequests > minRequestsMax {
		out = append(out, wholeNumberProblem("update.analysis.min_requests", minRequestsMin, minRequestsMax))
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"max_error_ratio", an.MaxErrorRatio}, {"max_error_ratio_over_stable", an.MaxErrorRatioOverStable}} {
		if !(r.v >= 0 && r.v <= 1) {
			add(r.name, "Invalid error ratio", "%s = %g: write a share of the requests from 0 to 1, like 0.05 for 5%%; 0 is not checked.", r.name, r.v)
		}
	}
	for _, l := range []struct {
		name string
		v    time.Duration
	}{{"max_p50", an.MaxP50}, {"max_p99", an.MaxP99}, {"max_p50_over_stable", an.MaxP50OverStable}, {"max_p99_over_stable", an.MaxP99OverStable}} {
		if l.v < 0 {
			add(l.name, "Invalid latency limit", "%s = %s: write a duration of 0s or more, like \"200ms\"; \"0s\" is not checked.", l.name, l.v)
		}
	}
	if p := an.Prometheus; p != "" {
		if u, err := url.Parse(p); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("prometheus", "Invalid Prometheus URL", "prometheus = %q: write the base URL of a Prometheus, like \"http://127.0.0.1:9090\".", p)
		}
	}
	if n := len(an.Queries); n > MaxQueries {
		add(fmt.Sprintf("query[%d]", MaxQueries), "Too many queries", "An analysis sends at most %d queries at each interval, and this one has %d: combine some of them in PromQL.", MaxQueries, n)
	}
	seen := map[string]int{}
	for i, q := range an.Queries {
		key, n := fmt.Sprintf("query[%d]", i), i+1
		switch first, dup := seen[q.Name]; {
		case q.Name == "":
			add(key+".name", "Missing query name", "Query %d needs a name, as in query \"checkout_errors\" { ... }.", n)
		case dup:
			add(key+".name", "Duplicate query", "A query named %q is already declared (query %d); the names of an analysis's queries are unique.", q.Name, first)
		default:
			seen[q.Name] = n
		}
		if strings.TrimSpace(q.Query) == "" {
			add(key+".query", "Missing query", "Query %q needs query = \"...\": a PromQL instant query whose result is one number.", q.Name)
		}
		switch {
		case q.Max == nil && q.Min == nil:
			add(key, "Query without a limit", "Query %q needs max, min or both: the bounds its result must stay within.", q.Name)
		case q.Max != nil && q.Min != nil && *q.Min > *q.Max:
			add(key+".min", "Invalid query limits", "Query %q's min (%g) is above its max (%g): no result could pass.", q.Name, *q.Min, *q.Max)
		}
		if i == 0 && an.Prometheus == "" {
			add(key, "Query without Prometheus", "Query %q is sent to a Prometheus, and the analysis names none: set prometheus to its base URL, like \"http://127.0.0.1:9090\", in the analysis block.", q.Name)
		}
	}
	return out
}
