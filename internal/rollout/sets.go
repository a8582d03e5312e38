// The executor on a runtime that keeps each revision's servers as a set (SetDriver).

package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/plan"
)

// memberPoll is how often the executor lists a set's members while it waits for new
// ones; runtime events wake it sooner when the driver reports them.
const memberPoll = time.Second

// setDriver is the driver's SetDriver if it claims sets and OneByOne is not set, else
// nil: a wrapper may have the methods of a runtime that lacks them.
func (e *Executor) setDriver() driver.SetDriver {
	if e.OneByOne {
		return nil
	}
	if sd, ok := e.Driver.(driver.SetDriver); ok && driver.CapabilitiesOf(e.Driver).Sets {
		return sd
	}
	return nil
}

// SetDriver is the driver's SetDriver when the executor drives sets (the driver
// claims them and OneByOne is not set), else nil.
func (e *Executor) SetDriver() driver.SetDriver { return e.setDriver() }

// TargetSet is the set a target's servers belong to, as the runtime reports it now.
type TargetSet struct {
	Ref      driver.SetRef
	Exists   bool
	Replicas int             // the size recorded on it (0 when it does not exist)
	Members  []driver.Server // pending and exited ones included, oldest first
}

// TargetSet reads the set t's servers belong to on a driver of sets: the target
// revision's own, or the set of an earlier revision of the same spec, which t keeps
// (see openSet). It fails when the executor does not drive sets.
func (e *Executor) TargetSet(ctx context.Context, t Target) (TargetSet, error) {
	sd := e.setDriver()
	if sd == nil {
		return TargetSet{}, fmt.Errorf("reading the set of %s revision %d: the runtime does not run sets", t.Service, t.Revision)
	}
	spec := t.Spec
	spec.Service, spec.Revision = t.Service, t.Revision
	ns, members, _, err := e.openSet(ctx, sd, t, spec)
	if err != nil {
		return TargetSet{}, err
	}
	return TargetSet{Ref: ns.ref, Exists: ns.exists, Replicas: ns.recorded, Members: members}, nil
}

// remove takes a server away for good: a set's member is evicted, so that its set does
// not replace it; any other server is destroyed.
func (e *Executor) remove(ctx context.Context, id driver.ServerID) error {
	if sd := e.setDriver(); sd != nil {
		if err := sd.Evict(ctx, id); !errors.Is(err, driver.ErrNotInSet) {
			return err
		}
	}
	return e.Driver.Destroy(ctx, id)
}

// newSet is the target revision's set during one Run or Replace.
type newSet struct {
	sd   driver.SetDriver
	ref  driver.SetRef
	spec driver.ServerSpec
	// size is how many members kiln keeps now: those that serve and those it has yet
	// to retire; recorded is the size the runtime has, as far as kiln knows.
	size, recorded int
	exists         bool
	member         map[driver.ServerID]bool // every member seen
	counted        map[driver.ServerID]bool // the members size counts
}

// openSet reads the target's set and the service's other sets. The target's set is
// its revision's own when there is one; else the newest set of an earlier revision of
// the same spec (a revision that changed only settings, or replicas), which the target
// keeps: its servers are the target's, as one by one keeps them, and a set never
// changes but in size. A new set is the target revision's.
func (e *Executor) openSet(ctx context.Context, sd driver.SetDriver, t Target, spec driver.ServerSpec) (*newSet, []driver.Server, []driver.Set, error) {
	ns := &newSet{sd: sd, ref: driver.SetOf(spec), spec: spec, member: map[driver.ServerID]bool{}, counted: map[driver.ServerID]bool{}}
	var sets []driver.Set
	err := e.retry(ctx, t.Service, "listing sets", e.callTimeout(), func(ctx context.Context) (err error) {
		sets, err = sd.Sets(ctx, driver.Selector{Project: spec.Project, Service: t.Service})
		return err
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("listing sets of %s: %w", t.Service, err)
	}
	pick := slices.IndexFunc(sets, func(s driver.Set) bool { return s.Ref == ns.ref })
	if pick < 0 {
		hash := spec.Hash()
		for i, s := range sets { // by revision: the newest of the spec wins
			if s.SpecHash == hash && s.Ref.Revision < spec.Revision {
				pick = i
			}
		}
	}
	var others []driver.Set
	for i, s := range sets {
		if i != pick {
			others = append(others, s)
			continue
		}
		ns.ref, ns.recorded, ns.exists = s.Ref, s.Replicas, true
		ns.spec.Revision = s.Ref.Revision // its members are made from its revision's spec
	}
	var members []driver.Server
	err = e.retry(ctx, t.Service, "listing the members of revision "+itoa(t.Revision), e.callTimeout(), func(ctx context.Context) (err error) {
		members, err = sd.Members(ctx, ns.ref)
		return err
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("listing the members of %s revision %d: %w", t.Service, t.Revision, err)
	}
	for _, m := range members {
		ns.member[m.ID] = true
	}
	return ns, members, others, nil
}

// runSets is Run on a runtime of sets: the target revision's set is scaled up as the
// strategy allows, its new members are gated and admitted, old servers are drained and
// evicted, and the old revisions' sets are deleted once empty. Members of the target's
// set that are still pending are waited for as new ones; members that stopped are
// evicted first, so that the set's size counts only servers that may serve.
func (e *Executor) runSets(ctx context.Context, door Door, sd driver.SetDriver, t Target) (err error) {
	var bg sync.WaitGroup
	var bgMu sync.Mutex
	var bgErr error
	defer func() {
		bg.Wait()
		err = errors.Join(err, bgErr)
	}()
	var observed []driver.Server
	err = e.retry(ctx, t.Service, "listing servers", e.callTimeout(), func(ctx context.Context) (err error) {
		observed, err = e.Driver.List(ctx, driver.Selector{Project: t.Spec.Project, Service: t.Service})
		return err
	})
	if err != nil {
		return fmt.Errorf("listing servers of %s: %w", t.Service, err)
	}
	spec := t.Spec
	spec.Service, spec.Revision = t.Service, t.Revision
	ns, members, oldSets, err := e.openSet(ctx, sd, t, spec)
	if err != nil {
		return err
	}
	// A pending member of the target's set is on its way: it is waited for, not
	// planned. Members listed since Members answered are the set's too.
	pending := map[driver.ServerID]bool{}
	for _, m := range members {
		if m.State == driver.StatePending {
			pending[m.ID] = true
		}
	}
	var settled []driver.Server
	for _, s := range observed {
		if !pending[s.ID] {
			settled = append(settled, s)
		}
	}
	p := plan.Compute([]plan.Desired{{Service: t.Service, Revision: t.Revision, Spec: spec, Replicas: t.Replicas}}, settled)
	sp, _ := p.Service(t.Service)

	var old []driver.Server
	var stopped []plan.Change
	for _, c := range sp.Changes {
		switch {
		case c.Action == plan.Destroy && c.Old.State != driver.StateRunning && ns.member[c.Old.ID]:
			stopped = append(stopped, c)
		case c.Action == plan.Destroy && c.Old.State != driver.StateRunning:
			s, why := *c.Old, strings.Join(c.Reasons, "; ")
			bg.Add(1)
			go func() {
				defer bg.Done()
				if err := e.retire(ctx, door, t.Service, s, why); err != nil {
					bgMu.Lock()
					bgErr = errors.Join(bgErr, err)
					bgMu.Unlock()
				}
			}()
		case c.Old != nil:
			old = append(old, *c.Old)
			if ns.member[c.Old.ID] {
				ns.counted[c.Old.ID] = true
			}
		}
	}
	var keep, loose []driver.Server
	for _, s := range sp.Keep {
		if ns.member[s.ID] {
			keep = append(keep, s)
			ns.counted[s.ID] = true
		} else {
			loose = append(loose, s) // of the target's spec but no set's: its set replaces it
		}
	}
	old = append(old, loose...)
	ns.size = len(ns.counted)
	// The target's stopped members leave its set before it is scaled: an exited member
	// is not replaced by the runtime, and would hold a place of the set's size.
	for _, c := range stopped {
		if err := e.retireMember(ctx, door, t.Service, ns, *c.Old, strings.Join(c.Reasons, "; ")); err != nil {
			return err
		}
	}
	for _, s := range keep {
		if door.Has(s.Address) {
			continue
		}
		if err := e.admit(ctx, door, t, s); err != nil {
			if ctx.Err() != nil {
				// Cut short (a stop, or a heal giving way to a rollout): the server is
				// not at fault, and the next Run admits it.
				return err
			}
			return e.failSet(ctx, door, t, ns, []driver.Server{s}, err)
		}
	}
	need := t.Replicas - len(keep)
	if t.Settings.Strategy == "blue-green" {
		err = e.blueGreenSets(ctx, door, t, ns, need, old)
	} else {
		err = e.rollingSets(ctx, door, t, ns, len(keep), need, old)
	}
	if err != nil {
		return err
	}
	if ns.exists && ns.recorded != ns.size {
		if err := e.scale(ctx, t, ns, ns.size); err != nil {
			return err
		}
	}
	// The old revisions' sets go once their servers have: the stopped ones too.
	bg.Wait()
	for _, s := range oldSets {
		err := e.retry(ctx, t.Service, "deleting the set of revision "+itoa(s.Ref.Revision), e.callTimeout()+s.Spec.StopTimeout, func(ctx context.Context) error {
			return ns.sd.DeleteSet(ctx, s.Ref)
		})
		if err != nil {
			return fmt.Errorf("deleting the set of %s revision %d: %w", t.Service, s.Ref.Revision, err)
		}
	}
	return nil
}

// rollingSets is rolling on sets: scale the target's set up by max_surge, admit its
// new members as they pass the health gate, then drain and evict as many old servers;
// with max_surge 0, first evict max_unavailable old servers to make room.
func (e *Executor) rollingSets(ctx context.Context, door Door, t Target, ns *newSet, have, need int, old []driver.Server) error {
	surge, unavail := t.Settings.MaxSurge, t.Settings.MaxUnavailable
	why := "replaced by revision " + itoa(t.Revision)
	retireFirst := func() error {
		if err := e.retireMember(ctx, door, t.Service, ns, old[0], why); err != nil {
			return err
		}
		old = old[1:]
		return nil
	}
	for need > 0 || len(old) > 0 {
		if need <= 0 { // only surplus left
			for _, s := range old {
				if err := e.retireMember(ctx, door, t.Service, ns, s, "no longer needed"); err != nil {
					return err
				}
			}
			return nil
		}
		batch := min(need, max(surge, 1))
		if len(old) == 0 {
			batch = need
		} else if surge == 0 {
			batch = min(need, unavail)
			for i := 0; i < batch && len(old) > 0; i++ {
				if err := retireFirst(); err != nil {
					return err
				}
			}
		}
		// What a stopped rollout left counts against max_surge, as in rolling.
		for surge > 0 && len(old) > 0 && have+len(old)+batch > t.Replicas+surge {
			if err := retireFirst(); err != nil {
				return err
			}
		}
		created, err := e.startSetBatch(ctx, door, t, ns, batch)
		if err != nil {
			return e.failSet(ctx, door, t, ns, created, err)
		}
		need -= len(created)
		have += len(created)
		if surge > 0 {
			for i := 0; i < len(created) && len(old) > 0; i++ {
				if err := retireFirst(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// blueGreenSets scales the target's set to its replicas, switches the front door to it
// in one swap once every new member is healthy, keeps the old servers for keep_old,
// then evicts them.
func (e *Executor) blueGreenSets(ctx context.Context, door Door, t Target, ns *newSet, need int, old []driver.Server) error {
	var created []driver.Server
	var err error
	if need > 0 {
		created, err = e.grow(ctx, t, ns, need)
		if err == nil {
			err = e.gate(ctx, t, created)
		}
	}
	if err != nil {
		return e.failSet(ctx, door, t, ns, created, err)
	}
	e.count(ns, created)
	if err := e.switchDoor(ctx, door, t, created, old); err != nil {
		return err
	}
	for _, s := range old {
		if err := e.retireMember(ctx, door, t.Service, ns, s, "replaced by revision "+itoa(t.Revision)); err != nil {
			return err
		}
	}
	return nil
}

// replaceInSet is Replace on sets: the target's set grows by one, its new member is
// gated and admitted, then the old server is drained and evicted (which brings its set
// back to its size when it is the same set). A server that is only missing is not
// Replace's: the runtime replaces a destroyed member itself, and Run admits it.
func (e *Executor) replaceInSet(ctx context.Context, door Door, sd driver.SetDriver, t Target, spec driver.ServerSpec, old driver.Server, why string) error {
	ns, members, _, err := e.openSet(ctx, sd, t, spec)
	if err != nil {
		return err
	}
	// A member that is already gone (destroyed while it was being flagged) is being
	// replaced by its set: growing the set as well would make two replacements.
	if old.Revision == ns.ref.Revision && old.Spec.Hash() == ns.spec.Hash() && !slices.ContainsFunc(members, func(m driver.Server) bool { return m.ID == old.ID }) {
		return e.runSets(ctx, door, sd, t)
	}
	// Grow from the size the runtime has: a replacement it is making of its own stays.
	ns.size = ns.recorded
	for _, m := range members {
		ns.counted[m.ID] = true
	}
	created, err := e.startSetBatch(ctx, door, t, ns, 1)
	if err != nil {
		return e.failSet(ctx, door, t, ns, created, err)
	}
	return e.retireMember(ctx, door, t.Service, ns, old, why)
}

// startSetBatch grows the target's set by n, waits for its n new members to pass the
// health gate, and admits them.
func (e *Executor) startSetBatch(ctx context.Context, door Door, t Target, ns *newSet, n int) ([]driver.Server, error) {
	created, err := e.grow(ctx, t, ns, n)
	if err != nil {
		return created, err
	}
	if err := e.gate(ctx, t, created); err != nil {
		return created, err
	}
	var add []string
	for _, s := range created {
		add = append(add, s.Address)
	}
	if err := door.Update(ctx, add, nil); err != nil {
		return created, err
	}
	e.count(ns, created)
	for _, s := range created {
		e.remember(s)
		e.event(t.Service, string(s.ID), "admitted", "server %s is healthy and in rotation", s.Name)
	}
	return created, nil
}

// count makes the admitted new members part of the set's size.
func (e *Executor) count(ns *newSet, created []driver.Server) {
	for _, s := range created {
		ns.counted[s.ID] = true
	}
	ns.size += len(created)
}

// scale records size n for the target's set.
func (e *Executor) scale(ctx context.Context, t Target, ns *newSet, n int) error {
	err := e.retry(ctx, t.Service, "scaling the set of revision "+itoa(t.Revision), e.callTimeout(), func(ctx context.Context) error {
		return ns.sd.EnsureSet(ctx, ns.spec, n)
	})
	if err != nil {
		return fmt.Errorf("scaling the set of %s revision %d to %d: %w", t.Service, t.Revision, n, err)
	}
	ns.recorded, ns.exists = n, true
	return nil
}

// grow scales the target's set to hold n more members than it keeps and waits until n
// members it did not have have started, within the progress deadline. It returns the
// new members that started, even on error.
func (e *Executor) grow(ctx context.Context, t Target, ns *newSet, n int) ([]driver.Server, error) {
	start := e.clock().Now()
	if err := e.scale(ctx, t, ns, ns.size+n); err != nil {
		return nil, err
	}
	deadline := t.Settings.ProgressDeadline
	if deadline <= 0 {
		deadline = time.Minute
	}
	dctx, cancel := e.withTimeout(ctx, deadline, nil)
	defer cancel()
	// Runtime events wake the wait; the poll is for events missed, or not reported.
	var wake <-chan driver.Event
	if w, ok := e.Driver.(driver.Watcher); ok && driver.CapabilitiesOf(e.Driver).Events {
		wctx, stop := context.WithCancel(dctx)
		defer stop()
		if ch, err := w.Watch(wctx); err == nil {
			wake = ch
		}
	}
	announced := map[driver.ServerID]bool{}
	var started []driver.Server
	waiting := "" // what the runtime last said of a pending member
	for {
		// The poll's timer starts before the members are listed: a clock that moves
		// on each listing moves it.
		timer := e.clock().NewTimer(memberPoll)
		var members []driver.Server
		err := e.retry(dctx, t.Service, "listing the members of revision "+itoa(t.Revision), e.callTimeout(), func(ctx context.Context) (err error) {
			members, err = ns.sd.Members(ctx, ns.ref)
			return err
		})
		if err != nil {
			timer.Stop()
			if ctx.Err() != nil {
				return started, ctx.Err()
			}
			return started, fmt.Errorf("listing the members of %s revision %d: %w", t.Service, t.Revision, err)
		}
		started = started[:0]
		for _, m := range members {
			ns.member[m.ID] = true
			if m.State == driver.StatePending && m.Waiting != "" {
				waiting = fmt.Sprintf("; server %s: %s", m.Name, m.Waiting)
			}
			if ns.counted[m.ID] || !(m.State == driver.StateRunning && m.Address != "" || m.State == driver.StateExited) {
				continue
			}
			started = append(started, m)
			if !announced[m.ID] {
				announced[m.ID] = true
				e.event(t.Service, string(m.ID), "created", "server %s created from revision %d at %s in %s", m.Name, t.Revision, m.Address,
					e.clock().Since(start).Round(time.Millisecond))
			}
		}
		if len(started) >= n {
			timer.Stop()
			return started[:n:n], nil
		}
		select {
		case <-timer.C():
		case _, ok := <-wake:
			wake = drain(wake, ok)
		case <-dctx.Done():
			timer.Stop()
			if ctx.Err() != nil {
				return started, ctx.Err()
			}
			return started, fmt.Errorf("%w (%s): %d of %d new servers of revision %d started%s", ErrNoProgress, deadline, len(started), n, t.Revision, waiting)
		}
		timer.Stop()
	}
}

// retireMember is retire, keeping the target set's size in step with its evictions.
func (e *Executor) retireMember(ctx context.Context, door Door, service string, ns *newSet, s driver.Server, why string) error {
	if err := e.retire(ctx, door, service, s, why); err != nil {
		return err
	}
	if ns.counted[s.ID] {
		delete(ns.counted, s.ID)
		ns.size--
	}
	if ns.member[s.ID] {
		ns.recorded--
	}
	return nil
}

// failSet is fail on sets: the failed step's new members are evicted, and the target's
// set is brought back to the members it keeps, so none of its pending members starts
// later; a set left with none is deleted. Servers still serving are not touched.
func (e *Executor) failSet(ctx context.Context, door Door, t Target, ns *newSet, created []driver.Server, err error) error {
	cctx, cancel := e.withTimeout(context.WithoutCancel(ctx), time.Minute, ErrDriverTimeout)
	defer cancel()
	for _, s := range created {
		if rerr := e.retireMember(cctx, door, t.Service, ns, s, "its rollout failed"); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	switch {
	case ns.size == 0: // DeleteSet is nil when there is no set: a call that timed out may have made it
		rerr := e.retry(cctx, t.Service, "deleting the set of revision "+itoa(t.Revision), e.callTimeout()+ns.spec.StopTimeout, func(ctx context.Context) error {
			return ns.sd.DeleteSet(ctx, ns.ref)
		})
		if rerr != nil {
			return errors.Join(err, fmt.Errorf("deleting the set of %s revision %d: %w", t.Service, t.Revision, rerr))
		}
		ns.exists, ns.recorded = false, 0
	case ns.size > 0 && ns.recorded != ns.size:
		if rerr := e.scale(cctx, t, ns, ns.size); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// drain takes the events already waiting on ch, so that a burst of them makes one
// listing; it returns nil once ch is closed (ok is the last receive's).
func drain(ch <-chan driver.Event, ok bool) <-chan driver.Event {
	for ok {
		select {
		case _, ok = <-ch:
		default:
			return ch
		}
	}
	return nil
}
