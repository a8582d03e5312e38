package simdriver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/driver"
)

// Driver is a simulated runtime and the driver of it: a new driver of the same runtime
// is the same *Driver. It is safe for concurrent use.
type Driver struct {
	mu       sync.Mutex
	servers  map[driver.ServerID]*server
	images   map[string]*image        // by manifest digest, once loaded
	loading  map[string]chan struct{} // digest → closed when its EnsureImage ends
	sets     map[driver.SetRef]*set
	watchers map[chan driver.Event]bool
	closed   bool
	wg       sync.WaitGroup // the sets' controllers
}

type server struct {
	driver.Server // guarded by Driver.mu; Spec as recorded, without env or file values
	set           *driver.SetRef
	evicted       bool // being removed by Evict: its set does not count it

	proc *process
}

var (
	_ driver.Driver      = (*Driver)(nil)
	_ driver.Capable     = (*Driver)(nil)
	_ driver.ImageLoader = (*Driver)(nil)
	_ driver.Watcher     = (*Driver)(nil)
	_ driver.Logger      = (*Driver)(nil)
	_ driver.Waiter      = (*Driver)(nil)
	_ driver.Stopper     = (*Driver)(nil)
	_ driver.SetDriver   = (*Driver)(nil)
)

// errClosed: the driver was closed.
var errClosed = fmt.Errorf("the simulated runtime is closed: %w", driver.ErrUnavailable)

// New returns a runtime with no servers and no images. It starts no goroutines.
func New() *Driver {
	return &Driver{servers: map[driver.ServerID]*server{}, images: map[string]*image{}, loading: map[string]chan struct{}{},
		sets: map[driver.SetRef]*set{}, watchers: map[chan driver.Event]bool{}}
}

// Open is New for the registry; the simulated driver has no options.
func Open(ctx context.Context, cfg driver.Config) (*Driver, error) {
	if err := cfg.CheckOptions(); err != nil {
		return nil, err
	}
	return New(), nil
}

// Name is "simulated".
func (d *Driver) Name() string { return "simulated" }

// Capabilities: the simulated runtime enforces no isolation and cannot be altered out
// of band, so it claims no limit, no exec events and no diff.
func (d *Driver) Capabilities() driver.Capabilities {
	return driver.Capabilities{SecretFiles: true, LoadImages: true, Events: true, Logs: true, Wait: true, Stop: true, Sets: true}
}

// Create starts a simulated server of spec's image (EnsureImage first) on a free
// loopback port; it answers there as examples/hello would with spec's environment and
// files. A Command naming a file the image lacks fails, leaving nothing; a process that
// exits at once (its PORT is not a port) is returned exited, as Docker's would be.
func (d *Driver) Create(ctx context.Context, spec driver.ServerSpec) (driver.Server, error) {
	return d.create(ctx, spec, nil)
}

func (d *Driver) create(ctx context.Context, spec driver.ServerSpec, set *driver.SetRef) (driver.Server, error) {
	if err := validate(spec); err != nil {
		return driver.Server{}, fmt.Errorf("creating a server of %s: %w", spec.Service, err)
	}
	if err := ctx.Err(); err != nil {
		return driver.Server{}, fmt.Errorf("creating a server of %s: %w", spec.Service, err)
	}
	d.mu.Lock()
	img, closed := d.images[spec.Image], d.closed
	d.mu.Unlock()
	if closed {
		return driver.Server{}, fmt.Errorf("creating a server of %s: %w", spec.Service, errClosed)
	}
	if img == nil {
		return driver.Server{}, fmt.Errorf("creating a server of %s: image %s: %w", spec.Service, spec.Image, driver.ErrImageNotFound)
	}
	if err := img.canRun(spec); err != nil {
		return driver.Server{}, fmt.Errorf("creating a server of %s: starting: %w", spec.Service, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return driver.Server{}, fmt.Errorf("creating a server of %s: %w", spec.Service, err)
	}
	b := make([]byte, 32)
	rand.Read(b)
	id := hex.EncodeToString(b)
	hash := spec.Hash()
	recorded := spec
	recorded.Env, recorded.Files = nil, nil // as a runtime records it: digests only
	s := &server{Server: driver.Server{ID: driver.ServerID(id), Name: fmt.Sprintf("%s-%d-%s", spec.Service, spec.Revision, id[:6]),
		Project: spec.Project, Service: spec.Service, Revision: spec.Revision, SpecHash: hash, Image: spec.Image,
		Address: ln.Addr().String(), State: driver.StateRunning, Created: time.Now().UTC(), Spec: recorded}, set: set}

	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		ln.Close()
		return driver.Server{}, fmt.Errorf("creating a server of %s: %w", spec.Service, errClosed)
	}
	d.servers[s.ID] = s
	d.emitLocked(s, driver.EventStart, "")
	// The process starts under the lock, so that an exit it makes at once is seen after
	// the start, and by the Server returned.
	s.proc = start(img, spec, id[:12], ln, func(x driver.Exit) { d.exited(s, x) })
	out := s.Server
	d.mu.Unlock()
	s.proc.run()
	d.mu.Lock()
	out.State, out.Address = s.State, s.Address
	d.mu.Unlock()
	out.Spec = spec
	return out, nil
}

func validate(spec driver.ServerSpec) error {
	switch {
	case spec.Service == "":
		return errors.New("the spec has no service")
	case spec.Port < 1 || spec.Port > 65535:
		return fmt.Errorf("port %d is not a TCP port", spec.Port)
	}
	return nil
}

// exited records that s's process ended with x; called once per process.
func (d *Driver) exited(s *server, x driver.Exit) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s.State, s.Address = driver.StateExited, ""
	d.emitLocked(s, driver.EventDie, fmt.Sprintf("exit code %d", x.Code))
}

// Stop ends the server's process as SIGTERM would (examples/hello exits 0); the
// server stays listed, exited, until Destroy. Nil if it is gone or exited already.
func (d *Driver) Stop(ctx context.Context, id driver.ServerID) error {
	d.mu.Lock()
	s := d.servers[id]
	d.mu.Unlock()
	if s != nil {
		s.proc.stop(driver.Exit{Code: 0})
	}
	return nil
}

// Destroy stops the server's process as SIGTERM would (examples/hello exits 0) and
// removes it; nil if it is gone already. A set's server is replaced by its set.
func (d *Driver) Destroy(ctx context.Context, id driver.ServerID) error {
	d.mu.Lock()
	s := d.servers[id]
	d.mu.Unlock()
	if s == nil {
		return nil
	}
	s.proc.stop(driver.Exit{Code: 0})
	d.mu.Lock()
	if d.servers[id] == s {
		delete(d.servers, id)
		d.emitLocked(s, driver.EventDestroy, "")
		if s.set != nil {
			if st := d.sets[*s.set]; st != nil {
				st.poke()
			}
		}
	}
	d.mu.Unlock()
	return nil
}

// List returns the servers sel matches, set members included, oldest first.
func (d *Driver) List(ctx context.Context, sel driver.Selector) ([]driver.Server, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []driver.Server
	for _, s := range d.servers {
		if sel.Matches(s.Server) {
			out = append(out, s.Server)
		}
	}
	sortServers(out)
	return out, nil
}

func sortServers(servers []driver.Server) {
	slices.SortFunc(servers, func(a, b driver.Server) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(string(a.ID), string(b.ID))
	})
}

// Wait blocks until the server's process ends, or ctx does. ErrNotFound if there is no
// such server.
func (d *Driver) Wait(ctx context.Context, id driver.ServerID) (driver.Exit, error) {
	d.mu.Lock()
	s := d.servers[id]
	d.mu.Unlock()
	if s == nil {
		return driver.Exit{}, fmt.Errorf("waiting for %s: %w", id, driver.ErrNotFound)
	}
	select {
	case <-s.proc.done:
		return s.proc.exit, nil
	case <-ctx.Done():
		return driver.Exit{}, ctx.Err()
	}
}

// Close stops the sets' controllers, destroys every server and ends every Watch. The
// driver is not used afterwards. It always returns nil.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	for ref, st := range d.sets {
		close(st.stop)
		delete(d.sets, ref)
	}
	d.mu.Unlock()
	d.wg.Wait()
	d.mu.Lock()
	ids := make([]driver.ServerID, 0, len(d.servers))
	for id := range d.servers {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	for _, id := range ids {
		d.Destroy(context.Background(), id)
	}
	d.mu.Lock()
	for ch := range d.watchers {
		delete(d.watchers, ch)
		close(ch)
	}
	d.mu.Unlock()
	return nil
}

// Watch reports the servers' start, die and destroy events. The channel is closed when
// ctx ends, the driver is closed, or the caller falls 1,024 events behind (the stream
// breaks, as a runtime's does: callers resync with List).
func (d *Driver) Watch(ctx context.Context) (<-chan driver.Event, error) {
	ch := make(chan driver.Event, 1024)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("watching servers: %w", errClosed)
	}
	d.watchers[ch] = true
	context.AfterFunc(ctx, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.watchers[ch] {
			delete(d.watchers, ch)
			close(ch)
		}
	})
	return ch, nil
}

func (d *Driver) emitLocked(s *server, typ driver.EventType, detail string) {
	ev := driver.Event{Type: typ, ServerID: s.ID, Project: s.Project, Service: s.Service, Detail: detail, Time: time.Now().UTC()}
	for ch := range d.watchers {
		select {
		case ch <- ev:
		default:
			delete(d.watchers, ch)
			close(ch)
		}
	}
}
