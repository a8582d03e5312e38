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
	"strings"
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

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
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

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
