package httpguard

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/netutil"
)

// ErrSlowBody means a request body arrived slower than its Body.MinRate allows: the
// read failed and the connection is closed.
var ErrSlowBody = errors.New("request body sent too slowly")

// Body bounds a request body. The zero value bounds nothing.
type Body struct {
	// Max is the largest body, in bytes; reading past it fails with *http.MaxBytesError.
	// Zero or less: no limit.
	Max int64
	// Grace is how long reads of the body may wait for the client before MinRate
	// applies; MinRate is the rate, in bytes per second of waiting, the client must keep
	// up on average after that (Apache's mod_reqtimeout, "body=20,MinRate=500"). Only
	// time spent waiting for the client counts: a handler that reads slowly (a proxy
	// whose server is slow to take the body) does not make its client slow. A client
	// that sends one byte every few seconds is cut off once Grace is spent, whatever
	// Max is. MinRate zero: no deadline.
	Grace   time.Duration
	MinRate int64
}

// Limit returns h with the request body bounded by b. A request that declares a
// longer body than b.Max is answered by tooLarge without calling h. A body that turns
// out longer (chunked) fails to read with *http.MaxBytesError, one too slow with
// ErrSlowBody: the handler answers those (413, 408).
func (b Body) Limit(tooLarge http.HandlerFunc, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		if b.Max > 0 && r.ContentLength > b.Max {
			tooLarge(w, r)
			if r.ContentLength <= lingerBytes {
				linger(w, r)
			}
			return
		}
		rc := r.Body
		hit := false
		if b.Max > 0 {
			rc = &limitReader{ReadCloser: http.MaxBytesReader(w, rc, b.Max), hit: &hit}
		}
		if b.MinRate > 0 {
			sb := &slowBody{rc: rc, ctl: http.NewResponseController(w), b: b}
			sb.arm(time.Now().Add(b.Grace)) // also bounds the drain after a handler that never reads
			defer sb.finish()
			rc = sb
		}
		raw := r.Body
		r.Body = rc
		h.ServeHTTP(w, r)
		if hit {
			r.Body = raw
			linger(w, r)
		}
	})
}

// A refused body is read on, up to lingerBytes and for lingerTime, once the answer is
// sent: a client still sending it would otherwise be reset by the close, often before
// it reads the 413 (TCP resets a connection closed with data unread). A client that
// asked to wait (Expect: 100-continue) sent nothing more, and a larger body is not
// worth reading.
const (
	lingerBytes = 1 << 20
	lingerTime  = 2 * time.Second
)

// linger sends what the handler answered and reads the rest of r's body, within
// lingerBytes and lingerTime.
func linger(w http.ResponseWriter, r *http.Request) {
	if strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		return
	}
	ctl := http.NewResponseController(w)
	ctl.Flush()
	ctl.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, r.Body, lingerBytes)
}

// limitReader notes when its MaxBytesReader refused to read past the limit.
type limitReader struct {
	io.ReadCloser
	hit *bool
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.ReadCloser.Read(p)
	if TooLarge(err) {
		*l.hit = true
	}
	return n, err
}

// TooLarge reports whether err is a body read that went past Body.Max.
func TooLarge(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

// slowBody sets the connection's read deadline before each read of the body to what
// the client's rate so far allows.
type slowBody struct {
	rc  io.ReadCloser
	ctl *http.ResponseController
	b   Body
	// n and waited are the reader's (one goroutine at a time, as for any body).
	n      int64
	waited time.Duration

	mu   sync.Mutex
	done bool // the handler returned: the connection is no longer this request's
}

func (s *slowBody) Read(p []byte) (int, error) {
	allowed := s.b.Grace + time.Duration(float64(s.n)/float64(s.b.MinRate)*float64(time.Second)) - s.waited
	s.arm(time.Now().Add(allowed))
	start := time.Now()
	n, err := s.rc.Read(p)
	s.waited += time.Since(start)
	s.n += int64(n)
	switch {
	case err == io.EOF:
		// Read in full: the server's wait for the client to go away during a long
		// answer must not inherit the deadline.
		s.arm(time.Time{})
	case err != nil:
		// The server would otherwise wait for the rest of the body (it reads what a
		// handler left, to keep the connection) as slowly as the client sends it.
		s.arm(time.Now())
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("%w: %d bytes in %s: %w", ErrSlowBody, s.n, s.waited.Round(time.Millisecond), err)
		}
	}
	return n, err
}

func (s *slowBody) Close() error { return s.rc.Close() }

// arm sets the connection's read deadline, unless the handler has returned (a proxy's
// transport may still read the body then): the connection may be reading the next
// request.
func (s *slowBody) arm(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.ctl.SetReadDeadline(t) // ErrNotSupported only under test recorders
	}
}

func (s *slowBody) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
}

// Recover returns h with panics recovered: each is logged with its route, value and
// stack and answered by fail, if nothing of the response was sent yet (otherwise the
// connection is cut, so the client sees a broken answer rather than a short one). The
// server goes on serving. http.ErrAbortHandler passes through: it is how a handler
// (httputil.ReverseProxy) aborts a response on purpose.
func Recover(log *slog.Logger, fail http.HandlerFunc, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw := &tracker{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			log.Error("panic serving a request", "route", r.Pattern, "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if tw.sent {
				panic(http.ErrAbortHandler)
			}
			fail(w, r)
		}()
		h.ServeHTTP(tw, r)
	})
}

// tracker notes whether a response has started.
type tracker struct {
	http.ResponseWriter
	sent bool
}

func (t *tracker) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		t.sent = true
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *tracker) Write(p []byte) (int, error) {
	t.sent = true
	return t.ResponseWriter.Write(p)
}

func (t *tracker) Flush() {
	t.sent = true
	http.NewResponseController(t.ResponseWriter).Flush()
}

func (t *tracker) Unwrap() http.ResponseWriter { return t.ResponseWriter }

// LimitListener returns ln accepting at most n connections at once (n > 0): the
// next waits in the kernel's backlog until one closes. Upgraded connections count
// until they close.
func LimitListener(ln net.Listener, n int) net.Listener {
	if n <= 0 {
		return ln
	}
	return netutil.LimitListener(ln, n)
}
