package driver

import (
	"context"
	"errors"
)

// Sentinel errors of sets, matched with errors.Is.
var (
	// ErrSetConflict: the revision's set exists with another spec. A set is never
	// changed but in size: a new spec is a new revision, so a new set.
	ErrSetConflict = errors.New("the revision's set has another spec")
	// ErrNotInSet: the server is not a member of a set (it was made by Create).
	ErrNotInSet = errors.New("server is not in a set")
)

// SetDriver is implemented by runtimes that run a revision's servers as one set of
// interchangeable servers, kept at a size by the runtime (a Kubernetes ReplicaSet per
// revision). Its contract is the ReplicaSet's: kiln asks for a size, the runtime
// converges to it, and kiln watches the members and probes their health as it does for
// servers it creates one by one. A set's servers are listed by List too, as any
// server kiln manages.
type SetDriver interface {
	// EnsureSet makes the set of spec's revision (SetOf(spec)) exist, made from spec,
	// and sets its size to replicas (zero keeps an empty set). It is idempotent and
	// returns once the runtime has recorded the size, before servers are created or
	// ready: members come and go as the runtime converges. Growing a set keeps its
	// members; shrinking it removes members the runtime picks. A member that is
	// destroyed (Destroy, or removed out of band) is replaced by the runtime; one whose
	// process exits is not, unless the runtime restarts it in place (Kubernetes
	// restarts containers of a ReplicaSet's pods: kiln sees that as an exit).
	// ErrSetConflict if the set exists with a spec of another Hash; ErrImageNotFound if
	// the runtime knows at once it lacks the image (one that pulls may only find out
	// later, its members staying StatePending).
	EnsureSet(ctx context.Context, spec ServerSpec, replicas int) error
	// Evict removes the set's server id for good: it stops and removes it as Destroy
	// does and lowers its set's size by one in the same step, so the runtime does not
	// replace it. To replace a server, evict it and grow the set again. Nil if the
	// server is already gone; ErrNotInSet if it is not a set's.
	Evict(ctx context.Context, id ServerID) error
	// Members returns the set's servers as the runtime reports them now, pending and
	// exited ones included, oldest first. No set is an empty slice, not an error.
	Members(ctx context.Context, ref SetRef) ([]Server, error)
	// Sets returns the sets matching sel (Selector.Role is ignored: sets are only
	// services'), by service then revision. It never caches.
	Sets(ctx context.Context, sel Selector) ([]Set, error)
	// DeleteSet removes the set and its servers, as Destroy does each. Nil if there is
	// no such set.
	DeleteSet(ctx context.Context, ref SetRef) error
}

// SetRef names a set: one revision of one service of one project.
type SetRef struct {
	Project  string `json:"project,omitempty"`
	Service  string `json:"service"`
	Revision int64  `json:"revision"`
}

// SetOf is the set a spec's servers belong to.
func SetOf(spec ServerSpec) SetRef {
	return SetRef{Project: spec.Project, Service: spec.Service, Revision: spec.Revision}
}

// Set is one set as the runtime reports it.
type Set struct {
	Ref      SetRef     `json:"ref"`
	Spec     ServerSpec `json:"spec"`      // as recorded on the set; no env or file value
	SpecHash string     `json:"spec_hash"` // recorded with it
	Replicas int        `json:"replicas"`  // the size asked for, not how many exist now
}
