package engine

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/api"
)

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// A rollout whose outcome cannot be recorded (the state is gone under the running
// engine) is not lost silently: each write that failed is logged with its service and
// counted.
func TestFailedStateWritesAreLoggedAndCounted(t *testing.T) {
	ctx := context.Background()
	d := newSimDaemon(t)
	var logs syncBuffer
	d.log = slog.New(slog.NewTextHandler(&logs, nil))
	e, _ := d.start()
	svc := d.service("web", 1)
	// Healthy only after a second probe: the state is closed while it waits.
	svc.Health.Interval, svc.Health.HealthyThreshold = 300*time.Millisecond, 2
	res, err := e.Apply(ctx, api.ApplyRequest{Services: []api.Service{svc}, User: "test", Detach: true})
	if err != nil {
		t.Fatalf("apply: %v %+v", err, res)
	}
	if err := d.state.Close(); err != nil {
		t.Fatal(err)
	}
	metric := func(write string) string {
		rec := httptest.NewRecorder()
		e.Metrics().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		for _, l := range strings.Split(rec.Body.String(), "\n") {
			if strings.HasPrefix(l, `kiln_state_write_errors_total{write="`+write+`"} `) {
				return l
			}
		}
		return ""
	}
	for _, write := range []string{"outcome", "rollout", "event"} {
		eventually(t, 10*time.Second, "a failed "+write+" write to be counted", func() bool { return metric(write) != "" })
	}
	for _, want := range []string{"write=outcome", "write=rollout", "service=web", "outcome=deployed", "level=ERROR"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, logs.String())
		}
	}
}
