package doortls

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// PeekTimeout is how long SplitPlain waits for a connection's first byte before it
// closes the connection.
const PeekTimeout = 10 * time.Second

// SplitPlain splits ln by what each connection's client sends first: a TLS
// handshake record (0x16) goes to tlsLn, anything else to plainLn. A door serves
// HTTPS on tlsLn (through tls.NewListener) and Redirect on plainLn, so that
// http://host:8443/ on a TLS port is sent to https://host:8443/.
//
// The first byte is awaited in a goroutine per connection, for at most
// PeekTimeout, so a client that sends nothing holds up no other. The accepting
// starts at the first Accept of either listener. Each listener closes on its own
// (its Accept then returns an error matching net.ErrClosed, and the connections
// meant for it are closed); closing the second also closes ln and returns once
// every goroutine of the split has ended, connections still unread closed. If
// ln.Accept fails for good, both listeners return that error.
func SplitPlain(ln net.Listener) (tlsLn, plainLn net.Listener) {
	return splitPlain(ln, PeekTimeout)
}

func splitPlain(ln net.Listener, timeout time.Duration) (tlsLn, plainLn net.Listener) {
	s := &splitter{ln: ln, timeout: timeout, open: 2, pending: map[net.Conn]bool{}, done: make(chan struct{})}
	for i := range s.subs {
		s.subs[i] = &subListener{s: s, conns: make(chan net.Conn), closed: make(chan struct{})}
	}
	return s.subs[0], s.subs[1]
}

type splitter struct {
	ln      net.Listener
	timeout time.Duration
	subs    [2]*subListener // TLS, plain

	mu      sync.Mutex
	started bool
	open    int // sub-listeners not closed
	closed  bool
	pending map[net.Conn]bool // connections whose first byte is awaited

	wg      sync.WaitGroup // the accept loop and the peeks
	done    chan struct{}  // closed when the accept loop has ended, loopErr set
	loopErr error
}

var _ net.Listener = (*subListener)(nil)

type subListener struct {
	s         *splitter
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *subListener) Addr() net.Addr { return l.s.ln.Addr() }

func (l *subListener) Accept() (net.Conn, error) {
	if err := l.s.startOnce(); err != nil {
		return nil, l.closedErr()
	}
	select {
	case <-l.closed:
		return nil, l.closedErr()
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, l.closedErr()
	case <-l.s.done:
		if errors.Is(l.s.loopErr, net.ErrClosed) {
			return nil, l.closedErr()
		}
		return nil, l.s.loopErr
	}
}

func (l *subListener) closedErr() error {
	a := l.Addr()
	return &net.OpError{Op: "accept", Net: a.Network(), Addr: a, Err: net.ErrClosed}
}

// Close closes this listener; the second of the pair to close closes ln too and
// waits for the split's goroutines. Closing it again does nothing.
func (l *subListener) Close() error {
	first := false
	l.closeOnce.Do(func() { first = true; close(l.closed) })
	if !first {
		return nil
	}
	return l.s.release()
}

// startOnce starts the accept loop, unless the split is closed.
func (s *splitter) startOnce() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return net.ErrClosed
	}
	if !s.started {
		s.started = true
		s.wg.Add(1)
		go s.loop()
	}
	return nil
}

func (s *splitter) release() error {
	s.mu.Lock()
	s.open--
	last := s.open == 0
	if last {
		s.closed = true
		for c := range s.pending {
			c.SetReadDeadline(time.Now()) // ends its peek now
		}
	}
	s.mu.Unlock()
	if !last {
		return nil
	}
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// loop accepts until ln fails for good; a temporary failure (out of file
// descriptors) is retried after a pause growing to a second, as net/http does.
func (s *splitter) loop() {
	defer s.wg.Done()
	defer close(s.done)
	var pause time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() && !s.isClosed() {
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				time.Sleep(pause)
				continue
			}
			s.loopErr = err
			return
		}
		pause = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			continue // ln is closed: the next Accept fails
		}
		s.pending[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go s.peek(c)
	}
}

func (s *splitter) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// peek reads c's first byte and hands c to the listener it is for.
func (s *splitter) peek(c net.Conn) {
	defer s.wg.Done()
	var first [1]byte
	err := c.SetReadDeadline(time.Now().Add(s.timeout))
	if err == nil {
		_, err = io.ReadFull(c, first[:])
	}
	s.mu.Lock()
	delete(s.pending, c)
	closed := s.closed
	s.mu.Unlock()
	if err == nil {
		err = c.SetReadDeadline(time.Time{})
	}
	if err != nil || closed {
		c.Close()
		return
	}
	sub := s.subs[1]
	if first[0] == 0x16 { // a TLS handshake record
		sub = s.subs[0]
	}
	select {
	case sub.conns <- &peekedConn{Conn: c, first: first[0]}:
	case <-sub.closed:
		c.Close()
	}
}

// peekedConn gives back the byte peek read before the rest of the connection.
type peekedConn struct {
	net.Conn
	first byte
	read  bool
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if c.read || len(p) == 0 {
		return c.Conn.Read(p)
	}
	c.read = true
	p[0] = c.first
	return 1, nil
}
