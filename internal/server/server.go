package server

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/dashboard"
	"github.com/kiln-build/kiln/internal/engine"
	"github.com/kiln-build/kiln/internal/httpguard"
	"github.com/kiln-build/kiln/internal/pipeline"
	"github.com/kiln-build/kiln/internal/plan"
	"github.com/kiln-build/kiln/internal/spec"
	"github.com/kiln-build/kiln/internal/store"
)

// Server serves the API and the dashboard of one engine and its pipelines.
type Server struct {
	eng    *engine.Engine
	pipes  *pipeline.Manager
	tokens Tokens
	log    *slog.Logger
	dash   *dashboard.Dashboard
	limits limits
}

// Tokens are the bearer tokens the API accepts: Admin for everything, ReadOnly (if
// set) for reading only.
type Tokens struct {
	Admin    string
	ReadOnly string
}

// New returns a server; which credential each route needs is in routes.go. The
// pipelines' routes are served by pipes.
func New(eng *engine.Engine, pipes *pipeline.Manager, tokens Tokens, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{eng: eng, pipes: pipes, tokens: tokens, log: log, limits: defaultLimits,
		dash: dashboard.New(dashboard.Options{Engine: eng, Pipelines: pipes, AdminToken: tokens.Admin, ReadOnlyToken: tokens.ReadOnly, Log: log})}
}

// Serve answers on ln until ctx ends, then shuts down gracefully: it closes ln and
// returns once the requests in flight have ended, or after 5 s.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	l := s.limits
	srv := &http.Server{
		Handler:           s.Handler(),
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: l.readHeader,
		IdleTimeout:       l.idle,
		// From the end of a request's headers; streams extend it per write (streaming).
		WriteTimeout:   l.write,
		MaxHeaderBytes: l.maxHeader,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	shutDown := make(chan struct{})
	go func() {
		defer close(shutDown)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	conns := httpguard.NewConns(l.conns)
	srv.ConnState = conns.ConnState
	if err := srv.Serve(conns.Listener(ln)); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-shutDown // the requests in flight have ended (or had 5 s)
	return nil
}

// Handler returns the API's and the dashboard's routes.
func (s *Server) Handler() http.Handler { return s.mount(s.routes()) }

// auth lets a request through with the admin token, or with the read-only token to a
// route that needs only to read.
func (s *Server) auth(need access, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		switch {
		case ok && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.tokens.Admin)) == 1:
		case ok && s.tokens.ReadOnly != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.tokens.ReadOnly)) == 1:
			if need != reader {
				writeError(w, http.StatusForbidden, errors.New("the read-only token cannot change anything: use the token in .kiln/token"))
				return
			}
		default:
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token (the CLI reads it from .kiln/token, or KILN_TOKEN)"))
			return
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, api.Error{Error: err.Error()})
}

// errorCode maps engine errors to HTTP statuses.
func errorCode(err error) int {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrRolloutInProgress), errors.Is(err, engine.ErrNoCanary), errors.Is(err, engine.ErrCanaryStarting):
		return http.StatusConflict
	default:
		return http.StatusBadRequest
	}
}

// decode reads the request's JSON body into v, all of it (so that the read deadline of
// the body is lifted before a long answer). Its error is for writeBodyError.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		_, err = io.Copy(io.Discard, r.Body)
	}
	return err
}

// writeBodyError answers a request whose body could not be read or decoded: 413 for
// one over the route's limit, 408 for one sent too slowly, 400 otherwise.
func writeBodyError(w http.ResponseWriter, err error) {
	switch {
	case httpguard.TooLarge(err):
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body too large: %w", err))
	case errors.Is(err, httpguard.ErrSlowBody):
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestTimeout, err)
	default:
		writeError(w, http.StatusBadRequest, errors.New("malformed request: "+err.Error()))
	}
}

// PlanResponse is the answer of POST /v1/plan.
type PlanResponse struct {
	Plan plan.JSONPlan `json:"plan"`
	Text string        `json:"text"`
}

func (s *Server) plan(w http.ResponseWriter, r *http.Request) {
	var req api.PlanRequest
	if err := decode(r, &req); err != nil {
		writeBodyError(w, err)
		return
	}
	p, err := s.eng.Plan(r.Context(), req)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	var text strings.Builder
	plan.WriteText(&text, p)
	writeJSON(w, http.StatusOK, PlanResponse{Plan: plan.ToJSON(p), Text: text.String()})
}

// stream runs op and answers with NDJSON: the events of services as they happen, then
// the result. Errors before op starts work are plain HTTP errors.
func (s *Server) stream(w http.ResponseWriter, services []string, op func() (api.Result, error)) {
	events, cancel := s.eng.Subscribe()
	defer cancel()
	type outcome struct {
		res api.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := op()
		done <- outcome{res, err}
	}()
	want := map[string]bool{}
	for _, n := range services {
		want[n] = true
	}
	started := false
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	send := func(m api.Message) {
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		enc.Encode(m)
		if flusher != nil {
			flusher.Flush()
		}
	}
	for {
		select {
		case ev := <-events:
			if ev.Kind != api.SubjectPipeline && (len(want) == 0 || want[ev.Service]) {
				send(api.Message{Type: "event", Event: &ev})
			}
		case o := <-done:
			if o.err != nil && !started {
				writeError(w, errorCode(o.err), o.err)
				return
			}
			for drained := false; !drained; { // events recorded before the result
				select {
				case ev := <-events:
					if ev.Kind != api.SubjectPipeline && (len(want) == 0 || want[ev.Service]) {
						send(api.Message{Type: "event", Event: &ev})
					}
				default:
					drained = true
				}
			}
			if o.err != nil {
				o.res = api.Result{OK: false, Services: []api.ServiceResult{{Outcome: "failed", Detail: o.err.Error()}}}
			}
			send(api.Message{Type: "result", Result: &o.res})
			return
		}
	}
}

func (s *Server) apply(w http.ResponseWriter, r *http.Request) {
	var req api.ApplyRequest
	if err := decode(r, &req); err != nil {
		writeBodyError(w, err)
		return
	}
	var names []string
	for _, svc := range req.Services {
		names = append(names, svc.Name)
	}
	// The CLI's spec has checked them; another client's request may not have been.
	for _, n := range append(names, pipelineNames(req.Pipelines)...) {
		if !spec.ValidName(n) {
			writeError(w, http.StatusBadRequest, fmt.Errorf(badName, n))
			return
		}
	}
	// The engine runs rollouts under its own context: a client that disconnects does
	// not stop one half-way.
	s.stream(w, names, func() (api.Result, error) { return s.eng.Apply(context.WithoutCancel(r.Context()), req) })
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	var req api.RollbackRequest
	if err := decode(r, &req); err != nil {
		writeBodyError(w, err)
		return
	}
	name := r.PathValue("name")
	s.stream(w, []string{name}, func() (api.Result, error) {
		return s.eng.Rollback(context.WithoutCancel(r.Context()), name, req)
	})
}

func (s *Server) destroy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.stream(w, []string{name}, func() (api.Result, error) { return s.eng.Destroy(context.WithoutCancel(r.Context()), name) })
}

func (s *Server) pause(w http.ResponseWriter, r *http.Request) {
	var req api.PauseRequest
	if err := decode(r, &req); err != nil {
		writeBodyError(w, err)
		return
	}
	if err := s.eng.Pause(r.Context(), r.PathValue("name"), req.Maintenance); err != nil {
		writeError(w, errorCode(err), err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) resume(w http.ResponseWriter, r *http.Request) {
	if err := s.eng.Resume(r.Context(), r.PathValue("name")); err != nil {
		writeError(w, errorCode(err), err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// steer is the handler of kiln promote and kiln abort: f is the engine's.
func (s *Server) steer(f func(ctx context.Context, service, user string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req api.CanaryRequest
		if err := decode(r, &req); err != nil {
			writeBodyError(w, err)
			return
		}
		if err := f(r.Context(), r.PathValue("name"), cmp.Or(req.User, "an API client")); err != nil {
			writeError(w, errorCode(err), err)
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	}
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.eng.Status(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	h, err := s.eng.History(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, errorCode(err), err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	if !validQuery(w, r, "service") {
		return
	}
	since, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
	evs, err := s.eng.Events(r.Context(), r.URL.Query().Get("service"), since)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, evs)
}

// eventStream sends events as server-sent events: those after ?since= (or after the
// Last-Event-ID a reconnecting browser sends; none with since=-1), then new ones as they
// happen, until the client goes away.
func (s *Server) eventStream(w http.ResponseWriter, r *http.Request) {
	if !validQuery(w, r, "service") {
		return
	}
	since, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
	if id, err := strconv.ParseInt(r.Header.Get("Last-Event-ID"), 10, 64); err == nil {
		since = id
	}
	service := r.URL.Query().Get("service")
	live, cancel := s.eng.Subscribe() // before reading the backlog, so nothing falls between
	defer cancel()
	var backlog []api.Event
	if since >= 0 {
		var err error
		if backlog, err = s.eng.Events(r.Context(), service, since); err != nil {
			writeError(w, http.StatusInternalServerError, err)
			return
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	flusher, _ := w.(http.Flusher)
	send := func(ev api.Event) {
		if ev.ID <= since || (service != "" && (ev.Service != service || ev.Kind == api.SubjectPipeline)) {
			return
		}
		since = ev.ID
		b, _ := json.Marshal(ev)
		fmt.Fprintf(w, "id: %d\ndata: %s\n\n", ev.ID, b)
		if flusher != nil {
			flusher.Flush()
		}
	}
	for _, ev := range backlog {
		send(ev)
	}
	if flusher != nil {
		flusher.Flush()
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-live:
			send(ev)
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	follow := r.URL.Query().Get("follow") == "1"
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fw := flushWriter{w}
	if err := s.eng.Logs(r.Context(), r.PathValue("name"), follow, fw); err != nil {
		writeError(w, errorCode(err), err)
	}
}

// flushWriter flushes after every write, so followed logs arrive as they are printed.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) { return f.w.Write(p) }

func (f flushWriter) Flush() {
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
}

func (s *Server) pipelines(w http.ResponseWriter, r *http.Request) {
	ps, err := s.pipes.Pipelines(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	for i := range ps {
		ps[i] = withoutSecrets(ps[i])
	}
	writeJSON(w, http.StatusOK, ps)
}

func (s *Server) runs(w http.ResponseWriter, r *http.Request) {
	if !validQuery(w, r, "pipeline") {
		return
	}
	runs, err := s.pipes.Runs(r.Context(), r.URL.Query().Get("pipeline"))
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, runs)
}

func (s *Server) run(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, errors.New("a run is named by its number"))
		return
	}
	run, err := s.pipes.Run(r.Context(), id)
	if err != nil {
		writeError(w, errorCode(err), err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

func (s *Server) trigger(w http.ResponseWriter, r *http.Request) {
	var req api.TriggerRequest
	if err := decode(r, &req); err != nil {
		writeBodyError(w, err)
		return
	}
	run, err := s.pipes.Trigger(r.Context(), r.PathValue("name"), req.Commit, "manual")
	if err != nil && !errors.Is(err, store.ErrRunExists) {
		writeError(w, errorCode(err), err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body) // bounded by the route's limit
	if err != nil {
		writeBodyError(w, err)
		return
	}
	run, relevant, err := s.pipes.Webhook(r.Context(), r.PathValue("name"), body, r.Header.Get("X-Hub-Signature-256"))
	switch {
	case errors.Is(err, pipeline.ErrBadSignature):
		writeError(w, http.StatusUnauthorized, err)
	case errors.Is(err, store.ErrRunExists):
		writeJSON(w, http.StatusOK, run) // a redelivery: the commit already has its run
	case err != nil:
		writeError(w, errorCode(err), err)
	case !relevant:
		writeJSON(w, http.StatusAccepted, api.Error{Error: "push to another branch: ignored"})
	default:
		writeJSON(w, http.StatusAccepted, run)
	}
}

// withoutSecrets is what the API shows of a pipeline: anyone with the read-only token
// reads it. Vars (set by -var or KILN_VAR_ when it was applied) are where secrets are
// passed, the webhook secret is one, and a repository URL may carry a password.
func withoutSecrets(p api.Pipeline) api.Pipeline {
	p.Webhook = p.Webhook || p.WebhookSecret != ""
	p.WebhookSecret = ""
	p.Vars = nil
	if u, err := url.Parse(p.Repo); err == nil && u.User != nil {
		u.User = nil // a token is often the user name (https://TOKEN@host/repo)
		p.Repo = u.String()
	}
	return p
}

func pipelineNames(ps []api.Pipeline) []string {
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	return names
}
