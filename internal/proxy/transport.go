package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// maxAttempts bounds the servers one request is tried on.
const maxAttempts = 3

// newTransport returns the transport to the servers: plain HTTP/1.1 with keep-alives
// (many idle connections per server, since every request of a busy service goes to a
// handful of servers) and no response timeout, since only the app knows how long an
// answer may take.
func newTransport() *http.Transport {
	d := &net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil, // never a proxy from the environment
		DialContext:           d.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       30 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass Accept-Encoding and bodies through untouched
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// roundTrip sends req to a server in rotation and, if that fails before any response,
// to another one when it is safe (see retryable). It runs on the handler's goroutine.
func (p *Proxy) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	f := ctx.Value(flightKey{}).(*flight)
	var rb *resendable
	if req.Body != nil && req.Body != http.NoBody {
		rb = &resendable{rc: req.Body}
	}
	route := routeOf(ctx)
	canary := route != nil && route.Canary
	var (
		tried    []*upstream
		deadline time.Time // of the wait for a server, set when it starts
		lastErr  error
	)
	for attempt := 0; ; attempt++ {
		u, err := p.await(ctx, tried, canary, &deadline)
		if err != nil {
			if lastErr != nil {
				return nil, lastErr // no other server to try: the failure says more
			}
			return nil, err
		}
		f.take(u)
		u.requests.Add(1)
		if route != nil && route.Start.IsZero() {
			route.Start = time.Now()
		}

		out, url := *req, *req.URL
		url.Host = u.addr
		out.URL = &url
		if rb != nil {
			out.Body = rb
		}
		res, err := p.tr.RoundTrip(&out)
		if err == nil {
			return res, nil // in flight on u until the handler returns
		}
		f.land()
		if cerr := rb.clientErr(); cerr != nil {
			return nil, cerr // the client's body failed (too large, too slow): not u's doing
		}
		u.failures.Add(1)
		if route != nil && ctx.Err() == nil {
			route.Failed = true // not when the client went away: that is no server's failure
		}
		lastErr = fmt.Errorf("%s: %w", u.addr, err)
		if ctx.Err() != nil {
			return nil, lastErr
		}
		sent := !isDialError(err)
		if !sent {
			u.markDown()
		}
		if !retryable(req, rb, sent, attempt) {
			return nil, lastErr
		}
		tried = append(tried, u)
		p.retries.Add(1)
		p.log.Info("retrying on another server", "server_addr", u.addr, "method", req.Method, "path", req.URL.Path, "error", err)
	}
}

// retryable reports whether a request whose attempt failed before any response may be
// sent to another server. A request that never reached a server (the connection could
// not be opened) may, if its body can be sent again: it has none, or no byte of it was
// read. A request that may have reached the server is retried once, and only if it is
// idempotent and has no body (the rule of net/http's own retries): a request that may
// have taken effect must not be repeated, and one that crashes servers must not take
// down the fleet.
func retryable(req *http.Request, rb *resendable, sent bool, attempt int) bool {
	switch {
	case attempt+1 >= maxAttempts:
		return false
	case !sent:
		return rb == nil || !rb.read.Load()
	}
	return attempt == 0 && rb == nil && idempotent(req)
}

func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return req.Header.Get("Idempotency-Key") != "" || req.Header.Get("X-Idempotency-Key") != ""
}

// isDialError reports whether err means a connection could not be opened, so nothing
// of the request was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// await picks a server for the next attempt. While there is no candidate it waits for
// the set to change, up to the request's wait for a server (which starts the first
// time it waits), then returns errNoUpstream.
func (p *Proxy) await(ctx context.Context, tried []*upstream, canary bool, deadline *time.Time) (*upstream, error) {
	var timer *time.Timer
	for {
		u, changed := p.pick(tried, canary)
		if u != nil {
			return u, nil
		}
		if p.wait <= 0 {
			return nil, errNoUpstream
		}
		if timer == nil {
			if deadline.IsZero() {
				*deadline = time.Now().Add(p.wait)
			}
			d := time.Until(*deadline)
			if d <= 0 {
				return nil, errNoUpstream
			}
			timer = time.NewTimer(d)
			defer timer.Stop()
		}
		select {
		case <-changed:
		case <-timer.C:
			return nil, errNoUpstream
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// resendable is a request body that can be sent again as long as no byte of it has been
// read.
type resendable struct {
	rc   io.ReadCloser
	read atomic.Bool // set by the transport's writer, read by the handler's goroutine
	err  atomic.Pointer[error]
}

func (b *resendable) Read(p []byte) (int, error) {
	b.read.Store(true)
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.err.Store(&err)
	}
	return n, err
}

// clientErr returns the error reading the client's body failed with, if it did; nil
// for a nil b.
func (b *resendable) clientErr() error {
	if b == nil {
		return nil
	}
	if e := b.err.Load(); e != nil {
		return *e
	}
	return nil
}

// Close closes the body once it has been read. Until then the transport's close (it
// closes the body of a failed request) is ignored, so the body can be sent again; the
// HTTP server closes it when the handler returns.
func (b *resendable) Close() error {
	if b.read.Load() {
		return b.rc.Close()
	}
	return nil
}
