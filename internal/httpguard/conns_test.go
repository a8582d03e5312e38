package httpguard

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// A client that fills a server's connections with idle kept-alive ones does not lock
// others out: under pressure the idle ones are closed, oldest first.
func TestIdleConnectionsAreShedUnderPressure(t *testing.T) {
	const max = 8
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := NewConns(max)
	srv := &http.Server{
		Handler:     http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") }),
		ConnState:   conns.ConnState,
		IdleTimeout: time.Hour, // only shedding can free them
	}
	go srv.Serve(conns.Listener(ln))
	defer srv.Close()
	addr := ln.Addr().String()

	// The attacker: max connections, one request each, then idle.
	var idle []net.Conn
	for range max {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		idle = append(idle, c)
	}
	// Someone else gets an answer, well before any idle timeout.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("a new client gets no answer while idle connections fill the server: %v", err)
	}
	resp.Body.Close()
	closed := 0
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			closed++
		}
	}
	if closed == 0 {
		t.Error("no idle connection was closed")
	}
}
