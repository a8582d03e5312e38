package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/engine"
	"github.com/kiln-build/kiln/internal/pipeline"
	"github.com/kiln-build/kiln/internal/store"
)

// TestAuth checks that every route but /healthz requires the bearer token.
func TestAuth(t *testing.T) {
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "kiln.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := httptest.NewServer(New(engine.New(engine.Options{State: st}), pipeline.New(pipeline.Options{State: st}), Tokens{Admin: "s3cret", ReadOnly: "look"}, nil).Handler())
	defer srv.Close()

	get := func(path, token string) int {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/healthz", ""); code != 200 {
		t.Errorf("/healthz without a token: %d", code)
	}
	for _, path := range []string{"/v1/events", "/v1/services/web/history"} {
		if code := get(path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", path, code)
		}
		if code := get(path, "wrong"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d, want 401", path, code)
		}
	}
	if code := get("/v1/events", "s3cret"); code != 200 {
		t.Errorf("/v1/events with the token: %d", code)
	}
	if code := get("/v1/services/web/history", "s3cret"); code != http.StatusNotFound {
		t.Errorf("history of an unknown service: %d, want 404", code)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/v1/apply", strings.NewReader(`{"services": [], "bogus": 1}`))
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed apply: %d, want 400", resp.StatusCode)
	}
}
