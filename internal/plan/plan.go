package plan

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/kiln-build/kiln/internal/driver"
)

// Desired is what one service should be: Replicas servers from Spec.
type Desired struct {
	Service  string
	Revision int64
	Spec     driver.ServerSpec
	Replicas int
	// Settings are the changes to the service's settings that are not part of its
	// servers' spec (its front door, health check, update and drift settings), as
	// "listen 127.0.0.1:8090 → 127.0.0.1:8093": applying them changes no server, yet
	// they are changes.
	Settings []string
	// Rollout describes how the servers will be replaced, when that is worth showing
	// (a canary's steps); "" otherwise.
	Rollout string
}

// Action is what happens to one server.
type Action string

const (
	Create  Action = "create"
	Replace Action = "replace" // destroy an old server and create one from the new spec
	Destroy Action = "destroy"
)

// Change is one action on one server. Old is the observed server (nil for Create).
// Cause classifies it; Reasons explain it to people.
type Change struct {
	Action  Action
	Old     *driver.Server
	Cause   Cause
	Reasons []string
}

// Cause is why a change is planned: what callers act on and count, never the wording
// of Reasons.
type Cause string

const (
	CauseMissing     Cause = "missing"     // a replica is missing (Create)
	CauseRemoved     Cause = "removed"     // the service is not in the spec
	CauseNotRunning  Cause = "not_running" // the server exited or never started
	CauseUnreachable Cause = "unreachable" // the runtime published no address for it
	CauseSurplus     Cause = "surplus"     // more servers than replicas
	CauseAltered     Cause = "altered"     // its recorded spec does not match its identity
	CauseChanged     Cause = "changed"     // its spec is not the desired one
)

// Service is the plan of one service.
type Service struct {
	Service  string
	Revision int64 // 0 when the service is to be removed
	Spec     *driver.ServerSpec
	Replicas int
	// Keep are the servers that already match the spec and stay.
	Keep    []driver.Server
	Changes []Change
	// Settings are the service's setting changes (see Desired.Settings).
	Settings []string
	Rollout  string // see Desired.Rollout
	// Packages are the changes of the OS packages between the image its replaced
	// servers run and Spec's (imagestore.PackageChanges), when the caller knows both.
	Packages []string
}

// Count returns how many changes have action a.
func (s Service) Count(a Action) int {
	n := 0
	for _, c := range s.Changes {
		if c.Action == a {
			n++
		}
	}
	return n
}

// Plan is the plan of every service, sorted by name.
type Plan struct {
	Services []Service
}

// HasChanges reports whether applying the plan would do anything.
func (p Plan) HasChanges() bool {
	for _, s := range p.Services {
		if len(s.Changes) > 0 || len(s.Settings) > 0 {
			return true
		}
	}
	return false
}

// CountSettings returns how many service settings change.
func (p Plan) CountSettings() int {
	n := 0
	for _, s := range p.Services {
		n += len(s.Settings)
	}
	return n
}

// Count returns how many changes of all services have action a.
func (p Plan) Count(a Action) int {
	n := 0
	for _, s := range p.Services {
		n += s.Count(a)
	}
	return n
}

// Service returns the plan of the named service, if it has one.
func (p Plan) Service(name string) (Service, bool) {
	for _, s := range p.Services {
		if s.Service == name {
			return s, true
		}
	}
	return Service{}, false
}

// Compute compares desired with observed and returns the plan. Every observed server of
// a service not in desired is destroyed: callers pass only the servers they own.
//
// A server is kept if it runs from exactly the desired spec; servers that are not
// running (exited, or created but never started) are destroyed and made up for; servers of another spec are replaced one for
// one, up to Replicas; anything beyond Replicas is destroyed.
func Compute(desired []Desired, observed []driver.Server) Plan {
	byService := map[string][]driver.Server{}
	for _, s := range observed {
		byService[s.Service] = append(byService[s.Service], s)
	}
	var p Plan
	seen := map[string]bool{}
	for _, d := range desired {
		seen[d.Service] = true
		p.Services = append(p.Services, computeService(d, byService[d.Service]))
	}
	for _, name := range slices.Sorted(maps.Keys(byService)) {
		if seen[name] {
			continue
		}
		sp := Service{Service: name}
		for _, s := range sortServers(byService[name]) {
			sp.Changes = append(sp.Changes, Change{Action: Destroy, Old: &s, Cause: CauseRemoved, Reasons: []string{"service is not in the spec"}})
		}
		p.Services = append(p.Services, sp)
	}
	sort.Slice(p.Services, func(i, j int) bool { return p.Services[i].Service < p.Services[j].Service })
	return p
}

func computeService(d Desired, observed []driver.Server) Service {
	spec := d.Spec
	spec.Service, spec.Revision = d.Service, d.Revision
	hash := spec.Hash()
	sp := Service{Service: d.Service, Revision: d.Revision, Spec: &spec, Replicas: d.Replicas, Settings: d.Settings, Rollout: d.Rollout}

	var matching, stale []driver.Server
	for _, s := range sortServers(observed) {
		switch {
		case s.State != driver.StateRunning: // a server that is not running is not serving
			sp.Changes = append(sp.Changes, Change{Action: Destroy, Old: &s, Cause: CauseNotRunning, Reasons: []string{"server is " + stateWord(s)}})
		case s.Address == "": // nor is one that cannot be reached
			sp.Changes = append(sp.Changes, Change{Action: Destroy, Old: &s, Cause: CauseUnreachable, Reasons: []string{"server is unreachable (no published address)"}})
		case s.SpecHash == hash && s.Spec.Hash() == hash:
			matching = append(matching, s)
		default:
			stale = append(stale, s)
		}
	}
	for i, s := range matching {
		if i < d.Replicas {
			sp.Keep = append(sp.Keep, s)
			continue
		}
		sp.Changes = append(sp.Changes, Change{Action: Destroy, Old: &s, Cause: CauseSurplus, Reasons: []string{fmt.Sprintf("more than %d replicas", d.Replicas)}})
	}
	need := d.Replicas - len(sp.Keep)
	for _, s := range stale {
		if need > 0 {
			need--
			sp.Changes = append(sp.Changes, Change{Action: Replace, Old: &s, Cause: staleCause(s), Reasons: Reasons(s, spec)})
			continue
		}
		reasons := append([]string{fmt.Sprintf("more than %d replicas", d.Replicas)}, Reasons(s, spec)...)
		sp.Changes = append(sp.Changes, Change{Action: Destroy, Old: &s, Cause: CauseSurplus, Reasons: reasons})
	}
	for ; need > 0; need-- {
		sp.Changes = append(sp.Changes, Change{Action: Create, Cause: CauseMissing})
	}
	return sp
}

// staleCause is the cause of replacing s, which does not match the desired spec.
func staleCause(s driver.Server) Cause {
	if altered(s) {
		return CauseAltered
	}
	return CauseChanged
}

// altered reports whether s's recorded spec does not match the identity it carries.
func altered(s driver.Server) bool { return s.SpecHash != "" && s.Spec.Hash() != s.SpecHash }

func stateWord(s driver.Server) string {
	switch s.State {
	case driver.StateExited:
		return "exited"
	case driver.StateCreated:
		return "created but never started"
	}
	return "not running (" + string(s.State) + ")"
}

// sortServers orders servers oldest first (then by ID): the oldest are kept, so a scale
// down removes the newest and healing leaves long-running servers alone.
func sortServers(servers []driver.Server) []driver.Server {
	out := slices.Clone(servers)
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Reasons explains why server s does not match spec, field by field. Environment
// values are never shown, only the names of the variables, since they may be secrets.
func Reasons(s driver.Server, spec driver.ServerSpec) []string {
	old := s.Spec
	if altered(s) {
		return []string{"server was altered after it was created (its recorded spec does not match its identity)"}
	}
	var r []string
	if old.Image != spec.Image {
		r = append(r, fmt.Sprintf("image %s → %s", shortDigest(old.Image), shortDigest(spec.Image)))
	}
	if !slices.Equal(old.Command, spec.Command) {
		r = append(r, fmt.Sprintf("command %q → %q", old.Command, spec.Command))
	}
	if !slices.Equal(old.Args, spec.Args) {
		r = append(r, fmt.Sprintf("args %q → %q", old.Args, spec.Args))
	}
	if changed := envChanges(digests(old.Digests, "env:"), digests(spec.Digests, "env:")); changed != "" {
		r = append(r, "env "+changed)
	}
	if changed := envChanges(digests(old.Digests, "file:"), digests(spec.Digests, "file:")); changed != "" {
		r = append(r, "secret files "+changed)
	}
	if old.User != spec.User {
		r = append(r, fmt.Sprintf("user %q → %q", old.User, spec.User))
	}
	if old.Port != spec.Port {
		r = append(r, fmt.Sprintf("port %d → %d", old.Port, spec.Port))
	}
	if !slices.Equal(old.Writable, spec.Writable) {
		r = append(r, fmt.Sprintf("writable %q → %q", old.Writable, spec.Writable))
	}
	if old.Resources != spec.Resources {
		r = append(r, fmt.Sprintf("resources %s → %s", resources(old.Resources), resources(spec.Resources)))
	}
	if len(r) == 0 && old.Service != spec.Service {
		r = append(r, fmt.Sprintf("service %q → %q", old.Service, spec.Service))
	}
	if len(r) == 0 {
		r = append(r, "spec changed")
	}
	return r
}

// digests are the entries of a spec's Digests whose key starts with prefix, by the
// rest of the key: the variables' or files' digests.
func digests(all map[string]string, prefix string) map[string]string {
	out := map[string]string{}
	for k, v := range all {
		if name, ok := strings.CutPrefix(k, prefix); ok {
			out[name] = v
		}
	}
	return out
}

func envChanges(old, new map[string]string) string {
	var added, removed, changed []string
	for k, v := range new {
		ov, ok := old[k]
		switch {
		case !ok:
			added = append(added, k)
		case ov != v:
			changed = append(changed, k)
		}
	}
	for k := range old {
		if _, ok := new[k]; !ok {
			removed = append(removed, k)
		}
	}
	var parts []string
	for _, g := range []struct {
		sign string
		keys []string
	}{{"+", added}, {"~", changed}, {"-", removed}} {
		sort.Strings(g.keys)
		for _, k := range g.keys {
			parts = append(parts, g.sign+k)
		}
	}
	return strings.Join(parts, " ")
}

func resources(r driver.Resources) string {
	s := fmt.Sprintf("memory=%dMiB pids=%d", r.MemoryBytes>>20, r.PIDs)
	if r.CPUs > 0 {
		s = fmt.Sprintf("cpus=%g ", r.CPUs) + s
	}
	return s
}

func shortDigest(d string) string {
	if h, ok := strings.CutPrefix(d, "sha256:"); ok && len(h) >= 12 {
		return h[:12]
	}
	return d
}
