// Command hello is a small HTTP service used to show kiln: it answers / with a greeting
// and its version, serves static files, and reports its health on /healthz.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// version is set at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	addr := ":" + getenv("PORT", "8080")
	greeting := "Hello from kiln!"
	if b, err := os.ReadFile(getenv("GREETING_FILE", "/etc/hello/greeting.txt")); err == nil {
		greeting = strings.TrimSpace(string(b))
	}
	host, _ := os.Hostname()

	// FAIL_EVERY=N answers every Nth request to / with 500, and SLOW_EVERY=N delays
	// every Nth by SLOW (50ms by default): versions a canary release must catch.
	failEvery, slowEvery := atoi(os.Getenv("FAIL_EVERY")), atoi(os.Getenv("SLOW_EVERY"))
	slow, err := time.ParseDuration(getenv("SLOW", "50ms"))
	if err != nil {
		slog.Error("SLOW is not a duration", "value", os.Getenv("SLOW"))
		os.Exit(2)
	}
	var served atomic.Int64

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		if slowEvery > 0 && n%slowEvery == 0 {
			time.Sleep(slow)
		}
		if failEvery > 0 && n%failEvery == 0 {
			http.Error(w, "failing, as FAIL_EVERY asks", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s\nversion: %s\nserver: %s\n", greeting, version, host)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServer(http.Dir(getenv("STATIC_DIR", "static")))))

	// EXIT_AFTER makes the server crash on its own after a while: a way to watch kiln
	// replace failed servers (and back off when a revision keeps crashing).
	if d, err := time.ParseDuration(os.Getenv("EXIT_AFTER")); err == nil {
		time.AfterFunc(d, func() {
			slog.Error("exiting, as EXIT_AFTER asks", "after", d)
			os.Exit(3)
		})
	}

	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		// Finish the requests in flight, then exit: servers are replaced, never killed mid-request.
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(shutdownCtx)
	}()
	slog.Info("listening", "addr", addr, "version", version)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		slog.Error("serving", "err", err)
		os.Exit(1)
	}
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
