package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/api"
)

func post(t *testing.T, url, token string, body io.Reader) (int, api.Error) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, body)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e api.Error
	json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e
}

// TestBodyLimits: each route takes the body it needs and no more; a larger one is
// answered 413 with the API's JSON error, declared or not (chunked).
func TestBodyLimits(t *testing.T) {
	ts := startServer(t, nil)
	pad := func(n int) string { return `{"user": "` + strings.Repeat("x", n) + `"}` }
	// A spec of a few MB is fine.
	if code, e := post(t, ts.url+"/v1/plan", adminToken, strings.NewReader(pad(3<<20))); code == http.StatusRequestEntityTooLarge {
		t.Errorf("a plan of 3 MB: %d %s", code, e.Error)
	}
	for _, c := range []struct {
		path string
		size int
	}{{"/v1/apply", specBody + 1}, {"/v1/plan", specBody + 1}, {"/v1/pipelines/web/webhook", webhookBody + 1},
		{"/v1/pipelines/web/trigger", smallBody + 1}, {"/v1/services/web/rollback", smallBody + 1}} {
		code, e := post(t, ts.url+c.path, adminToken, strings.NewReader(pad(c.size)))
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(e.Error, "too large") {
			t.Errorf("%s with %d bytes: %d %q, want 413 and a JSON error", c.path, c.size, code, e.Error)
		}
		code, e = post(t, ts.url+c.path, adminToken, io.MultiReader(strings.NewReader(pad(c.size))))
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(e.Error, "too large") {
			t.Errorf("%s with %d bytes, chunked: %d %q, want 413 and a JSON error", c.path, c.size, code, e.Error)
		}
	}
}

// TestSlowClients: a body that trickles in, headers never finished, an idle kept-alive
// connection and headers too large are all dropped.
func TestSlowClients(t *testing.T) {
	ts := startServer(t, func(l *limits) {
		l.bodyGrace, l.bodyMinRate = 300*time.Millisecond, 1000
		l.readHeader, l.idle = 300*time.Millisecond, 300*time.Millisecond
	})
	addr := strings.TrimPrefix(ts.url, "http://")
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		return c
	}

	// One byte every 100 ms of 40: 4 s if the server waited for all of it.
	c := dial()
	start := time.Now()
	fmt.Fprintf(c, "POST /v1/apply HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 40\r\n\r\n", adminToken)
	go func() {
		for range 40 {
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	status, _ := bufio.NewReader(c).ReadString('\n')
	if took := time.Since(start); !strings.Contains(status, "408") || took > 3*time.Second {
		t.Errorf("a trickling body: %q after %s, want 408 well before 4 s", status, took)
	}

	silent := dial()
	fmt.Fprintf(silent, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
	if _, err := io.Copy(io.Discard, silent); err != nil {
		t.Errorf("headers never finished: the connection is still open after 10 s: %v", err)
	}

	idle := dial()
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Errorf("an idle kept-alive connection is still open after 10 s: %v", err)
	}

	req, _ := http.NewRequest("GET", ts.url+"/healthz", nil)
	req.Header.Set("X-Big", strings.Repeat("x", 200<<10))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("200 KiB of headers: %d, want 431", resp.StatusCode)
		}
	}
}

func TestMaxConns(t *testing.T) {
	ts := startServer(t, func(l *limits) { l.conns = 2 })
	addr := strings.TrimPrefix(ts.url, "http://")
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	time.Sleep(100 * time.Millisecond) // accepted
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 500 * time.Millisecond}
	if resp, err := c.Get(ts.url + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("a third connection was served while two of two were open")
	}
	held[0].Close()
	c.Timeout = 5 * time.Second
	resp, err := c.Get(ts.url + "/healthz")
	if err != nil {
		t.Fatalf("once one closed: %v", err)
	}
	resp.Body.Close()
}

// TestStreamsOutliveWriteTimeout: an ordinary answer is cut at the write timeout, a
// stream is not, as long as its client reads.
func TestStreamsOutliveWriteTimeout(t *testing.T) {
	s := New(nil, nil, Tokens{Admin: adminToken}, slog.New(slog.DiscardHandler))
	s.limits.write, s.limits.streamWrite = 300*time.Millisecond, 300*time.Millisecond
	ticks := func(w http.ResponseWriter, r *http.Request) {
		for i := range 10 {
			fmt.Fprintf(w, "%d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}
	slow := func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(600 * time.Millisecond)
		w.Write(bytes.Repeat([]byte("x"), 1<<20))
	}
	srv := &http.Server{Handler: s.mount([]route{
		{pattern: "GET /stream", access: public, stream: true, handler: ticks},
		{pattern: "GET /slow", access: public, handler: slow},
	}), WriteTimeout: s.limits.write}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	resp, err := http.Get(base + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || strings.Count(string(b), "\n") != 10 {
		t.Errorf("a stream of 1 s with a write timeout of 0.3 s: %v, got %q", err, b)
	}
	if resp, err := http.Get(base + "/slow"); err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("an ordinary answer written after the write timeout went through: no write timeout")
		}
	}
	// The real long answers are streams.
	for _, rt := range startServer(t, nil).routes() {
		switch rt.pattern {
		case "POST /v1/apply", "POST /v1/services/{name}/rollback", "DELETE /v1/services/{name}",
			"GET /v1/events/stream", "GET /ui/stream", "GET /v1/services/{name}/logs":
			if !rt.stream {
				t.Errorf("%s is not marked a stream", rt.pattern)
			}
		}
	}
	if defaultLimits.write == 0 || defaultLimits.streamWrite == 0 || defaultLimits.idle == 0 || defaultLimits.conns == 0 || defaultLimits.bodyMinRate == 0 {
		t.Errorf("a default limit is off: %+v", defaultLimits)
	}
}

func TestPanicRecovered(t *testing.T) {
	var logs bytes.Buffer
	s := New(nil, nil, Tokens{Admin: adminToken}, slog.New(slog.NewJSONHandler(&logs, nil)))
	srv := &http.Server{Handler: s.mount([]route{
		{pattern: "GET /v1/boom/{name}", access: admin, handler: func(http.ResponseWriter, *http.Request) { panic("handler bug") }},
		{pattern: "GET /healthz", access: public, handler: func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }},
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	req, _ := http.NewRequest("GET", base+"/v1/boom/web", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e api.Error
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 500 || e.Error == "" {
		t.Errorf("a panic: %d %q, want 500 and a JSON error", resp.StatusCode, e.Error)
	}
	for _, want := range []string{`"route":"GET /v1/boom/{name}"`, `"panic":"handler bug"`, `"stack":"goroutine`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %s:\n%s", want, logs.String())
		}
	}
	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("after a panic: %v", err)
	}
}

func TestNames(t *testing.T) {
	ts := startServer(t, nil)
	get := func(path string) int {
		req, _ := http.NewRequest("GET", ts.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, bad := range []string{"Web", "1web", "a..b", "..%2Fetc", "web%00", "-web", "w%20b", "%C3%A9t%C3%A9"} {
		if code := get("/v1/services/" + bad + "/history"); code != http.StatusBadRequest {
			t.Errorf("history of %q: %d, want 400", bad, code)
		}
	}
	for _, path := range []string{"/v1/events?service=Web", "/v1/runs?pipeline=a..b", "/services/Web"} {
		if code := get(path); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", path, code)
		}
	}
	for _, body := range []string{`{"services": [{"name": "../x"}]}`, `{"pipelines": [{"name": "Site"}]}`} {
		if code, e := post(t, ts.url+"/v1/apply", adminToken, strings.NewReader(body)); code != http.StatusBadRequest || !strings.Contains(e.Error, "not a kiln name") {
			t.Errorf("apply of %s: %d %q, want 400", body, code, e.Error)
		}
	}
	for _, good := range []string{"web", "web-2", "api.v2", "a_b"} {
		if code := get("/v1/services/" + good + "/history"); code != http.StatusNotFound {
			t.Errorf("history of unknown %q: %d, want 404", good, code)
		}
	}
}

// TestPipelinesShowNoSecrets: what the read-only token reads of a pipeline holds none
// of its secrets.
func TestPipelinesShowNoSecrets(t *testing.T) {
	ts := startServer(t, nil)
	def, _ := json.Marshal(api.Pipeline{Name: "site", Repo: "https://ghp_T0KEN@github.com/acme/site.git", Branch: "main",
		Services: []string{"web"}, WebhookSecret: "hook-s3cret", Vars: map[string]string{"db_password": "pa55"}})
	if err := ts.state.SetPipeline(context.Background(), "site", string(def)); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", ts.url+"/v1/pipelines", nil)
	req.Header.Set("Authorization", "Bearer "+readOnlyToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, secret := range []string{"hook-s3cret", "pa55", "db_password", "ghp_T0KEN", `"vars"`} {
		if bytes.Contains(body, []byte(secret)) {
			t.Errorf("GET /v1/pipelines shows %s: %s", secret, body)
		}
	}
	var ps []api.Pipeline
	if err := json.Unmarshal(body, &ps); err != nil || len(ps) != 1 || !ps[0].Webhook || ps[0].Repo != "https://github.com/acme/site.git" {
		t.Errorf("the pipeline as shown: %v %+v", err, ps)
	}
}
