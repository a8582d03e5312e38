package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/dashboard"
	"github.com/kiln-build/kiln/internal/engine"
	"github.com/kiln-build/kiln/internal/plan"
	"github.com/kiln-build/kiln/internal/store"
)

// Server serves the API and the dashboard of one engine.
type Server struct {
	eng    *engine.Engine
	tokens Tokens
	log    *slog.Logger
	dash   *dashboard.Dashboard
}

// Tokens are the bearer tokens the API accepts: Admin for everything, ReadOnly (if
// set) for reading only.
type Tokens struct {
	Admin    string
	ReadOnly string
}

// New returns a server; a token is required on every route but /healthz, the
// dashboard's sign-in page and its static files.
func New(eng *engine.Engine, tokens Tokens, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{eng: eng, tokens: tokens, log: log,
		dash: dashboard.New(dashboard.Options{Engine: eng, AdminToken: tokens.Admin, ReadOnlyToken: tokens.ReadOnly, Log: log})}
}

// Serve answers on ln until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("POST /v1/plan", s.auth(s.plan))
	mux.HandleFunc("POST /v1/apply", s.auth(s.apply))
	mux.HandleFunc("GET /v1/status", s.auth(s.status))
	mux.HandleFunc("GET /metrics", s.auth(s.eng.Metrics().ServeHTTP))
	mux.HandleFunc("GET /v1/events", s.auth(s.events))
	mux.HandleFunc("GET /v1/events/stream", s.auth(s.eventStream))
	mux.HandleFunc("GET /v1/services/{name}/logs", s.auth(s.logs))
	mux.HandleFunc("GET /v1/pipelines", s.auth(s.pipelines))
	mux.HandleFunc("GET /v1/runs", s.auth(s.runs))
	mux.HandleFunc("GET /v1/runs/{id}", s.auth(s.run))
	mux.HandleFunc("POST /v1/pipelines/{name}/trigger", s.auth(s.trigger))
	// Webhooks come from git hosts, which sign the payload instead of holding the token.
	mux.HandleFunc("POST /v1/pipelines/{name}/webhook", s.webhook)
	mux.HandleFunc("GET /v1/services/{name}/history", s.auth(s.history))
	mux.HandleFunc("POST /v1/services/{name}/rollback", s.auth(s.rollback))
	mux.HandleFunc("DELETE /v1/services/{name}", s.auth(s.destroy))
	s.dash.Register(mux)
	mux.HandleFunc("GET /ui/stream", s.dash.SignedIn(s.eventStream))
	return mux
}

// auth lets a request through with the admin token, or with the read-only token if it
// changes nothing.
func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		switch {
		case ok && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.tokens.Admin)) == 1:
		case ok && s.tokens.ReadOnly != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.tokens.ReadOnly)) == 1:
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
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
	case errors.Is(err, store.ErrRolloutInProgress):
		return http.StatusConflict
	default:
		return http.StatusBadRequest
	}
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New("malformed request: " + err.Error())
	}
	return nil
}

// PlanResponse is the answer of POST /v1/plan.
type PlanResponse struct {
	Plan plan.JSONPlan `json:"plan"`
	Text string        `json:"text"`
}

func (s *Server) plan(w http.ResponseWriter, r *http.Request) {
	var req api.PlanRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
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
			if len(want) == 0 || want[ev.Service] {
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
					if len(want) == 0 || want[ev.Service] {
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
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var names []string
	for _, svc := range req.Services {
		names = append(names, svc.Name)
	}
	// The engine runs rollouts under its own context: a client that disconnects does
	// not stop one half-way.
	s.stream(w, names, func() (api.Result, error) { return s.eng.Apply(context.WithoutCancel(r.Context()), req) })
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	var req api.RollbackRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
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
		if ev.ID <= since || (service != "" && ev.Service != service) {
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
	ps, err := s.eng.Pipelines(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, ps)
}

func (s *Server) runs(w http.ResponseWriter, r *http.Request) {
	runs, err := s.eng.Runs(r.Context(), r.URL.Query().Get("pipeline"))
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
	run, err := s.eng.Run(r.Context(), id)
	if err != nil {
		writeError(w, errorCode(err), err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

func (s *Server) trigger(w http.ResponseWriter, r *http.Request) {
	var req api.TriggerRequest
	if err := decode(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	run, err := s.eng.Trigger(r.Context(), r.PathValue("name"), req.Commit, "manual")
	if err != nil && !errors.Is(err, store.ErrRunExists) {
		writeError(w, errorCode(err), err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	run, relevant, err := s.eng.Webhook(r.Context(), r.PathValue("name"), body, r.Header.Get("X-Hub-Signature-256"))
	switch {
	case errors.Is(err, engine.ErrBadSignature):
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
