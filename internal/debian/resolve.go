package debian

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/agext/levenshtein"
	"pault.ag/go/debian/dependency"
	"pault.ag/go/debian/version"
)

// Package is one resolved package: a .deb of a repository, named by its SHA-256.
type Package struct {
	Name    string
	Version string
	Arch    string // the package's architecture: the index's, or "all"
	Suite   string // the suite whose index listed it
	URL     string // where the .deb is: the repository's root + the index's Filename
	Size    int64
	SHA256  string
}

// ErrNotFound is wrapped by a NotFoundError.
var ErrNotFound = errors.New("no such package")

// NotFoundError is a package (asked for, or depended on) that no suite of the index
// has, or has at no version that fits.
type NotFoundError struct {
	Name       string
	Constraint string // e.g. ">= 2.36", "" when any version would do
	Needed     string // the package that depends on it, "" when it was asked for
	Suites     []string
	Repos      []string
	Arch       string
	Maybe      string // a similar name the index has, "" when none
}

func (e *NotFoundError) Error() string {
	what := fmt.Sprintf("package %q", e.Name)
	if e.Constraint != "" {
		what += " (" + e.Constraint + ")"
	}
	if e.Needed != "" {
		what = e.Needed + " depends on " + what + ", which"
	}
	msg := fmt.Sprintf("%s is not in %s (%s) for %s", what, strings.Join(e.Suites, ", "), strings.Join(e.Repos, ", "), e.Arch)
	if e.Constraint != "" {
		msg = fmt.Sprintf("%s is not in %s (%s) for %s at a version that fits", what, strings.Join(e.Suites, ", "), strings.Join(e.Repos, ", "), e.Arch)
	}
	if e.Maybe != "" {
		msg += fmt.Sprintf("; did you mean %q?", e.Maybe)
	}
	return msg
}

func (e *NotFoundError) Unwrap() error { return ErrNotFound }

// Resolve returns the packages names ask for and everything they depend on (Depends
// and Pre-Depends), sorted by name: the dependency closure, and nothing else.
// Essential packages are not added unless something depends on them, and
// Recommends and Suggests are not followed, as distroless builds its images. A name
// may pin a version: "python3=3.11.2-1+b1".
//
// Of the alternatives of a dependency (a | b), the first that is already chosen
// wins, else the first that can be had. Of the versions of a package in several
// suites, the highest that fits the constraint wins. A virtual package is satisfied
// by a package that Provides it (the one of highest priority, then the first by name,
// when several do). The result is a function of the index and names alone.
func (ix *Index) Resolve(names []string) ([]Package, error) {
	rs := &resolver{ix: ix, chosen: map[string]*candidate{}}
	reqs := slices.Sorted(slices.Values(names))
	for _, n := range slices.Compact(reqs) {
		name, ver, pinned := strings.Cut(n, "=")
		var vr *dependency.VersionRelation
		if pinned {
			vr = &dependency.VersionRelation{Operator: "=", Number: ver}
		}
		if sat, _ := rs.satisfied(name, vr); sat {
			continue
		}
		cd := rs.best(name, vr)
		if cd == nil {
			if ps := rs.providersOf(name, vr); len(ps) == 1 {
				cd = ps[0]
			} else if len(ps) > 1 {
				var opts []string
				for _, p := range ps {
					opts = append(opts, p.Name)
				}
				return nil, fmt.Errorf("%q is a virtual package that %s provide: ask for one of them", name, strings.Join(opts, ", "))
			}
		}
		if cd == nil {
			return nil, rs.notFound(name, vr, "")
		}
		if err := rs.choose(cd); err != nil {
			return nil, err
		}
	}
	for len(rs.queue) > 0 {
		cd := rs.queue[0]
		rs.queue = rs.queue[1:]
		if err := rs.follow(cd); err != nil {
			return nil, err
		}
	}
	if err := rs.checkConflicts(); err != nil {
		return nil, err
	}
	out := make([]Package, 0, len(rs.chosen))
	for _, n := range slices.Sorted(maps.Keys(rs.chosen)) {
		out = append(out, rs.chosen[n].Package)
	}
	return out, nil
}

type resolver struct {
	ix     *Index
	chosen map[string]*candidate
	queue  []*candidate
}

func (rs *resolver) choose(cd *candidate) error {
	if prev, ok := rs.chosen[cd.Name]; ok && prev != cd {
		return fmt.Errorf("two versions of %s are needed: %s and %s", cd.Name, prev.Version, cd.Version)
	}
	rs.chosen[cd.Name] = cd
	rs.queue = append(rs.queue, cd)
	return nil
}

// follow chooses what cd's Pre-Depends and Depends need.
func (rs *resolver) follow(cd *candidate) error {
	if cd.depends == "" {
		return nil
	}
	dep, err := dependency.Parse(cd.depends)
	if err != nil {
		return fmt.Errorf("%s %s: its dependencies %q: %w", cd.Name, cd.Version, cd.depends, err)
	}
	for _, rel := range dep.Relations {
		alts := rs.applicable(rel.Possibilities)
		if len(alts) == 0 {
			continue
		}
		done := false
		for _, p := range alts {
			if sat, _ := rs.satisfied(p.Name, p.Version); sat {
				done = true
				break
			}
		}
		if done {
			continue
		}
		var pick *candidate
		for _, p := range alts {
			if _, taken := rs.chosen[p.Name]; taken {
				continue // chosen at a version that does not fit: the next alternative
			}
			if pick = rs.best(p.Name, p.Version); pick != nil {
				break
			}
			if ps := rs.providersOf(p.Name, p.Version); len(ps) > 0 {
				pick = ps[0]
				break
			}
		}
		if pick == nil {
			p := alts[0]
			if prev, taken := rs.chosen[p.Name]; taken && len(alts) == 1 {
				return fmt.Errorf("%s %s depends on %s, but %s %s is chosen (for another package, or as asked)", cd.Name, cd.Version, p.String(), prev.Name, prev.Version)
			}
			if len(alts) == 1 {
				return rs.notFound(p.Name, p.Version, cd.Name+" "+cd.Version)
			}
			return rs.notFound(relationString(alts), nil, cd.Name+" "+cd.Version)
		}
		if err := rs.choose(pick); err != nil {
			return err
		}
	}
	return nil
}

// applicable drops the alternatives that name another architecture's package
// (name:arch other than any/native/the index's) or are substitution variables.
func (rs *resolver) applicable(ps []dependency.Possibility) []dependency.Possibility {
	var out []dependency.Possibility
	for _, p := range ps {
		if p.Substvar {
			continue
		}
		if p.Arch != nil {
			if a := p.Arch.String(); a != "any" && a != "native" && a != rs.ix.Arch {
				continue
			}
		}
		out = append(out, p)
	}
	return out
}

// satisfied says whether a chosen package is, or provides, name at a version that
// fits vr.
func (rs *resolver) satisfied(name string, vr *dependency.VersionRelation) (bool, *candidate) {
	if cd, ok := rs.chosen[name]; ok && fits(cd.ver, vr) {
		return true, cd
	}
	for _, pv := range rs.ix.providers[name] {
		if rs.chosen[pv.cand.Name] == pv.cand && providesFits(pv, vr) {
			return true, pv.cand
		}
	}
	return false, nil
}

// best is the highest version of the real package name that fits vr, nil if none.
func (rs *resolver) best(name string, vr *dependency.VersionRelation) *candidate {
	var top *candidate
	for _, cd := range rs.ix.byName[name] {
		if fits(cd.ver, vr) && (top == nil || version.Compare(cd.ver, top.ver) > 0) {
			top = cd
		}
	}
	return top
}

// providersOf lists the packages (each at its best version) that provide name at a
// version fitting vr, those already chosen first, then by priority, then by name.
func (rs *resolver) providersOf(name string, vr *dependency.VersionRelation) []*candidate {
	seen := map[string]*candidate{}
	for _, pv := range rs.ix.providers[name] {
		if !providesFits(pv, vr) {
			continue
		}
		cd := pv.cand
		if ch, ok := rs.chosen[cd.Name]; ok && ch != cd {
			continue
		}
		if prev, ok := seen[cd.Name]; !ok || version.Compare(cd.ver, prev.ver) > 0 {
			seen[cd.Name] = cd
		}
	}
	out := make([]*candidate, 0, len(seen))
	for _, cd := range seen {
		out = append(out, cd)
	}
	slices.SortFunc(out, func(a, b *candidate) int {
		_, ac := rs.chosen[a.Name]
		_, bc := rs.chosen[b.Name]
		if ac != bc {
			if ac {
				return -1
			}
			return 1
		}
		if pa, pb := priorityRank(a.priority), priorityRank(b.priority); pa != pb {
			return pa - pb
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

func priorityRank(p string) int {
	switch p {
	case "required":
		return 0
	case "important":
		return 1
	case "standard":
		return 2
	case "optional":
		return 3
	}
	return 4
}

// fits says whether v satisfies vr (any version when vr is nil).
func fits(v version.Version, vr *dependency.VersionRelation) bool {
	return vr == nil || vr.SatisfiedBy(v)
}

// providesFits: an unversioned dependency is satisfied by any Provides; a versioned
// one only by a versioned Provides (name (= V)) whose V fits, as dpkg rules.
func providesFits(pv provision, vr *dependency.VersionRelation) bool {
	if vr == nil {
		return true
	}
	if pv.version == "" {
		return false
	}
	v, err := version.Parse(pv.version)
	return err == nil && vr.SatisfiedBy(v)
}

// checkConflicts refuses a set in which one package Conflicts with another chosen one
// (or with what another provides).
func (rs *resolver) checkConflicts() error {
	for _, n := range slices.Sorted(maps.Keys(rs.chosen)) {
		cd := rs.chosen[n]
		if cd.conflicts == "" {
			continue
		}
		dep, err := dependency.Parse(cd.conflicts)
		if err != nil {
			return fmt.Errorf("%s %s: its Conflicts %q: %w", cd.Name, cd.Version, cd.conflicts, err)
		}
		for _, p := range dep.GetAllPossibilities() {
			if other, ok := rs.chosen[p.Name]; ok && other != cd && fits(other.ver, p.Version) {
				return fmt.Errorf("%s %s conflicts with %s %s, which is needed too", cd.Name, cd.Version, other.Name, other.Version)
			}
			if p.Version != nil {
				continue
			}
			for _, pv := range rs.ix.providers[p.Name] {
				if other := pv.cand; rs.chosen[other.Name] == other && other != cd {
					return fmt.Errorf("%s %s conflicts with %s, which %s %s provides and is needed too", cd.Name, cd.Version, p.Name, other.Name, other.Version)
				}
			}
		}
	}
	return nil
}

func (rs *resolver) notFound(name string, vr *dependency.VersionRelation, needed string) error {
	e := &NotFoundError{Name: name, Needed: needed, Arch: rs.ix.Arch}
	if vr != nil {
		e.Constraint = vr.Operator + " " + vr.Number
	}
	for _, r := range rs.ix.Repos {
		e.Suites = append(e.Suites, r.Suite)
		if u := strings.TrimSuffix(r.URI, "/"); !slices.Contains(e.Repos, u) {
			e.Repos = append(e.Repos, u)
		}
	}
	if needed == "" && len(rs.ix.byName[name]) == 0 {
		best, dist := "", 4
		for n := range rs.ix.byName {
			if d := levenshtein.Distance(name, n, nil); d < dist || (d == dist && n < best) {
				best, dist = n, d
			}
		}
		e.Maybe = best
	}
	return e
}

func relationString(ps []dependency.Possibility) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, " | ")
}
