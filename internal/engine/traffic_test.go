package engine

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The sparkline's numbers: requests and 5xx answers per interval, the last 30 kept.
func TestTraffic(t *testing.T) {
	tr := newTraffic()
	code := http.StatusOK
	h := tr.middleware("web")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }))
	serve := func(n int) {
		for range n {
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		}
	}
	serve(7)
	code = http.StatusBadGateway
	serve(2)
	now := time.Now()
	tr.sample(now)
	serve(1)
	tr.sample(now.Add(trafficStep))
	e := &Engine{traffic: tr}
	got := e.Traffic("web")
	if len(got) != 2 || got[0].Requests != 9 || got[0].Errors != 2 || got[1].Requests != 1 || got[1].Errors != 1 {
		t.Fatalf("samples %+v, want 9 requests with 2 errors, then 1 with 1", got)
	}
	for range 40 {
		tr.sample(now)
	}
	if n := len(e.Traffic("web")); n != trafficSamples {
		t.Errorf("%d samples kept, want %d", n, trafficSamples)
	}
	if e.Traffic("other") != nil {
		t.Errorf("a service without a front door has traffic")
	}
}
