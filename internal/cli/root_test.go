package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// lockedBuffer is stderr written by the signal handler's goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSignals: the first SIGINT ends the context with ErrInterrupted and says what the
// verb does; the second exits at once with 130. SIGTERM ends it with ErrTerminated.
func TestSignals(t *testing.T) {
	var stderr lockedBuffer
	sigs := make(chan os.Signal, 2)
	exited := make(chan int, 1)
	ctx, stop := handleSignals(context.Background(), &stderr, sigs, func(code int) { exited <- code })
	defer stop()
	noteInterrupt(ctx, "stopped following the rollout")
	sigs <- os.Interrupt
	<-ctx.Done()
	if !interrupted(ctx) || !errors.Is(context.Cause(ctx), ErrInterrupted) {
		t.Errorf("after SIGINT the cause is %v, want ErrInterrupted", context.Cause(ctx))
	}
	if got := stderr.String(); !strings.Contains(got, "interrupted: stopped following the rollout") || !strings.Contains(got, "Ctrl-C again to exit at once") {
		t.Errorf("first SIGINT printed %q", got)
	}
	sigs <- os.Interrupt
	if code := <-exited; code != 130 {
		t.Errorf("second SIGINT exited %d, want 130", code)
	}

	ctx, stop = handleSignals(context.Background(), &stderr, sigs, func(code int) { exited <- code })
	defer stop()
	sigs <- syscall.SIGTERM
	<-ctx.Done()
	if interrupted(ctx) || !errors.Is(context.Cause(ctx), ErrTerminated) {
		t.Errorf("after SIGTERM the cause is %v, want ErrTerminated", context.Cause(ctx))
	}
	select {
	case code := <-exited:
		t.Errorf("one SIGTERM exited %d", code)
	default:
	}
}
