package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/bake"
	"github.com/kiln-build/kiln/internal/driver/simdriver"
	"github.com/kiln-build/kiln/internal/engine"
	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/pipeline"
	"github.com/kiln-build/kiln/internal/server"
	"github.com/kiln-build/kiln/internal/spec"
	"github.com/kiln-build/kiln/internal/store"
)

const (
	adminToken    = "admin-token"
	readOnlyToken = "look-token"
)

// daemon is an engine with the simulated driver behind a real HTTP server: what `kiln
// serve` runs, but with in-process servers instead of containers.
type daemon struct {
	url    string
	eng    *engine.Engine
	digest string
}

func startDaemon(t *testing.T) *daemon {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, filepath.Join(dir, "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	images, err := imagestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A real image in the store (one file on scratch): Apply deploys only stored images.
	cfg, diags := spec.Parse("kiln.hcl", []byte(`image "tiny" {
  from = "scratch"
  file "/hello.txt" { content = "hello\n" }
}`), spec.Options{Environ: []string{}, Dir: dir})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	unlock, _ := images.Lock(ctx)
	b, _ := bake.NewBaker(images, bake.Options{})
	res, err := b.Bake(ctx, cfg.Images)
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	drv := simdriver.New()
	eng := engine.New(engine.Options{State: st, Images: images, Driver: drv, Project: "dash", StateDir: dir,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pipes := pipeline.New(pipeline.Options{Engine: eng, Metrics: eng, State: st, Images: images, Driver: drv, Project: "dash", StateDir: dir,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	eng.SetPipelines(pipes)
	done := make(chan struct{}, 3)
	go func() { eng.Start(ctx); done <- struct{}{} }()
	go func() { pipes.Start(ctx); done <- struct{}{} }()
	go func() {
		server.New(eng, pipes, server.Tokens{Admin: adminToken, ReadOnly: readOnlyToken}, nil).Serve(ctx, ln)
		done <- struct{}{}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
		<-done
		drv.Close()
		st.Close()
	})
	return &daemon{url: "http://" + ln.Addr().String(), eng: eng, digest: res[0].Digest.String()}
}

// service is a service of the tiny image: replicas simulated servers, created all at
// once (blue-green), health-checked every interval.
func (d *daemon) service(name string, replicas int, greeting string) api.Service {
	return api.Service{Name: name, Image: d.digest, ImageName: "tiny", Replicas: replicas, Port: 8080, Listen: "127.0.0.1:0",
		Env:       map[string]string{"GREETING": greeting},
		Resources: api.Resources{MemoryBytes: 64 << 20, PIDs: 64},
		Health:    api.Health{HTTP: "/", Interval: 5 * time.Second, Timeout: 2 * time.Second, HealthyThreshold: 1, UnhealthyThreshold: 3},
		Update:    api.Update{Strategy: "blue-green", MaxSurge: 1, ProgressDeadline: time.Minute, AutoRollback: true}}
}

func (d *daemon) apply(t *testing.T, svcs ...api.Service) {
	t.Helper()
	res, err := d.eng.Apply(context.Background(), api.ApplyRequest{Services: svcs, User: "test"})
	if err != nil || !res.OK {
		t.Fatalf("apply: %v %+v", err, res)
	}
}

// browser is an HTTP client with a cookie jar that does not follow redirects.
type browser struct {
	t   *testing.T
	c   *http.Client
	url string
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, url: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values, header ...string) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.url+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	return resp, string(text)
}

// signIn signs in with token; the cookie jar keeps the session. It returns the
// session's CSRF token, read from a page's forms.
func (b *browser) signIn(token string) string {
	b.t.Helper()
	resp, _ := b.do("POST", "/login", url.Values{"token": {token}, "next": {"/"}})
	if resp.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("sign in: %d", resp.StatusCode)
	}
	_, page := b.do("GET", "/", nil)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		b.t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

func TestSignIn(t *testing.T) {
	d := startDaemon(t)
	b := newBrowser(t, d.url)
	resp, _ := b.do("GET", "/services/web?page=2", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next="+url.QueryEscape("/services/web?page=2") {
		t.Fatalf("signed out: %d to %q, want the sign-in page", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, page := b.do("POST", "/login", url.Values{"token": {"wrong"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(page, ".kiln/token") {
		t.Fatalf("a wrong token: %d\n%s", resp.StatusCode, page)
	}
	// After signing in, the browser goes back where it was, but never to another site.
	for next, want := range map[string]string{
		"/events?service=web": "/events?service=web",
		"//evil.example/":     "/", "/\t/evil.example": "/", "/./\\evil.example": "/", "https://evil.example/": "/",
		"/%2F/evil.example": "/", "": "/", "events": "/",
	} {
		r, _ := newBrowser(t, d.url).do("POST", "/login", url.Values{"token": {adminToken}, "next": {next}})
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != want {
			t.Errorf("sign in with next=%q: %d to %q, want %q", next, r.StatusCode, r.Header.Get("Location"), want)
		}
	}
	resp, _ = b.do("POST", "/login", url.Values{"token": {adminToken}, "next": {"/"}})
	var c *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == "kiln_session" {
			c = k
		}
	}
	if c == nil || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || strings.Contains(c.Value, adminToken) {
		t.Fatalf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict, without the token", c)
	}
	resp, page = b.do("GET", "/", nil)
	if resp.StatusCode != 200 || !strings.Contains(page, "<h1>Fleet</h1>") {
		t.Fatalf("fleet after sign-in: %d\n%s", resp.StatusCode, page)
	}
	for _, h := range []string{"Content-Security-Policy", "Server-Timing"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	// Signing out ends the session, even for a copy of its cookie.
	u0, _ := url.Parse(d.url)
	stolen := b.c.Jar.Cookies(u0)
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if resp, _ := b.do("POST", "/logout", url.Values{"csrf": {csrf[1]}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %d", resp.StatusCode)
	}
	copycat := newBrowser(t, d.url)
	copycat.c.Jar.SetCookies(u0, stolen)
	if resp, _ := copycat.do("GET", "/", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a copy of a signed-out session's cookie: %d, want a redirect to sign in", resp.StatusCode)
	}

	// A forged cookie is no session.
	forged := newBrowser(t, d.url)
	u, _ := url.Parse(d.url)
	forged.c.Jar.SetCookies(u, []*http.Cookie{{Name: "kiln_session", Value: "admin~9999999999~00.AAAA"}})
	if resp, _ := forged.do("GET", "/", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a forged cookie: %d, want a redirect to sign in", resp.StatusCode)
	}
}

// TestRollbackOffered: the rollback the service page offers, and the one its
// confirmation page proposes when no revision is given, are the one the engine makes
// when given none. Revision 2 has the current settings (revision 3 failed in between),
// so the engine goes back to revision 1.
func TestRollbackOffered(t *testing.T) {
	d := startDaemon(t)
	ctx := context.Background()
	d.apply(t, d.service("web", 1, "zero"))
	d.apply(t, d.service("web", 1, "one"))
	broken := d.service("web", 1, "broken")
	broken.Env["PORT"] = "none" // the server exits at once
	broken.Update.AutoRollback = false
	if res, err := d.eng.Apply(ctx, api.ApplyRequest{Services: []api.Service{broken}, User: "test"}); err != nil || res.OK {
		t.Fatalf("apply of a broken revision: %v %+v; want it to fail", err, res)
	}
	d.apply(t, d.service("web", 1, "one"))

	admin := newBrowser(t, d.url)
	admin.signIn(adminToken)
	_, page := admin.do("GET", "/services/web", nil)
	offered := regexp.MustCompile(`href="/services/web/rollback\?to=(\d+)">Roll back to revision`).FindAllStringSubmatch(page, -1)
	if len(offered) != 1 {
		t.Fatalf("the service page offers %d plain rollbacks, want one:\n%s", len(offered), page)
	}
	resp, confirm := admin.do("GET", "/services/web/rollback", nil)
	proposed := regexp.MustCompile(`name="to" value="(\d+)"`).FindStringSubmatch(confirm)
	if resp.StatusCode != http.StatusOK || proposed == nil {
		t.Fatalf("confirmation page without a revision: %d\n%s", resp.StatusCode, confirm)
	}

	// What the engine does when given no revision.
	if res, err := d.eng.Rollback(ctx, "web", api.RollbackRequest{User: "test"}); err != nil || !res.OK {
		t.Fatalf("rollback: %v %+v", err, res)
	}
	h, err := d.eng.History(ctx, "web")
	if err != nil || !h[0].Current || h[0].Rollback == nil {
		t.Fatalf("history after the rollback: %+v, %v", h, err)
	}
	went := strconv.FormatInt(h[0].Rollback.To, 10)
	if went != "1" || offered[0][1] != went || proposed[1] != went {
		t.Errorf("the engine rolled back to revision %s; the service page offered %s, the confirmation proposed %s; want all 1", went, offered[0][1], proposed[1])
	}
}

// TestChanges checks that a change needs the session's CSRF token, its own origin and
// the admin token, and that a rollback from the page happens.
func TestChanges(t *testing.T) {
	d := startDaemon(t)
	d.apply(t, d.service("web", 2, "one"))
	d.apply(t, d.service("web", 2, "two"))

	admin := newBrowser(t, d.url)
	csrf := admin.signIn(adminToken)
	_, page := admin.do("GET", "/services/web", nil)
	for _, want := range []string{"Roll back to revision 1", `data-revision="2"`, "health gate passed", "front door switched"} {
		if !strings.Contains(page, want) {
			t.Errorf("service page lacks %q", want)
		}
	}
	resp, page := admin.do("GET", "/services/web/rollback?to=1", nil)
	if resp.StatusCode != 200 || !strings.Contains(page, "Roll back to revision 1") || !strings.Contains(page, `name="csrf"`) {
		t.Fatalf("confirmation page: %d\n%s", resp.StatusCode, page)
	}

	// Without the CSRF token, with a wrong one, or from another origin: refused.
	for name, form := range map[string]url.Values{"no token": {"to": {"1"}}, "wrong token": {"to": {"1"}, "csrf": {"x"}}} {
		if resp, page := admin.do("POST", "/services/web/rollback", form); resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "CSRF") {
			t.Errorf("%s: %d, want 403 naming CSRF", name, resp.StatusCode)
		}
	}
	if resp, _ := admin.do("POST", "/services/web/rollback", url.Values{"to": {"1"}, "csrf": {csrf}}, "Origin", "http://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin post: %d, want 403", resp.StatusCode)
	}

	// A read-only session sees everything and changes nothing.
	viewer := newBrowser(t, d.url)
	vcsrf := viewer.signIn(readOnlyToken)
	resp, page = viewer.do("GET", "/services/web", nil)
	if resp.StatusCode != 200 || strings.Contains(page, "Roll back to revision") || !strings.Contains(page, "read-only") {
		t.Errorf("read-only service page: %d; rollback buttons shown: %v", resp.StatusCode, strings.Contains(page, "Roll back to revision"))
	}
	if resp, page := viewer.do("POST", "/services/web/rollback", url.Values{"to": {"1"}, "csrf": {vcsrf}}); resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "read-only") {
		t.Errorf("read-only rollback: %d, want 403", resp.StatusCode)
	}
	if h, _ := d.eng.History(context.Background(), "web"); len(h) != 2 {
		t.Fatalf("a refused rollback changed the history: %d revisions", len(h))
	}

	// The admin's confirmed rollback happens.
	resp, _ = admin.do("POST", "/services/web/rollback", url.Values{"to": {"1"}, "csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/services/web" {
		t.Fatalf("rollback: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, _ := d.eng.History(context.Background(), "web")
		if len(h) == 3 && h[0].Outcome == "deployed" && h[0].Current {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rollback did not finish: %+v", h)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, page = admin.do("GET", "/services/web", nil)
	if !strings.Contains(page, "dashboard (rollback to revision 1)") {
		t.Errorf("the history does not show the rollback by the dashboard")
	}

	// The API: the read-only token reads and cannot change.
	apiReq := func(method, path, token string) int {
		req, _ := http.NewRequest(method, d.url+path, strings.NewReader(`{"to": 1}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := apiReq("GET", "/v1/status", readOnlyToken); code != 200 {
		t.Errorf("read-only GET /v1/status: %d", code)
	}
	if code := apiReq("POST", "/v1/services/web/rollback", readOnlyToken); code != http.StatusForbidden {
		t.Errorf("read-only POST rollback: %d, want 403", code)
	}
}

// TestPages renders every page and checks what each must show.
func TestPages(t *testing.T) {
	d := startDaemon(t)
	d.apply(t, d.service("api", 3, "a"), d.service("web", 2, "w"))
	b := newBrowser(t, d.url)
	b.signIn(adminToken)
	digest := d.digest
	for path, wants := range map[string][]string{
		"/":                            {`data-service="api"`, `data-service="web"`, "5/5", "tiny@"},
		"/?q=we":                       {`data-service="web"`},
		"/?sort=-name":                 {"sorted descending"},
		"/services/api":                {`id="servers"`, "Servers 1–3 of 3", "healthy", "History", "Drift found"},
		"/services/api?health=failing": {"No servers"},
		"/events":                      {"revision 1 is deployed", "server api-1-"},
		"/events?type=deployed":        {"revision 1 is deployed"},
		"/events?service=web&since=1h": {"web"},
		"/images":                      {"tiny", short(digest), "api</a> r1"},
		"/images/" + digest + "/sbom":  {"CycloneDX", "The whole document"},
		"/pipelines":                   {"No pipelines"},
	} {
		resp, page := b.do("GET", path, nil)
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d\n%s", path, resp.StatusCode, page)
			continue
		}
		for _, w := range wants {
			if !strings.Contains(page, w) {
				t.Errorf("%s lacks %q", path, w)
			}
		}
	}
	if resp, page := b.do("GET", "/?q=we", nil); strings.Contains(page, `data-service="api"`) {
		t.Errorf("the filter kept api (%d)", resp.StatusCode)
	}
	if resp, page := b.do("GET", "/services/nope", nil); resp.StatusCode != 404 || !strings.Contains(page, "nope") {
		t.Errorf("unknown service: %d", resp.StatusCode)
	}
	resp, part := b.do("GET", "/", nil, "X-Kiln-Partial", "1")
	if resp.StatusCode != 200 || strings.Contains(part, "<html") || !strings.Contains(part, "<h1>Fleet</h1>") {
		t.Errorf("partial page: %d, whole document: %v", resp.StatusCode, strings.Contains(part, "<html"))
	}
}

func short(d string) string { return strings.TrimPrefix(d, "sha256:")[:12] }

// TestThousandServers lists 1,000 servers (20 services of 50), then 1,000 more in one
// service, and reports how long the pages take to render and how big they are;
// kiln-bench dashboard collects the figures. The servers are simulated (simdriver): this
// machine cannot run 2,000 containers.
func TestThousandServers(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 2,000 simulated servers")
	}
	d := startDaemon(t)
	var svcs []api.Service
	for i := range 20 {
		svcs = append(svcs, d.service(fmt.Sprintf("svc-%02d", i), 50, "x"))
	}
	d.apply(t, svcs...)
	b := newBrowser(t, d.url)
	b.signIn(adminToken)
	measure := func(label, path, want string) {
		t.Helper()
		var renders []float64
		var size int
		for range 7 {
			resp, page := b.do("GET", path, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d", path, resp.StatusCode)
			}
			if !strings.Contains(page, want) {
				t.Fatalf("%s lacks %q", path, want)
			}
			size = len(page)
			ms, _ := strconv.ParseFloat(strings.TrimPrefix(resp.Header.Get("Server-Timing"), "render;dur="), 64)
			renders = append(renders, ms)
		}
		t.Logf("PAGE %s|%s|median_render_ms=%.2f|bytes=%d", label, path, median(renders), size)
	}
	measure("fleet, 1,000 servers in 20 services", "/", "<b>1000/1000</b>")
	measure("service of 50 servers", "/services/svc-07", "Servers 1–50 of 50")
	d.apply(t, d.service("big", 1000, "x"))
	measure("fleet, 2,000 servers in 21 services", "/", "<b>2000/2000</b>")
	measure("service of 1,000 servers, first page", "/services/big", "Servers 1–50 of 1000")
	measure("service of 1,000 servers, last page", "/services/big?page=20", "Servers 951–1000 of 1000")
	measure("events, newest 100 of 4,000+", "/events", "Older events")
	measure("images", "/images", "tiny")
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

// The live stream: for a signed-in browser only, new events only (no backlog).
func TestStream(t *testing.T) {
	d := startDaemon(t)
	d.apply(t, d.service("web", 1, "one"))
	if resp, _ := newBrowser(t, d.url).do("GET", "/ui/stream?since=-1", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("stream without a session: %d, want 401", resp.StatusCode)
	}
	b := newBrowser(t, d.url)
	b.signIn(adminToken)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", d.url+"/ui/stream?since=-1", nil)
	resp, err := b.c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %v %v", err, resp)
	}
	defer resp.Body.Close()
	applied := make(chan error, 1)
	go func() {
		_, err := d.eng.Apply(context.Background(), api.ApplyRequest{Services: []api.Service{d.service("web", 1, "two")}, User: "test"})
		applied <- err
	}()
	defer func() {
		if err := <-applied; err != nil {
			t.Errorf("apply: %v", err)
		}
	}()
	buf := make([]byte, 64<<10)
	var got strings.Builder
	for !strings.Contains(got.String(), "data: ") {
		n, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatalf("reading the stream: %v (got %q)", err, got.String())
		}
		got.Write(buf[:n])
	}
	if strings.Contains(got.String(), "revision 1") || !strings.Contains(got.String(), "revision 2") {
		t.Errorf("the stream's first event is not of the new revision:\n%s", got.String())
	}
}
