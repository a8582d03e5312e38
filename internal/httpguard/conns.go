package httpguard

import (
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Conns bounds the connections one server holds: at most max at once (the next waits
// in the kernel's backlog, see LimitListener), and, once three quarters of them are
// open, kept-alive connections that sit idle are closed, oldest first, until half are.
// Without that, a client that opens max connections, sends a request on each and
// leaves them idle locks every other client out until the idle timeout. Use Listener
// for the server's listener and ConnState as its http.Server.ConnState.
type Conns struct {
	max  int
	mu   sync.Mutex
	open int
	idle map[net.Conn]time.Time
}

// NewConns returns the bound of a server that may hold max connections (0: no bound).
func NewConns(max int) *Conns { return &Conns{max: max, idle: map[net.Conn]time.Time{}} }

// Listener is ln accepting at most the bound's max connections at once.
func (c *Conns) Listener(ln net.Listener) net.Listener { return LimitListener(ln, c.max) }

// ConnState follows each connection's state (http.Server.ConnState) and sheds idle
// connections under pressure.
func (c *Conns) ConnState(conn net.Conn, state http.ConnState) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	switch state {
	case http.StateNew:
		c.open++
	case http.StateIdle:
		c.idle[conn] = time.Now()
	case http.StateActive:
		delete(c.idle, conn)
	case http.StateClosed, http.StateHijacked:
		c.open--
		delete(c.idle, conn)
	}
	var shed []net.Conn
	if c.open >= c.max*3/4 && len(c.idle) > 0 {
		idle := make([]net.Conn, 0, len(c.idle))
		for k := range c.idle {
			idle = append(idle, k)
		}
		slices.SortFunc(idle, func(a, b net.Conn) int { return c.idle[a].Compare(c.idle[b]) })
		for _, k := range idle {
			if c.open-len(shed) <= c.max/2 {
				break
			}
			shed = append(shed, k)
			delete(c.idle, k)
		}
	}
	c.mu.Unlock()
	for _, k := range shed {
		k.Close() // the server sees StateClosed and counts it
	}
}
