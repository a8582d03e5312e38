package dashboard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/engine"
	"github.com/kiln-build/kiln/internal/pipeline"
	"github.com/kiln-build/kiln/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// sessionCookie holds a signed session: its role, its expiry and a random nonce.
const (
	sessionCookie = api.SessionCookie
	sessionTTL    = 12 * time.Hour
)

// Options configure a dashboard.
type Options struct {
	Engine *engine.Engine
	// Pipelines serves the pipelines' pages.
	Pipelines *pipeline.Manager
	// AdminToken signs in a session that may change things. Both tokens key the
	// session signatures, so a new token ends every session.
	AdminToken string
	// ReadOnlyToken, if set, signs in a session that sees everything and changes nothing.
	ReadOnlyToken string
	Log           *slog.Logger
}

// Dashboard serves the dashboard's pages.
type Dashboard struct {
	eng       *engine.Engine
	opts      Options
	key       []byte
	pages     map[string]*template.Template
	staticTag string // a hash of the static files, to bust caches
	log       *slog.Logger

	mu      sync.Mutex
	revoked map[string]time.Time // sessions signed out (by nonce), until they expire
}

// session is a signed-in browser.
type session struct {
	ReadOnly bool
	CSRF     string // the token every form of this session carries
	Expires  time.Time
	nonce    string
}

// New parses the templates; it panics if they are broken (they are embedded).
func New(opts Options) *Dashboard {
	// Keyed by both tokens: a new token, either one, ends every session.
	mac := hmac.New(sha256.New, []byte(opts.AdminToken+"\x00"+opts.ReadOnlyToken))
	mac.Write([]byte("kiln dashboard session key"))
	d := &Dashboard{eng: opts.Engine, opts: opts, key: mac.Sum(nil), pages: map[string]*template.Template{}, log: opts.Log,
		revoked: map[string]time.Time{}}
	if d.log == nil {
		d.log = slog.Default()
	}
	sum := sha256.New()
	fs.WalkDir(staticFS, "static", func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			b, _ := staticFS.ReadFile(p)
			sum.Write(b)
		}
		return nil
	})
	d.staticTag = hex.EncodeToString(sum.Sum(nil))[:12]
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	for _, n := range names {
		page := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if page == "layout" {
			continue
		}
		d.pages[page] = template.Must(template.New(page).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n))
	}
	return d
}

// Role is who may use a route of the dashboard.
type Role int

const (
	Public Role = iota + 1 // anyone: the sign-in page and the static files
	Reader                 // a session of either token
	Admin                  // a session of the admin token
)

// Route is one of the dashboard's routes. Its handler enforces Role: a page sends a
// browser without a session to sign in, a form answers 401 without a session, 403
// without the session's CSRF token or from another origin, and 403 to a read-only
// session if Role is Admin.
type Route struct {
	Pattern string // "METHOD /path", as http.ServeMux takes it
	Role    Role
	Handler http.HandlerFunc
}

// Routes returns the dashboard's routes, which the server mounts on its mux; its event
// stream, /ui/stream, is the API's behind SignedIn (see server).
func (d *Dashboard) Routes() []Route {
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	return []Route{
		{"GET /{$}", Reader, d.page(d.fleet)},
		{"GET /login", Public, d.loginForm},
		{"POST /login", Public, d.login},
		{"POST /logout", Reader, d.form(Reader, d.logout)},
		{"GET /services/{name}", Reader, d.page(d.service)},
		{"GET /services/{name}/rollback", Reader, d.page(d.confirmRollback)},
		{"POST /services/{name}/rollback", Admin, d.form(Admin, d.rollback)},
		{"POST /services/{name}/promote", Admin, d.form(Admin, d.steer(d.eng.Promote))},
		{"POST /services/{name}/abort", Admin, d.form(Admin, d.steer(d.eng.Abort))},
		{"GET /services/{name}/destroy", Reader, d.page(d.confirmDestroy)},
		{"POST /services/{name}/destroy", Admin, d.form(Admin, d.destroy)},
		{"GET /events", Reader, d.page(d.events)},
		{"GET /pipelines", Reader, d.page(d.pipelines)},
		{"GET /pipelines/{name}/trigger", Reader, d.page(d.confirmTrigger)},
		{"POST /pipelines/{name}/trigger", Admin, d.form(Admin, d.trigger)},
		{"GET /runs/{id}", Reader, d.page(d.run)},
		{"GET /images", Reader, d.page(d.images)},
		{"GET /images/{digest}/sbom", Reader, d.page(d.sbom)},
		{"GET /static/", Public, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=86400")
			files.ServeHTTP(w, r)
		}},
	}
}

// view is what a page handler returns: the template to render and its data.
type view struct {
	Template string
	Title    string
	// Live is the service (or pipeline) whose events refresh the page; "*" for any.
	Live string
	// Poll refreshes the page every Poll milliseconds even without events (0: never):
	// sparklines every 10 s, a canary's figures every second.
	Poll int
	Data any
}

// pageData is what every template gets.
type pageData struct {
	view
	Session   *session
	Path      string
	StaticTag string
	Now       time.Time
}

// page serves a page to a signed-in session, or sends the browser to sign in. A
// request with the header X-Kiln-Partial gets only the page's main content: the
// dashboard's script swaps it in when something changed.
func (d *Dashboard) page(fn func(*http.Request, *session) (view, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s := d.session(r)
		if s == nil {
			if r.Header.Get("X-Kiln-Partial") != "" {
				http.Error(w, "signed out", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		v, err := fn(r, s)
		if err != nil {
			d.fail(w, r, s, err)
			return
		}
		d.render(w, r, http.StatusOK, s, v, start)
	}
}

func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, code int, s *session, v view, start time.Time) {
	t := d.pages[v.Template]
	name := "layout"
	if r.Header.Get("X-Kiln-Partial") != "" {
		name = "main"
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, name, pageData{view: v, Session: s, Path: r.URL.Path, StaticTag: d.staticTag, Now: time.Now()}); err != nil {
		d.log.Error("rendering a dashboard page", "page", v.Template, "err", err)
		http.Error(w, "the page could not be rendered: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Server-Timing", fmt.Sprintf("render;dur=%.2f", float64(time.Since(start).Microseconds())/1000))
	w.WriteHeader(code)
	w.Write([]byte(b.String()))
}

// fail shows err as a page, with the status it calls for.
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code := http.StatusInternalServerError
	var he httpError
	switch {
	case errors.As(err, &he):
		code = he.code
	case errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, store.ErrRolloutInProgress):
		code = http.StatusConflict
	}
	d.render(w, r, code, s, view{Template: "error", Title: http.StatusText(code), Data: errorData{Code: code, Message: err.Error()}}, time.Now())
}

type errorData struct {
	Code    int
	Message string
}

type httpError struct {
	code int
	msg  string
}

func (e httpError) Error() string { return e.msg }

// form handles a POST of a signed-in session carrying its CSRF token; role Admin marks
// the forms that change something, which a read-only session may not send. fn
// returns where to send the browser next.
func (d *Dashboard) form(role Role, fn func(http.ResponseWriter, *http.Request, *session) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := d.session(r)
		if s == nil {
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		if err := r.ParseForm(); err != nil {
			d.fail(w, r, s, httpError{http.StatusBadRequest, "malformed form: " + err.Error()})
			return
		}
		if !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.CSRF)) != 1 {
			d.fail(w, r, s, httpError{http.StatusForbidden, "this form did not come from this dashboard (missing or wrong CSRF token): reload the page and try again"})
			return
		}
		if role != Reader && s.ReadOnly {
			d.fail(w, r, s, httpError{http.StatusForbidden, "you signed in with the read-only token: it sees everything and changes nothing. Sign in with the token in .kiln/token to make changes."})
			return
		}
		next, err := fn(w, r, s)
		if err != nil {
			d.fail(w, r, s, err)
			return
		}
		http.Redirect(w, r, next, http.StatusSeeOther)
	}
}

// sameOrigin refuses cross-site form posts by their Origin header, where the browser
// sends one (SameSite=Strict already keeps the cookie off them).
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return o == ""
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// session returns the request's valid session, or nil.
func (d *Dashboard) session(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	payload, sig, ok := strings.Cut(c.Value, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(d.sign(payload))) {
		return nil
	}
	parts := strings.Split(payload, "~")
	if len(parts) != 3 {
		return nil
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || time.Now().Unix() > exp {
		return nil
	}
	if parts[0] == "readonly" && d.opts.ReadOnlyToken == "" {
		return nil
	}
	d.mu.Lock()
	_, out := d.revoked[parts[2]]
	d.mu.Unlock()
	if out {
		return nil
	}
	return &session{ReadOnly: parts[0] != "admin", CSRF: d.sign("csrf:" + c.Value)[:32], Expires: time.Unix(exp, 0), nonce: parts[2]}
}

func (d *Dashboard) sign(payload string) string {
	mac := hmac.New(sha256.New, d.key)
	mac.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func (d *Dashboard) loginForm(w http.ResponseWriter, r *http.Request) {
	d.render(w, r, http.StatusOK, nil, view{Template: "login", Title: "Sign in", Data: loginData{Next: safeNext(r.URL.Query().Get("next"))}}, time.Now())
}

type loginData struct {
	Next  string
	Error string
}

// login checks the token typed in and sets the session cookie.
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	token := strings.TrimSpace(r.PostFormValue("token"))
	next := safeNext(r.PostFormValue("next"))
	role := ""
	switch {
	case token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(d.opts.AdminToken)) == 1:
		role = "admin"
	case token != "" && d.opts.ReadOnlyToken != "" && subtle.ConstantTimeCompare([]byte(token), []byte(d.opts.ReadOnlyToken)) == 1:
		role = "readonly"
	default:
		d.render(w, r, http.StatusUnauthorized, nil, view{Template: "login", Title: "Sign in",
			Data: loginData{Next: next, Error: "That is not this daemon's token. It is in .kiln/token (or .kiln/token.readonly to only look), next to the spec."}}, time.Now())
		return
	}
	nonce := make([]byte, 12)
	rand.Read(nonce)
	payload := fmt.Sprintf("%s~%d~%s", role, time.Now().Add(sessionTTL).Unix(), hex.EncodeToString(nonce))
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: payload + "." + d.sign(payload), Path: "/",
		MaxAge: int(sessionTTL.Seconds()), HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout ends the session here and in the browser: a copy of its cookie no longer
// signs in (until the daemon restarts; it would expire by itself anyway).
func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	d.mu.Lock()
	for n, exp := range d.revoked {
		if time.Now().After(exp) {
			delete(d.revoked, n)
		}
	}
	d.revoked[s.nonce] = s.Expires
	d.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	return "/login", nil
}

// SignedIn lets h answer a signed-in browser only, and not past its session's end:
// the server serves the dashboard's event stream (/ui/stream) through it.
func (d *Dashboard) SignedIn(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := d.session(r)
		if s == nil {
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		ctx, cancel := context.WithDeadline(r.Context(), s.Expires)
		defer cancel()
		h(w, r.WithContext(ctx))
	}
}

// safeNext keeps a post-sign-in redirect on this site: a path of it, nothing a
// browser could read as another host ("//host", "/\\host", control characters).
func safeNext(next string) string {
	if next == "" || strings.ContainsAny(next, "\\") || strings.ContainsFunc(next, unicode.IsControl) {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") ||
		strings.HasPrefix(u.Path, "//") || strings.HasPrefix(path.Clean(u.Path), "//") {
		return "/"
	}
	return next
}
