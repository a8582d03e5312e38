package simdriver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
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

	mu    sync.Mutex
	lines []string // the last maxLines lines it logged
	total int      // lines it ever logged
	// changed is closed (and replaced) when a line is logged or the server destroyed.
	changed chan struct{}
	gone    bool
}

// maxLines is how many lines of its log a server keeps.
const maxLines = 1000

var (
	_ driver.Driver = (*Driver)(nil)
	_ driver.Logger = (*Driver)(nil)
)

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
		Address: ln.Addr().String(), State: driver.StateRunning, Created: time.Now().UTC(), Spec: spec},
		changed: make(chan struct{})}
	s.http = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "simulated server %s\n", s.Name)
		s.logf("%s %s %d", r.Method, r.URL.Path, http.StatusOK)
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
		s.close()
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
		s.close()
		delete(d.servers, id)
	}
}

// close stops the server's listener and ends the logs followed.
func (s *server) close() {
	s.http.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.gone {
		s.gone = true
		close(s.changed)
	}
}

func (s *server) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return
	}
	s.lines = append(s.lines, fmt.Sprintf(format, args...))
	if len(s.lines) > maxLines {
		s.lines = slices.Delete(s.lines, 0, len(s.lines)-maxLines)
	}
	s.total++
	close(s.changed)
	s.changed = make(chan struct{})
}

// since returns the lines logged after the first n (those it still keeps), how many
// were logged in all, a channel closed at the next change, and whether the server is
// gone.
func (s *server) since(n int) (lines []string, total int, changed <-chan struct{}, gone bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := s.total - len(s.lines) // the number of the first line kept
	lines = slices.Clone(s.lines[max(n-first, 0):])
	return lines, s.total, s.changed, s.gone
}

// Logs returns the requests the server answered, one line each ("GET /healthz 200"):
// its last lines, and with follow those it answers next, until ctx ends, the reader is
// closed or the server is destroyed. ErrNotFound if there is no such server.
func (d *Driver) Logs(ctx context.Context, id driver.ServerID, follow bool) (io.ReadCloser, error) {
	d.mu.Lock()
	s := d.servers[id]
	d.mu.Unlock()
	if s == nil {
		return nil, fmt.Errorf("logs of %s: %w", id, driver.ErrNotFound)
	}
	lines, n, changed, gone := s.since(0)
	if !follow {
		return io.NopCloser(strings.NewReader(join(lines))), nil
	}
	pr, pw := io.Pipe()
	closed := make(chan struct{})
	go func() {
		for {
			if len(lines) > 0 {
				if _, err := io.WriteString(pw, join(lines)); err != nil {
					return // the reader is closed
				}
			}
			if gone {
				pw.Close()
				return
			}
			select {
			case <-ctx.Done():
				pw.Close()
				return
			case <-closed:
				return
			case <-changed:
			}
			lines, n, changed, gone = s.since(n)
		}
	}()
	return &follower{PipeReader: pr, closed: closed}, nil
}

func join(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// follower is a followed log; Close ends the goroutine that writes it.
type follower struct {
	*io.PipeReader
	once   sync.Once
	closed chan struct{}
}

func (f *follower) Close() error {
	f.once.Do(func() { close(f.closed) })
	return f.PipeReader.Close()
}
