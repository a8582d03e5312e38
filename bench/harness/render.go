package harness

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Markdown renders r as the tables bench/results keeps: one row per series (median
// and range of its samples), the ratios, the goals, the failed runs, the notes and the
// machine.
func Markdown(r *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s (%s)\n\n", r.Title, r.Date.UTC().Format("2006-01-02T15:04Z"))
	fmt.Fprintf(&b, "Median (min–max) of the runs of each series; %d run(s) asked for. Rendered from the JSON file of the same name (`kiln-bench render`).\n\n", r.Runs)
	for _, t := range r.Tables {
		table(&b, r, t)
	}
	if len(r.Tables) > 0 {
		b.WriteString("## Every series\n\n")
	}
	b.WriteString("| system | metric | median | min–max | runs | samples |\n| --- | --- | ---: | ---: | ---: | --- |\n")
	for _, s := range r.Series {
		if s.Summary.N == 0 {
			fmt.Fprintf(&b, "| %s | %s | – | – | 0 | |\n", s.System, s.Metric)
			continue
		}
		samples := make([]string, len(s.Samples))
		for i, v := range s.Samples {
			samples[i] = num(v, s.Unit)
		}
		fmt.Fprintf(&b, "| %s | %s | %s%s | %s | %d | %s |\n", s.System, s.Metric, num(s.Summary.Median, s.Unit), unit(s.Unit),
			span(s.Summary, s.Unit), s.Summary.N, strings.Join(samples, ", "))
	}
	if len(r.Ratios) > 0 {
		b.WriteString("\n## Ratios\n\nMedian over median.\n\n| ratio | of | over | value |\n| --- | --- | --- | ---: |\n")
		for _, x := range r.Ratios {
			fmt.Fprintf(&b, "| %s | %s | %s | %.2f× |\n", x.Name, x.Of, x.Over, x.Value)
		}
	}
	if len(r.Goals) > 0 {
		b.WriteString("\n## Goals\n\n| goal | result | bound | met |\n| --- | ---: | ---: | :---: |\n")
		for _, g := range r.Goals {
			op, met := "≤", "yes"
			if g.Strict {
				op = "<"
			}
			if !g.Met {
				met = "**no**"
			}
			fmt.Fprintf(&b, "| %s | %s%s | %s %s%s | %s |\n", g.Goal, num(g.Value, g.Unit), unit(g.Unit), op, num(g.Max, g.Unit), unit(g.Unit), met)
		}
	}
	if len(r.Failures) > 0 {
		b.WriteString("\n## Failed runs\n\n")
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n## How it was measured\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	m := r.Machine
	b.WriteString("\n## Setup\n\n")
	fmt.Fprintf(&b, "- machine: %s, %d cores, %d MiB, Linux %s; %s\n", m.CPU, m.Cores, m.MemoryMiB, m.Kernel, m.Go)
	if m.Docker != "" {
		fmt.Fprintf(&b, "- Docker: engine %s, storage driver %s\n", m.Docker, m.Storage)
	}
	fmt.Fprintf(&b, "- other work on the machine (shared with other engineers' tests): before, %s; after, %s\n", m.LoadBefore, m.LoadAfter)
	dirty := ""
	if r.Kiln.Dirty {
		dirty = " (with uncommitted changes)"
	}
	fmt.Fprintf(&b, "- kiln: commit %s%s\n", r.Kiln.Commit, dirty)
	fmt.Fprintf(&b, "- wall time: %.0f s\n", r.WallSeconds)
	return b.String()
}

// table renders a view of r's series: a row per system (per metric when ByMetric),
// a column per metric (per system).
func table(b *strings.Builder, r *Result, t Table) {
	rows, cols := t.Systems, t.Metrics
	corner := "system"
	if t.ByMetric {
		rows, cols, corner = t.Metrics, t.Systems, "metric"
	}
	if t.Corner != "" {
		corner = t.Corner
	}
	fmt.Fprintf(b, "## %s\n\n", t.Title)
	if t.Note != "" {
		fmt.Fprintf(b, "%s\n\n", t.Note)
	}
	b.WriteString("| " + corner + " |")
	for _, c := range cols {
		b.WriteString(" " + c + " |")
	}
	b.WriteString("\n| --- |" + strings.Repeat(" ---: |", len(cols)) + "\n")
	for _, row := range rows {
		b.WriteString("| " + row + " |")
		for _, c := range cols {
			sys, metric := row, c
			if t.ByMetric {
				sys, metric = c, row
			}
			b.WriteString(" " + cell(r.series(sys, metric)) + " |")
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// cell is a series' median with its unit, and its range when its samples differ as
// printed.
func cell(s *Series) string {
	if s == nil || s.Summary.N == 0 {
		return "–"
	}
	c := num(s.Summary.Median, s.Unit) + unit(s.Unit)
	if num(s.Summary.Min, s.Unit) != num(s.Summary.Max, s.Unit) {
		c += " (" + span(s.Summary, s.Unit) + ")"
	}
	return c
}

// span is a summary's range, min–max, or "min to max" when a bound is negative (an
// en dash beside a minus sign reads as neither).
func span(s Summary, u string) string {
	sep := "–"
	if s.Min < 0 || s.Max < 0 {
		sep = " to "
	}
	return num(s.Min, u) + sep + num(s.Max, u)
}

// num prints v with two decimals (three under 1, one from 100), and counts (no unit)
// that are integers as such.
func num(v float64, unit string) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "–"
	case unit == "" && v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatInt(int64(v), 10)
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

func unit(u string) string {
	if u == "" || u == "×" {
		return u
	}
	return " " + u
}
