package engine

import "github.com/kiln-build/kiln/internal/plan"

// reasonKind classifies why the controller replaces a server: what it acts on and
// counts (the kiln_replacements_total reason label), never the wording of the detail.
type reasonKind string

const (
	reasonExited      reasonKind = "exited"      // its process ended, or it never started
	reasonUnhealthy   reasonKind = "unhealthy"   // it failed its health checks
	reasonDrift       reasonKind = "drift"       // it differs from its spec, or was altered
	reasonExec        reasonKind = "exec"        // a process was started in it from outside
	reasonMissing     reasonKind = "missing"     // a replica was missing
	reasonSurplus     reasonKind = "surplus"     // more servers than replicas
	reasonUnreachable reasonKind = "unreachable" // the runtime published no address
	reasonOther       reasonKind = "other"
)

// reason is why a server is replaced: a kind, and a detail for people.
type reason struct {
	kind   reasonKind
	detail string
}

// isDrift reports whether a replacement for this reason is drift, not a failure: it
// does not count towards a crash loop.
func (k reasonKind) isDrift() bool { return k == reasonDrift || k == reasonExec }

// label is the reason's value of the kiln_replacements_total reason label: an exec
// is counted as drift.
func (k reasonKind) label() string {
	if k == reasonExec {
		return string(reasonDrift)
	}
	return string(k)
}

// causeReason is the reason kind of a change plan.Compute found.
func causeReason(c plan.Cause) reasonKind {
	switch c {
	case plan.CauseMissing:
		return reasonMissing
	case plan.CauseNotRunning:
		return reasonExited
	case plan.CauseUnreachable:
		return reasonUnreachable
	case plan.CauseSurplus:
		return reasonSurplus
	case plan.CauseAltered:
		return reasonDrift
	}
	return reasonOther
}
