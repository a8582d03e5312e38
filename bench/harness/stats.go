package harness

import (
	"math"
	"slices"
)

// Median is the median of v (the mean of the middle two when len(v) is even); NaN
// when v is empty. v is not changed.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Summary is what a table shows of a series of samples.
type Summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Sum    float64 `json:"sum"`
}

// Summarize returns the summary of v; the zero Summary when v is empty (JSON has no
// NaN).
func Summarize(v []float64) Summary {
	if len(v) == 0 {
		return Summary{}
	}
	s := Summary{N: len(v), Median: Median(v), Min: slices.Min(v), Max: slices.Max(v)}
	for _, x := range v {
		s.Sum += x
	}
	return s
}

// Div is a/b, NaN when either is NaN or b is 0.
func Div(a, b float64) float64 {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return math.NaN()
	}
	return a / b
}
