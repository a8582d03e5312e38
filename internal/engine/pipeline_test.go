package engine

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
	e := New(Options{StateDir: t.TempDir()})
	for _, name := range []string{"../../etc", "a/b", "..", "a..b", "", "Upper"} {
		if err := e.setPipelines(t.Context(), []api.Pipeline{{Name: name}}); err == nil || !strings.Contains(err.Error(), "pipeline name") {
			t.Errorf("pipeline %q: %v, want it refused", name, err)
		}
	}
}

// An unsigned caller of the webhook learns no pipeline names: an unknown pipeline is
// answered as a bad signature is.
func TestWebhookRevealsNoPipelineNames(t *testing.T) {
	e := New(Options{StateDir: t.TempDir()})
	if _, _, err := e.Webhook(t.Context(), "no-such-pipeline", []byte(`{}`), "sha256=00"); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Webhook of an unknown pipeline = %v, want ErrBadSignature", err)
	}
}
