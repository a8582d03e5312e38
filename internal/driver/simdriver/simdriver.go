package simdriver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/driver"
)

// Driver runs simulated servers. It is safe for concurrent use.
type Driver struct {
	mu      sync.Mutex
	servers map[driver.ServerID]*server
}

type server struct {
	driver.Server
	http *http.Server
}

var _ driver.Driver = (*Driver)(nil)

// New returns a driver with no servers.
func New() *Driver { return &Driver{servers: map[driver.ServerID]*server{}} }

// Name is "simulated".
func (d *Driver) Name() string { return "simulated" }

// Create starts a listener on a free loopback port that answers every request.
func (d *Driver) Create(ctx context.Context, spec driver.ServerSpec) (driver.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return driver.Server{}, fmt.Errorf("creating a simulated server of %s: %w", spec.Service, err)
	}
	b := make([]byte, 16)
	rand.Read(b)
	id := hex.EncodeToString(b)
	s := &server{Server: driver.Server{ID: driver.ServerID(id), Name: fmt.Sprintf("%s-%d-%s", spec.Service, spec.Revision, id[:6]),
		Project: spec.Project, Service: spec.Service, Revision: spec.Revision, SpecHash: spec.Hash(), Image: spec.Image,
		Address: ln.Addr().String(), State: driver.StateRunning, Created: time.Now().UTC(), Spec: spec}}
	s.http = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "simulated server %s\n", s.Name)
	}), ReadHeaderTimeout: 5 * time.Second}
	go s.http.Serve(ln)
	d.mu.Lock()
	d.servers[s.ID] = s
	d.mu.Unlock()
	return s.Server, nil
}

// Destroy closes the server's listener; nil if it is gone already.
func (d *Driver) Destroy(ctx context.Context, id driver.ServerID) error {
	d.mu.Lock()
	s := d.servers[id]
	delete(d.servers, id)
	d.mu.Unlock()
	if s != nil {
		s.http.Close()
	}
	return nil
}

// List returns the servers sel matches, by name.
func (d *Driver) List(ctx context.Context, sel driver.Selector) ([]driver.Server, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []driver.Server
	for _, s := range d.servers {
		if sel.Matches(s.Server) {
			out = append(out, s.Server)
		}
	}
	slices.SortFunc(out, func(a, b driver.Server) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Close destroys every server.
func (d *Driver) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, s := range d.servers {
		s.http.Close()
		delete(d.servers, id)
	}
}
