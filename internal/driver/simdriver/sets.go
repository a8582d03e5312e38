package simdriver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/driver"
)

// set is one set and its controller, which converges its members to its size as a
// ReplicaSet controller does.
type set struct {
	info driver.Set
	spec driver.ServerSpec // with its env and file values, to create members from
	kick chan struct{}     // buffered: a pass is due
	stop chan struct{}     // closed when the set is deleted or the driver closed
	done chan struct{}     // closed when the controller has returned
}

func (st *set) poke() {
	select {
	case st.kick <- struct{}{}:
	default:
	}
}

// retryAfter is how long a controller waits to try again after it failed to create a
// member.
const retryAfter = time.Second

// EnsureSet makes spec's revision's set exist at size replicas; its controller creates
// and removes members in the background (see driver.SetDriver).
func (d *Driver) EnsureSet(ctx context.Context, spec driver.ServerSpec, replicas int) error {
	ref := driver.SetOf(spec)
	switch err := validate(spec); {
	case err != nil:
		return fmt.Errorf("ensuring the set of %s revision %d: %w", ref.Service, ref.Revision, err)
	case replicas < 0:
		return fmt.Errorf("ensuring the set of %s revision %d: %d replicas", ref.Service, ref.Revision, replicas)
	case spec.Role != "":
		return fmt.Errorf("ensuring the set of %s revision %d: a %s is not a set's", ref.Service, ref.Revision, spec.Role)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("ensuring the set of %s revision %d: %w", ref.Service, ref.Revision, errClosed)
	}
	if d.images[spec.Image] == nil {
		return fmt.Errorf("ensuring the set of %s revision %d: image %s: %w", ref.Service, ref.Revision, spec.Image, driver.ErrImageNotFound)
	}
	st := d.sets[ref]
	if st != nil {
		if st.info.SpecHash != spec.Hash() {
			return fmt.Errorf("ensuring the set of %s revision %d: %w", ref.Service, ref.Revision, driver.ErrSetConflict)
		}
		st.info.Replicas = replicas
		st.poke()
		return nil
	}
	recorded := spec
	recorded.Env, recorded.Files = nil, nil
	st = &set{info: driver.Set{Ref: ref, Spec: recorded, SpecHash: spec.Hash(), Replicas: replicas}, spec: spec,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	d.sets[ref] = st
	d.wg.Add(1)
	go d.control(st)
	st.poke()
	return nil
}

// control converges st until it is stopped, trying again after retryAfter when a
// member could not be created.
func (d *Driver) control(st *set) {
	defer d.wg.Done()
	defer close(st.done)
	var retry <-chan time.Time
	for {
		select {
		case <-st.stop:
			return
		case <-st.kick:
		case <-retry:
		}
		retry = nil
		if err := d.converge(st); err != nil {
			retry = time.After(retryAfter)
		}
	}
}

// converge creates or removes one member at a time until the set has its size.
func (d *Driver) converge(st *set) error {
	ctx := context.Background()
	for {
		select {
		case <-st.stop:
			return nil
		default:
		}
		d.mu.Lock()
		members := d.membersLocked(st.info.Ref)
		want := st.info.Replicas
		d.mu.Unlock()
		switch {
		case len(members) < want:
			ref := st.info.Ref
			if _, err := d.create(ctx, st.spec, &ref); err != nil {
				return err
			}
		case len(members) > want:
			// The newest go first, as kiln's own plan removes them.
			if err := d.Destroy(ctx, members[len(members)-1].ID); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// membersLocked are the set's servers that count toward its size, oldest first.
func (d *Driver) membersLocked(ref driver.SetRef) []driver.Server {
	var out []driver.Server
	for _, s := range d.servers {
		if s.set != nil && *s.set == ref && !s.evicted {
			out = append(out, s.Server)
		}
	}
	sortServers(out)
	return out
}

// Evict lowers the server's set's size by one and destroys the server.
func (d *Driver) Evict(ctx context.Context, id driver.ServerID) error {
	d.mu.Lock()
	s := d.servers[id]
	if s == nil {
		d.mu.Unlock()
		return nil
	}
	if s.set == nil {
		d.mu.Unlock()
		return fmt.Errorf("evicting %s: %w", id, driver.ErrNotInSet)
	}
	if st := d.sets[*s.set]; st != nil && !s.evicted {
		st.info.Replicas = max(st.info.Replicas-1, 0)
	}
	s.evicted = true
	d.mu.Unlock()
	if err := d.Destroy(ctx, id); err != nil {
		return fmt.Errorf("evicting %s: %w", id, err)
	}
	return nil
}

// Members returns the set's servers, oldest first; none if there is no such set.
func (d *Driver) Members(ctx context.Context, ref driver.SetRef) ([]driver.Server, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []driver.Server{}
	for _, s := range d.servers {
		if s.set != nil && *s.set == ref {
			out = append(out, s.Server)
		}
	}
	sortServers(out)
	return out, nil
}

// Sets returns the sets sel matches, by service then revision.
func (d *Driver) Sets(ctx context.Context, sel driver.Selector) ([]driver.Set, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []driver.Set
	for ref, st := range d.sets {
		if (sel.Project == "" || sel.Project == ref.Project) && (sel.Service == "" || sel.Service == ref.Service) {
			out = append(out, st.info)
		}
	}
	slices.SortFunc(out, func(a, b driver.Set) int {
		return cmp.Or(strings.Compare(a.Ref.Project, b.Ref.Project), strings.Compare(a.Ref.Service, b.Ref.Service), cmp.Compare(a.Ref.Revision, b.Ref.Revision))
	})
	return out, nil
}

// DeleteSet stops the set's controller, then destroys its servers.
func (d *Driver) DeleteSet(ctx context.Context, ref driver.SetRef) error {
	d.mu.Lock()
	st := d.sets[ref]
	if st != nil {
		delete(d.sets, ref)
		close(st.stop)
	}
	d.mu.Unlock()
	if st == nil {
		return nil
	}
	select {
	case <-st.done:
	case <-ctx.Done():
		return fmt.Errorf("deleting the set of %s revision %d: %w", ref.Service, ref.Revision, ctx.Err())
	}
	members, _ := d.Members(ctx, ref)
	var errs []error
	for _, s := range members {
		errs = append(errs, d.Destroy(ctx, s.ID))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("deleting the set of %s revision %d: %w", ref.Service, ref.Revision, err)
	}
	return nil
}
