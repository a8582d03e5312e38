package spec

import (
	"fmt"
	"sort"

	"github.com/agext/levenshtein"
)

// didYouMean is " Did you mean "NAME"?" for the candidate closest to given, to append
// to a diagnostic's detail, or "" when none is close. Close is as HCL and Terraform
// judge it, an edit distance under 3, and also at most half the length of given, so a
// short name is not "corrected" into an unrelated one. Ties go to the candidate first
// in sorted order, so the suggestion does not depend on map order.
func didYouMean(given string, candidates []string) string {
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	best, bestDist := "", 3
	for _, c := range sorted {
		if c == given {
			continue
		}
		if d := levenshtein.Distance(given, c, nil); d < bestDist && 2*d <= len([]rune(given)) {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

// keys are the keys of a set, for didYouMean.
func keys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	return out
}
