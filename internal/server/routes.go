package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/dashboard"
	"github.com/kiln-build/kiln/internal/httpguard"
	"github.com/kiln-build/kiln/internal/spec"
)

// access is what a request must carry to reach a route.
type access int

const (
	// unset is a route that declares nothing: mount refuses to serve it, so no route is
	// open by omission.
	unset  access = iota
	public        // nothing: /healthz, the dashboard's sign-in page and static files
	reader        // the read-only or the admin token (a session of either, for the dashboard)
	admin         // the admin token (an admin session)
	signed        // a body signed with the pipeline's webhook secret (HMAC); git hosts hold no token
)

func (a access) String() string {
	return [...]string{"unset", "public", "reader", "admin", "signed"}[a]
}

// Request body limits.
const (
	// specBody is for plan and apply, whose requests carry whole services (a few MB
	// at most for hundreds of services and pipelines).
	specBody = 8 << 20
	// webhookBody is GitHub's own cap on a push payload sent to a webhook (25 MB) cut to
	// what kiln reads of it (ref and after): pushes of thousands of commits fit.
	webhookBody = 1 << 20
	// smallBody is for every other route: a rollback, a trigger, a form.
	smallBody = 64 << 10
)

// route is one entry of the table that Handler serves and the auth test reads.
type route struct {
	pattern string // "METHOD /path", as http.ServeMux takes it
	access  access
	// session marks the dashboard's routes: a session cookie is the credential and the
	// dashboard's handler checks it (and its CSRF token, on a POST).
	session bool
	body    int64 // the request body limit; smallBody if zero
	// stream marks the long answers (NDJSON of apply, rollback and destroy, server-sent
	// events, followed logs): each write gets its own deadline instead of WriteTimeout.
	stream  bool
	handler http.HandlerFunc
}

// routes is every route of the daemon's mux.
func (s *Server) routes() []route {
	rs := []route{
		{pattern: "GET /healthz", access: public, handler: func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }},
		{pattern: "POST /v1/plan", access: admin, body: specBody, handler: s.plan},
		{pattern: "POST /v1/apply", access: admin, body: specBody, stream: true, handler: s.apply},
		{pattern: "GET /v1/status", access: reader, handler: s.status},
		{pattern: "GET /metrics", access: reader, handler: s.eng.Metrics().ServeHTTP},
		{pattern: "GET /v1/events", access: reader, handler: s.events},
		{pattern: "GET /v1/events/stream", access: reader, stream: true, handler: s.eventStream},
		{pattern: "GET /v1/services/{name}/logs", access: reader, stream: true, handler: s.logs},
		{pattern: "GET /v1/pipelines", access: reader, handler: s.pipelines},
		{pattern: "GET /v1/runs", access: reader, handler: s.runs},
		{pattern: "GET /v1/runs/{id}", access: reader, handler: s.run},
		{pattern: "POST /v1/pipelines/{name}/trigger", access: admin, handler: s.trigger},
		{pattern: "POST /v1/pipelines/{name}/webhook", access: signed, body: webhookBody, handler: s.webhook},
		{pattern: "GET /v1/services/{name}/history", access: reader, handler: s.history},
		{pattern: "POST /v1/services/{name}/rollback", access: admin, stream: true, handler: s.rollback},
		{pattern: "DELETE /v1/services/{name}", access: admin, stream: true, handler: s.destroy},
		{pattern: "POST /v1/services/{name}/pause", access: admin, handler: s.pause},
		{pattern: "POST /v1/services/{name}/resume", access: admin, handler: s.resume},
		{pattern: "POST /v1/services/{name}/promote", access: admin, handler: s.steer(s.eng.Promote)},
		{pattern: "POST /v1/services/{name}/abort", access: admin, handler: s.steer(s.eng.Abort)},
		{pattern: "GET /ui/stream", access: reader, session: true, stream: true, handler: s.dash.SignedIn(s.eventStream)},
	}
	for _, d := range s.dash.Routes() {
		a := unset
		switch d.Role {
		case dashboard.Public:
			a = public
		case dashboard.Reader:
			a = reader
		case dashboard.Admin:
			a = admin
		}
		rs = append(rs, route{pattern: d.Pattern, access: a, session: true, handler: d.Handler})
	}
	return rs
}

// mount returns the handler of routes: their mux behind panic recovery.
func (s *Server) mount(routes []route) http.Handler {
	return httpguard.Recover(s.log, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusInternalServerError, errors.New("internal error (the daemon's log has the details)"))
	}, s.mux(routes))
}

// mux serves routes, each behind its checks, in this order: the body limit, the
// credential, a valid name in the path. It is the one place a route is registered. It
// panics on a route that declares no access, or that lets the read-only token change
// something: both are bugs.
func (s *Server) mux(routes []route) *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.Handle(rt.pattern, s.guard(rt))
	}
	return mux
}

func (s *Server) guard(rt route) http.Handler {
	method, _, _ := strings.Cut(rt.pattern, " ")
	switch {
	case rt.access <= unset || rt.access > signed:
		panic(fmt.Sprintf("server: route %q declares no access", rt.pattern))
	case rt.access == reader && method != http.MethodGet && !rt.session:
		panic(fmt.Sprintf("server: route %q lets the read-only token change something", rt.pattern))
	}
	h := rt.handler
	if rt.stream {
		h = s.streaming(h)
	}
	if strings.Contains(rt.pattern, "{name}") {
		h = validPathName(rt.session, h)
	}
	if !rt.session && (rt.access == reader || rt.access == admin) {
		h = s.auth(rt.access, h)
	}
	body := httpguard.Body{Max: rt.body, Grace: s.limits.bodyGrace, MinRate: s.limits.bodyMinRate}
	if body.Max == 0 {
		body.Max = smallBody
	}
	return body.Limit(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // not to read a body we refuse
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body too large: this route takes at most %d bytes", body.Max))
	}, h)
}

// limits bound what one client can hold of the API: it listens on loopback (or a unix
// socket), but a holder of the read-only token, or any local process, is a client.
type limits struct {
	readHeader  time.Duration // to read a request's headers
	idle        time.Duration // a kept-alive connection waits this long for its next request
	write       time.Duration // to answer, from the end of the request's headers (not streams)
	streamWrite time.Duration // each write of a stream
	maxHeader   int           // bytes of headers
	conns       int           // connections open at once
	// A request body may wait bodyGrace for the client, then must come at bodyMinRate
	// bytes a second on average.
	bodyGrace   time.Duration
	bodyMinRate int64
}

var defaultLimits = limits{
	readHeader: 10 * time.Second,
	idle:       time.Minute,
	// Every answer but a stream is computed from the store and the runtime in well
	// under a second, even with thousands of servers (kiln-bench dashboard).
	write:       time.Minute,
	streamWrite: 30 * time.Second,
	// Browsers send the API every cookie of its host, services' included (cookies are
	// not kept apart by port): room for big ones.
	maxHeader: 64 << 10,
	// The CLI holds one or two, a dashboard tab a few (its event stream among them).
	conns: 256,
	// A spec's few MB at 16 KiB/s take minutes: any link a CLI is used over is faster.
	bodyGrace:   10 * time.Second,
	bodyMinRate: 16 << 10,
}

// streaming gives each write of a long answer its own deadline, instead of the
// server's WriteTimeout, counted from the request: a client that stops reading is
// dropped, one that reads is never cut off.
func (s *Server) streaming(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &streamWriter{ResponseWriter: w, ctl: http.NewResponseController(w), d: s.limits.streamWrite}
		sw.extend()
		defer sw.extend() // for the end of the answer, which the server writes after h
		h(sw, r)
	}
}

type streamWriter struct {
	http.ResponseWriter
	ctl *http.ResponseController
	d   time.Duration
}

func (w *streamWriter) extend() { w.ctl.SetWriteDeadline(time.Now().Add(w.d)) }

func (w *streamWriter) Write(p []byte) (int, error) {
	w.extend()
	return w.ResponseWriter.Write(p)
}

func (w *streamWriter) Flush() {
	w.extend()
	w.ctl.Flush()
}

func (w *streamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

const badName = "%q is not a kiln name: a lowercase letter, then lowercase letters, digits, '.', '_' or '-'"

// validPathName answers 400 to a request whose {name} is not a kiln name, before
// anything looks it up.
func validPathName(session bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if n := r.PathValue("name"); !spec.ValidName(n) {
			if session {
				http.Error(w, fmt.Sprintf(badName, n), http.StatusBadRequest)
			} else {
				writeError(w, http.StatusBadRequest, fmt.Errorf(badName, n))
			}
			return
		}
		h(w, r)
	}
}

// validQuery answers 400, and returns false, if the query parameter key is set to
// something that is not a kiln name.
func validQuery(w http.ResponseWriter, r *http.Request, key string) bool {
	if v := r.URL.Query().Get(key); v != "" && !spec.ValidName(v) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("%s: "+badName, key, v))
		return false
	}
	return true
}
