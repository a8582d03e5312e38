package dashboard

import (
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/api"
)

// funcs are the helpers the templates use.
var funcs = template.FuncMap{
	"ago":        ago,
	"between":    between,
	"short":      short,
	"size":       size,
	"spark":      spark,
	"rfc":        func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"clock":      func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") },
	"tone":       tone,
	"contains":   strings.Contains,
	"query":      query,
	"list":       func(s ...string) []string { return s },
	"section":    section,
	"sorthead":   sorthead,
	"step":       step,
	"statusText": http.StatusText,
	"pct":        func(r float64) string { return fmt.Sprintf("%.2f%%", 100*r) },
	"ms":         func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) },
}

// section is the navigation entry a path belongs to.
func section(path string) string {
	for _, s := range []string{"events", "pipelines", "runs", "images"} {
		if strings.HasPrefix(path, "/"+s) {
			if s == "runs" {
				return "pipelines"
			}
			return s
		}
	}
	return "fleet"
}

// sortHead is a sortable column's heading: a link that sorts by its key, or reverses
// the order if the list is sorted by it already.
type sortHead struct {
	URL              *url.URL
	Sort, Key, Label string
	Next             string
	Num              bool
}

func sorthead(u *url.URL, sort, key, label string) sortHead {
	next := key
	if sort == key {
		next = "-" + key
	}
	return sortHead{URL: u, Sort: sort, Key: key, Label: label, Next: next}
}

// step names a rollout event as a step (see api.EventTypeInfo).
func step(typ string) string {
	if st := api.EventTypeInfo(typ).Step; st != "" {
		return st
	}
	return strings.ReplaceAll(typ, "_", " ")
}

// ago says how long before now t was: "4s", "3m", "2h", "5d".
func ago(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return roughly(time.Since(t))
}

func roughly(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// between is the time from a to b, precise for short spans; "–" if either is unknown
// and "running" if b is.
func between(a, b time.Time) string {
	if a.IsZero() {
		return "–"
	}
	if b.IsZero() {
		return "running for " + roughly(time.Since(a))
	}
	d := b.Sub(a)
	if d < time.Minute {
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// short is the first 12 hex digits of a digest or ID.
func short(s string) string {
	s = strings.TrimPrefix(s, "sha256:")
	return s[:min(12, len(s))]
}

func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// tone is the colour class of a state or event word: good, in progress, bad, or
// neutral ("").
func tone(word string) string {
	switch word { // states; event types have theirs in api.EventTypeInfo
	case "healthy", "running", "succeeded", "current", "newest", "pass", "promoted":
		return "ok"
	case "rolling out", "healing", "waiting", "stopping", "queued", "pending", "superseded", "wait", "starting":
		return "busy"
	case "failing", "interrupted", "exited", "fail", "aborted":
		return "bad"
	default:
		return api.EventTypeInfo(word).Tone
	}
}

// query returns the page's query with key set to value (removed if value is ""),
// for links that change one filter or the page.
func query(u *url.URL, key, value string) string {
	q := u.Query()
	if value == "" {
		q.Del(key)
	} else {
		q.Set(key, value)
	}
	if key != "page" && key != "before" && !strings.HasPrefix(key, "page-") {
		q.Del("page")
		q.Del("before")
	}
	if len(q) == 0 {
		return u.Path
	}
	return u.Path + "?" + q.Encode()
}

// spark draws a front door's recent traffic as an inline SVG: requests in one line,
// errors in another, with the totals as its accessible name.
func spark(samples []api.Sample) template.HTML {
	const w, h = 120, 24
	if len(samples) == 0 {
		return `<span class="muted">no traffic yet</span>`
	}
	var peak, reqs, errs int64 = 1, 0, 0
	for _, s := range samples {
		peak = max(peak, s.Requests)
		reqs += s.Requests
		errs += s.Errors
	}
	line := func(v func(api.Sample) int64) string {
		var b strings.Builder
		step := float64(w) / float64(max(len(samples)-1, 1))
		for i, s := range samples {
			x := float64(i) * step
			y := float64(h-2) - float64(v(s))/float64(peak)*float64(h-4)
			fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
		}
		return strings.TrimSpace(b.String())
	}
	span := time.Duration(len(samples)) * trafficStep
	label := fmt.Sprintf("%d requests, %d errors in the last %s", reqs, errs, roughly(span))
	svg := fmt.Sprintf(`<svg class="spark" role="img" aria-label="%s" viewBox="0 0 %d %d" width="%d" height="%d"><title>%s</title>`+
		`<polyline class="req" fill="none" points="%s"/><polyline class="err" fill="none" points="%s"/></svg>`,
		template.HTMLEscapeString(label), w, h, w, h, template.HTMLEscapeString(label),
		line(func(s api.Sample) int64 { return s.Requests }), line(func(s api.Sample) int64 { return s.Errors }))
	return template.HTML(svg + ` <span class="muted">` + strconv.FormatInt(reqs, 10) + ` req` + errText(errs) + `</span>`)
}

// trafficStep is the engine's sampling interval (engine.trafficStep).
const trafficStep = 10 * time.Second

func errText(n int64) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(`, <span class="bad">%d err</span>`, n)
}
