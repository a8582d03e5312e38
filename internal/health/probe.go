package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// DefaultTimeout bounds a probe whose Check has no Timeout.
const DefaultTimeout = time.Second

// Check says how to probe a server: an HTTP GET of HTTPPath, or, if TCP is set, opening
// a connection. Exactly one of the two must be set.
type Check struct {
	HTTPPath string        // e.g. "/healthz"; healthy if it answers 2xx or 3xx
	TCP      bool          // healthy if a connection can be opened
	Timeout  time.Duration // per probe; DefaultTimeout if zero
	// FailAfter makes WaitHealthy give up after this many definitive answers in a row
	// (see IsDefinitive) instead of waiting for its deadline; 0 never gives up.
	FailAfter int
}

// IsDefinitive reports whether a probe's error is the server's own answer that it is
// not healthy (an HTTP status of 400 or more), rather than a failure to reach it: a
// server that answers 404 is up, and will go on answering 404.
func IsDefinitive(err error) bool {
	var s statusError
	return errors.As(err, &s) && int(s) >= 400
}

// ErrInvalidCheck means a Check sets both or neither of HTTPPath and TCP.
var ErrInvalidCheck = errors.New("health check must set exactly one of an HTTP path or TCP")

// ErrTimeout means a probe got no answer within its Check's Timeout.
var ErrTimeout = errors.New("timed out")

// client is shared by all HTTP probes. It keeps one idle connection per server, so
// probing a large fleet every second does not open a connection per probe; a server
// that dies breaks its connection, which fails the next probe as it should. A probe
// never uses a proxy from the environment: it must reach the server itself.
var client = &http.Client{
	Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     30 * time.Second,
	},
	// A redirect is an answer: 3xx counts as healthy and is not followed.
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Probe checks the server at addr ("host:port") once and returns nil if it is healthy.
// The error says what failed, e.g. "GET /healthz: status 503" or
// "dial 127.0.0.1:1234: connection refused". If ctx ends first, the error wraps
// ctx's error.
func Probe(ctx context.Context, addr string, c Check) error {
	if (c.HTTPPath == "") == !c.TCP {
		return ErrInvalidCheck
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var what string
	var err error
	if c.TCP {
		what = "dial " + addr
		err = probeTCP(pctx, addr)
	} else {
		path := c.HTTPPath
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		what = "GET " + path
		err = probeHTTP(pctx, "http://"+addr+path)
	}
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", what, context.Cause(ctx))
	case pctx.Err() != nil:
		return fmt.Errorf("%s: %w after %s", what, ErrTimeout, timeout)
	}
	msg := describe(err)
	if !c.TCP {
		msg = what + ": " + msg
	}
	return &probeError{msg: msg, err: err}
}

func probeTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

func probeHTTP(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kiln-health")
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	// Drain a little so the server does not see a reset, but never read a huge body.
	_, _ = io.CopyN(io.Discard, res.Body, 64<<10)
	res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 399 {
		return statusError(res.StatusCode)
	}
	return nil
}

type statusError int

func (s statusError) Error() string { return fmt.Sprintf("status %d", int(s)) }

// probeError carries a short message for people and the full error for errors.Is.
type probeError struct {
	msg string
	err error
}

func (e *probeError) Error() string { return e.msg }
func (e *probeError) Unwrap() error { return e.err }

// describe shortens a network error for people: `Get "http://127.0.0.1:1234/healthz":
// dial tcp 127.0.0.1:1234: connect: connection refused` becomes
// "dial 127.0.0.1:1234: connection refused".
func describe(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		return err.Error()
	}
	cause := op.Err
	var se *os.SyscallError
	if errors.As(cause, &se) {
		cause = se.Err
	}
	if op.Addr != nil {
		return fmt.Sprintf("%s %s: %v", op.Op, op.Addr, cause)
	}
	return fmt.Sprintf("%s: %v", op.Op, cause)
}
