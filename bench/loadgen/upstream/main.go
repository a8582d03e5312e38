// Command upstream is the application server of kiln-bench's door scenario: one
// process, as examples/hello is, answering GET / with a small fixed body (a greeting,
// "version:" and "server:" lines, padded to -size bytes) and GET /up and /healthz
// with 200, over HTTP on -listen and, with -tls-listen, over HTTPS (HTTP/1.1 and
// HTTP/2) with the certificate files given, so that a client can reach it directly
// over HTTPS as it reaches a front door.
//
// It stops on SIGINT or SIGTERM, letting the requests in flight finish.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	var (
		listen    = flag.String("listen", "127.0.0.1:8080", "HTTP address")
		tlsListen = flag.String("tls-listen", "", "HTTPS address (none if empty)")
		cert      = flag.String("cert", "", "PEM certificate file, for -tls-listen")
		key       = flag.String("key", "", "PEM key file, for -tls-listen")
		size      = flag.Int("size", 100, "bytes of the body of GET /")
		name      = flag.String("name", "upstream", "the server's name in its answers")
	)
	flag.Parse()
	if *tlsListen != "" && (*cert == "" || *key == "") {
		log.Fatal("upstream: -tls-listen needs -cert and -key")
	}
	body := answer(*name, *size)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	ok := func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") }
	mux.HandleFunc("GET /up", ok)
	mux.HandleFunc("GET /healthz", ok)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	servers := []*http.Server{{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	if *tlsListen != "" {
		servers = append(servers, &http.Server{Addr: *tlsListen, Handler: mux, ReadHeaderTimeout: 5 * time.Second})
	}
	failed := make(chan error, len(servers))
	for i, s := range servers {
		go func() {
			var err error
			if i == 0 {
				err = s.ListenAndServe()
			} else {
				err = s.ListenAndServeTLS(*cert, *key)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				failed <- fmt.Errorf("serving %s: %w", s.Addr, err)
			}
		}()
	}
	select {
	case err := <-failed:
		log.Fatal("upstream: ", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range servers {
		s.Shutdown(sctx)
	}
}

// answer is the answer to GET /: the example's three lines, the greeting padded so that
// the whole is size bytes (or the three lines unpadded, if they are longer).
func answer(name string, size int) []byte {
	tail := fmt.Sprintf("\nversion: 1\nserver: %s\n", name)
	greeting := "Hello from kiln!"
	if pad := size - len(greeting) - len(tail); pad > 1 {
		greeting += " " + strings.Repeat("~", pad-1)
	}
	return []byte(greeting + tail)
}
