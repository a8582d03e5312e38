package server

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/driver/simdriver"
	"github.com/kiln-build/kiln/internal/engine"
	"github.com/kiln-build/kiln/internal/pipeline"
	"github.com/kiln-build/kiln/internal/store"
)

const (
	adminToken    = "admin-s3cret"
	readOnlyToken = "look-only"
)

// testServer is a real daemon's HTTP side (on the simulated driver) on 127.0.0.1.
type testServer struct {
	*Server
	url   string
	state *store.Store
}

func startServer(t *testing.T, tune func(*limits)) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	drv := simdriver.New()
	quiet := slog.New(slog.DiscardHandler)
	stateDir := t.TempDir()
	eng := engine.New(engine.Options{State: st, Driver: drv, Project: "auth", StateDir: stateDir, Log: quiet})
	pipes := pipeline.New(pipeline.Options{Engine: eng, Metrics: eng, State: st, Driver: drv, Project: "auth", StateDir: stateDir, Log: quiet})
	eng.SetPipelines(pipes)
	s := New(eng, pipes, Tokens{Admin: adminToken, ReadOnly: readOnlyToken}, quiet)
	if tune != nil {
		tune(&s.limits)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		drv.Close()
		st.Close()
	})
	return &testServer{Server: s, url: "http://" + ln.Addr().String(), state: st}
}

// credential is what a client holds: a bearer token for the API, a session cookie
// (signed in with the same token) for the dashboard.
type credential int

const (
	none credential = iota
	wrong
	readOnly
	adminCred
)

func (c credential) String() string {
	return [...]string{"no token", "a wrong token", "the read-only token", "the admin token"}[c]
}

func (c credential) token() string {
	return [...]string{"", "not-the-token", readOnlyToken, adminToken}[c]
}

// outcome is what the matrix expects of a request.
type outcome int

const (
	allowed      outcome = iota // neither 401 nor 403, nor sent to sign in
	unauthorized                // 401, or a page's redirect to the sign-in page
	forbidden                   // 403
)

func (o outcome) String() string { return [...]string{"allowed", "401", "403"}[o] }

// expect is the answer intended for a route's access and a credential.
func expect(rt route, c credential) outcome {
	if rt.pattern == "POST /login" { // its credential is the token typed into the form
		return map[bool]outcome{true: allowed, false: unauthorized}[c >= readOnly]
	}
	switch rt.access {
	case public:
		return allowed
	case reader:
		return map[bool]outcome{true: allowed, false: unauthorized}[c >= readOnly]
	case admin:
		return [...]outcome{unauthorized, unauthorized, forbidden, allowed}[c]
	}
	panic("no expectation for " + rt.access.String())
}

// samplePath turns a route's pattern into a path it serves.
func samplePath(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	path = strings.NewReplacer("{name}", "web", "{id}", "1", "{digest}", "sha256:"+strings.Repeat("0", 64), "{$}", "").Replace(path)
	if strings.HasSuffix(path, "/static/") {
		path += "kiln.css"
	}
	return method, path
}

// session signs in with token and returns the session's cookie and CSRF token.
func (ts *testServer) session(t *testing.T, token string) (cookie, csrf string) {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(ts.url+"/login", url.Values{"token": {token}, "next": {"/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "kiln_session" {
			cookie = ck.Name + "=" + ck.Value
		}
	}
	if cookie == "" {
		t.Fatalf("signing in with %q: %d and no session cookie", token, resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", ts.url+"/", nil)
	req.Header.Set("Cookie", cookie)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the fleet page (%d)", resp.StatusCode)
	}
	return cookie, string(m[1])
}

type answer struct {
	code     int
	location string
}

// send makes one request and reads only its status: streams are left at once.
func (ts *testServer) send(t *testing.T, method, path, body string, header ...string) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, ts.url+path, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] != "" {
			req.Header.Set(header[i], header[i+1])
		}
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp.Body.Close()
	return answer{resp.StatusCode, resp.Header.Get("Location")}
}

func (a answer) outcome() outcome {
	switch {
	case a.code == http.StatusUnauthorized || a.code == http.StatusSeeOther && strings.HasPrefix(a.location, "/login?"):
		return unauthorized
	case a.code == http.StatusForbidden:
		return forbidden
	}
	return allowed
}

// TestAuthMatrix sends every route of the mux each credential and checks the answer
// its declared access intends. The routes come from the table the mux is built from.
func TestAuthMatrix(t *testing.T) {
	ts := startServer(t, nil)
	routes := ts.routes()
	mux := ts.mux(routes)
	const forged = "kiln_session=admin~9999999999~00.forged"
	// signIn returns a session of c's token: one for all pages, a fresh one for each
	// form (signing out ends the session it is sent with).
	pages := map[credential][2]string{}
	signIn := func(c credential, method string) (cookie, csrf string) {
		if s, ok := pages[c]; ok && method == "GET" {
			return s[0], s[1]
		}
		cookie, csrf = ts.session(t, c.token())
		if method == "GET" {
			pages[c] = [2]string{cookie, csrf}
		}
		return cookie, csrf
	}

	for _, rt := range routes {
		if rt.access == unset {
			t.Errorf("%s declares no access", rt.pattern)
			continue
		}
		method, path := samplePath(rt.pattern)
		// The table is the mux: the sample path reaches this very route.
		if _, got := mux.Handler(bareRequest(method, path)); got != rt.pattern {
			t.Errorf("%s %s is served by %q, not %q", method, path, got, rt.pattern)
		}
		if rt.access == signed {
			// Webhooks: no token of any kind stands in for the signature.
			for c := none; c <= adminCred; c++ {
				a := ts.send(t, method, path, `{"ref":"refs/heads/main"}`, "Authorization", "Bearer "+c.token())
				if a.code < 400 {
					t.Errorf("%s with %s and no signature: %d, want it refused", rt.pattern, c, a.code)
				}
			}
			continue
		}
		for c := none; c <= adminCred; c++ {
			want := expect(rt, c)
			var a answer
			switch {
			case !rt.session:
				a = ts.send(t, method, path, `{}`, "Authorization", "Bearer "+c.token())
			case rt.pattern == "POST /login":
				a = ts.send(t, method, path, url.Values{"token": {c.token()}}.Encode(), "Content-Type", "application/x-www-form-urlencoded")
			default:
				cookie, csrf := forged, ""
				if c >= readOnly {
					cookie, csrf = signIn(c, method)
				}
				form := url.Values{"to": {"1"}, "csrf": {csrf}}.Encode()
				a = ts.send(t, method, path, form, "Cookie", cookie, "Content-Type", "application/x-www-form-urlencoded")
			}
			if got := a.outcome(); got != want {
				t.Errorf("%s with %s: %d (%s), want %s", rt.pattern, c, a.code, got, want)
			}
		}

		// A credential of the other kind does not count: the dashboard's cookie opens no
		// API route (a cross-site request would carry it), a bearer token no page.
		if rt.access == public || rt.pattern == "POST /login" {
			continue
		}
		if !rt.session {
			cookie, _ := ts.session(t, adminToken)
			if a := ts.send(t, method, path, `{}`, "Cookie", cookie); a.outcome() != unauthorized {
				t.Errorf("%s with only an admin session cookie: %d, want 401", rt.pattern, a.code)
			}
		} else if a := ts.send(t, method, path, "", "Authorization", "Bearer "+adminToken); a.outcome() != unauthorized {
			t.Errorf("%s with only the admin bearer token: %d, want it refused", rt.pattern, a.code)
		}

		// Every form of the dashboard wants its session's CSRF token and this origin.
		if rt.session && method == "POST" {
			cookie, csrf := ts.session(t, adminToken)
			for name, form := range map[string]url.Values{"no CSRF token": {"to": {"1"}}, "a wrong CSRF token": {"to": {"1"}, "csrf": {"x" + csrf}}} {
				if a := ts.send(t, method, path, form.Encode(), "Cookie", cookie, "Content-Type", "application/x-www-form-urlencoded"); a.code != http.StatusForbidden {
					t.Errorf("%s by an admin session with %s: %d, want 403", rt.pattern, name, a.code)
				}
			}
			form := url.Values{"to": {"1"}, "csrf": {csrf}}.Encode()
			if a := ts.send(t, method, path, form, "Cookie", cookie, "Content-Type", "application/x-www-form-urlencoded", "Origin", "http://evil.example"); a.code != http.StatusForbidden {
				t.Errorf("%s from another origin: %d, want 403", rt.pattern, a.code)
			}
		}
	}
}

func bareRequest(method, path string) *http.Request {
	r, _ := http.NewRequest(method, "http://kiln"+path, nil)
	return r
}

// TestRoutesOnlyFromTheTable: the server and the dashboard register routes nowhere but
// in mux, so the table is every route and TestAuthMatrix sees them all.
func TestRoutesOnlyFromTheTable(t *testing.T) {
	fset := token.NewFileSet()
	var sites []string
	for _, dir := range []string{".", "../dashboard"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range file.Decls {
				fn, ok := d.(*ast.FuncDecl)
				if !ok {
					continue
				}
				ast.Inspect(fn, func(n ast.Node) bool {
					if call, ok := n.(*ast.CallExpr); ok {
						if sel, ok := call.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "Handle" || sel.Sel.Name == "HandleFunc") {
							sites = append(sites, fmt.Sprintf("%s in %s", fset.Position(call.Pos()), fn.Name.Name))
						}
					}
					return true
				})
			}
		}
	}
	if len(sites) != 1 || !strings.HasSuffix(sites[0], " in mux") {
		t.Errorf("routes are registered at %v; only mux (routes.go) may, from the table", sites)
	}
}

// TestMountRefuses: a route that declares no access, or that would let the read-only
// token change something, is not served.
func TestMountRefuses(t *testing.T) {
	s := New(nil, nil, Tokens{Admin: "a"}, slog.New(slog.DiscardHandler))
	for _, rt := range []route{
		{pattern: "GET /x", handler: func(http.ResponseWriter, *http.Request) {}},
		{pattern: "POST /x", access: reader, handler: func(http.ResponseWriter, *http.Request) {}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with access %s was mounted", rt.pattern, rt.access)
				}
			}()
			s.mux([]route{rt})
		}()
	}
}
