package harness

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"
)

// Result is everything one run of a scenario measured: the file kiln-bench writes and
// renders. Its JSON field names are stable: tools compare files of different days.
type Result struct {
	Scenario string    `json:"scenario"`
	Title    string    `json:"title"`
	Date     time.Time `json:"date"`
	Machine  Machine   `json:"machine"`
	Kiln     Kiln      `json:"kiln"`
	Runs     int       `json:"runs"` // runs asked for per series
	// Series are the measurements, one per system and metric, in the order measured.
	Series []Series `json:"series"`
	Ratios []Ratio  `json:"ratios,omitempty"`
	Goals  []Goal   `json:"goals,omitempty"`
	// Tables are views of the series, rendered above the list of every series.
	Tables []Table `json:"tables,omitempty"`
	// Failures are the runs that did not complete, with why; their samples are left out.
	Failures []string `json:"failures,omitempty"`
	// Notes say what was measured and how: rendered as a list under the tables.
	Notes       []string `json:"notes,omitempty"`
	WallSeconds float64  `json:"wall_seconds"`
}

// Kiln is the kiln that was measured.
type Kiln struct {
	Commit string `json:"commit"`
	Dirty  bool   `json:"dirty"` // the work tree had uncommitted changes
}

// Series is one metric of one system, sample by sample.
type Series struct {
	System  string    `json:"system"`
	Metric  string    `json:"metric"`
	Unit    string    `json:"unit"`
	Samples []float64 `json:"samples"`
	Summary Summary   `json:"summary"`
}

// Ratio is the median of one series over the median of another.
type Ratio struct {
	Name  string  `json:"name"`
	Of    string  `json:"of"`   // "system / metric" of the numerator
	Over  string  `json:"over"` // "system / metric" of the denominator
	Value float64 `json:"value"`
}

// Goal is a figure the project reports against a bound: met when Value ≤ Max (< Max
// when Strict).
type Goal struct {
	Goal   string  `json:"goal"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Max    float64 `json:"max"`
	Strict bool    `json:"strict,omitempty"`
	Met    bool    `json:"met"`
}

// Table is a view of some series: the median (min–max) of each (system, metric)
// pair, systems as rows and metrics as columns, or the other way round when ByMetric.
// A pair with no samples shows as "–".
type Table struct {
	Title string `json:"title"`
	Note  string `json:"note,omitempty"`
	// Corner heads the first column ("system", or "metric" when ByMetric, if empty).
	Corner   string   `json:"corner,omitempty"`
	Systems  []string `json:"systems"`
	Metrics  []string `json:"metrics"`
	ByMetric bool     `json:"by_metric,omitempty"`
}

// AddTable records a view of the series.
func (r *Result) AddTable(t Table) { r.Tables = append(r.Tables, t) }

// Add records a sample of system's metric, creating the series on first use.
func (r *Result) Add(system, metric, unit string, v float64) {
	s := r.series(system, metric)
	if s == nil {
		r.Series = append(r.Series, Series{System: system, Metric: metric, Unit: unit})
		s = &r.Series[len(r.Series)-1]
	}
	s.Samples = append(s.Samples, v)
	s.Summary = Summarize(s.Samples)
}

func (r *Result) series(system, metric string) *Series {
	for i := range r.Series {
		if r.Series[i].System == system && r.Series[i].Metric == metric {
			return &r.Series[i]
		}
	}
	return nil
}

// Median is the median of system's metric, and false when it has no sample.
func (r *Result) Median(system, metric string) (float64, bool) {
	s := r.series(system, metric)
	if s == nil || s.Summary.N == 0 {
		return 0, false
	}
	return s.Summary.Median, true
}

// AddRatio records the median of (system, metric) over the median of (over, metric),
// and returns it; false (and nothing recorded) when either has no sample.
func (r *Result) AddRatio(name, system, over, metric string) (float64, bool) {
	a, ok1 := r.Median(system, metric)
	b, ok2 := r.Median(over, metric)
	v := Div(a, b)
	if !ok1 || !ok2 || math.IsNaN(v) {
		return 0, false
	}
	r.Ratios = append(r.Ratios, Ratio{Name: name, Of: system + " / " + metric, Over: over + " / " + metric, Value: v})
	return v, true
}

// AddGoal records whether v meets the bound max.
func (r *Result) AddGoal(goal string, v float64, unit string, max float64, strict bool) {
	met := v <= max
	if strict {
		met = v < max
	}
	r.Goals = append(r.Goals, Goal{Goal: goal, Value: v, Unit: unit, Max: max, Strict: strict, Met: met})
}

// Failf records a run that did not complete.
func (r *Result) Failf(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// Write writes r to dir as <scenario>-<date>.json and its Markdown beside it, and
// returns the JSON file's path. An existing file of the same minute is replaced.
func (r *Result) Write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("writing results: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding results: %w", err)
	}
	base := filepath.Join(dir, r.Scenario+"-"+r.Date.UTC().Format("2006-01-02-1504"))
	if err := os.WriteFile(base+".json", append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("writing results: %w", err)
	}
	if err := os.WriteFile(base+".md", []byte(Markdown(r)), 0o644); err != nil {
		return "", fmt.Errorf("writing results: %w", err)
	}
	return base + ".json", nil
}

// Load reads a result file that Write wrote.
func Load(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if r.Scenario == "" {
		return nil, fmt.Errorf("reading %s: %w", path, ErrNotResult)
	}
	return &r, nil
}

// ErrNotResult means a JSON file is not a result kiln-bench wrote.
var ErrNotResult = errors.New("not a kiln-bench result (no scenario)")
