package pipeline

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kiln-build/kiln/internal/api"
)

// A candidate (the commit's code) that answers a check with a redirect does not get
// kiln to fetch whatever it points at: the redirect is the answer.
func TestCheckFollowsNoRedirect(t *testing.T) {
	var hit atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hit.Store(true)
		w.Write([]byte("Hello"))
	}))
	defer elsewhere.Close()
	candidate := httptest.NewServer(http.RedirectHandler(elsewhere.URL+"/secret", http.StatusFound))
	defer candidate.Close()
	var log bytes.Buffer
	err := runCheck(t.Context(), api.Check{Name: "greets", Path: "/", Status: 200, Body: "Hello"}, candidate.URL, &log)
	if err == nil || !strings.Contains(err.Error(), "status 302") {
		t.Errorf("check = %v, want it to fail on the redirect's status", err)
	}
	if hit.Load() {
		t.Error("the check followed the redirect")
	}
	if err := runCheck(t.Context(), api.Check{Name: "redirects", Path: "/", Status: 302}, candidate.URL, &log); err != nil {
		t.Errorf("a check expecting the redirect: %v", err)
	}
}

// A pipeline name becomes a directory under the state directory: one that would leave
// it is refused before anything is written.
func TestPipelineNamesStayInTheStateDirectory(t *testing.T) {
	m := New(Options{StateDir: t.TempDir()})
	for _, name := range []string{"../../etc", "a/b", "..", "a..b", "", "Upper"} {
		if err := m.Set(t.Context(), []api.Pipeline{{Name: name}}); err == nil || !strings.Contains(err.Error(), "pipeline name") {
			t.Errorf("pipeline %q: %v, want it refused", name, err)
		}
	}
}

// An unsigned caller of the webhook learns no pipeline names: an unknown pipeline is
// answered as a bad signature is.
func TestWebhookRevealsNoPipelineNames(t *testing.T) {
	m := New(Options{StateDir: t.TempDir()})
	if _, _, err := m.Webhook(t.Context(), "no-such-pipeline", []byte(`{}`), "sha256=00"); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Webhook of an unknown pipeline = %v, want ErrBadSignature", err)
	}
}

// The pipelines of an apply are recorded by the manager the engine was given, as part
// of the apply: an invalid one fails the apply before any revision is recorded.
func TestApplyRecordsPipelines(t *testing.T) {
	d := newSimDaemon(t)
	e, m, _ := d.start()
	ctx := t.Context()
	bad := api.ApplyRequest{Services: []api.Service{d.service("web", 1)}, User: "test",
		Pipelines: []api.Pipeline{{Name: "../etc", Branch: "main", Services: []string{"web"}}}}
	if _, err := e.Apply(ctx, bad); err == nil || !strings.Contains(err.Error(), "pipeline name") {
		t.Fatalf("apply of an invalid pipeline = %v, want it refused", err)
	}
	if revs, _ := d.state.Revisions(ctx, "web"); len(revs) != 0 {
		t.Errorf("revisions recorded by a refused apply: %+v", revs)
	}
	good := bad
	// Its worker's fetch is refused at once: the test reaches no network.
	good.Pipelines = []api.Pipeline{{Name: "site", Repo: "https://user:t0ken@127.0.0.1:1/site.git", Branch: "main",
		Services: []string{"web"}, WebhookSecret: "s3cret"}}
	if res, err := e.Apply(ctx, good); err != nil || !res.OK {
		t.Fatalf("apply: %v %+v", err, res)
	}
	ps, err := m.Pipelines(ctx)
	if err != nil || len(ps) != 1 || ps[0].Name != "site" || !ps[0].Webhook || ps[0].WebhookSecret != "" || strings.Contains(ps[0].Repo, "t0ken") {
		t.Errorf("pipelines after the apply: %+v, %v", ps, err)
	}
	raw, err := d.state.Pipelines(ctx)
	if err != nil || !strings.HasPrefix(raw["site"], "sealed:") {
		t.Errorf("the definition is stored as %q (%v), want it sealed", raw["site"], err)
	}
}
