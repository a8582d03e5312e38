package doortls

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestSplitPlain serves HTTPS and the redirect to it on one port: plain HTTP is
// sent to https on the same port, HTTPS is served over HTTP/2, and a client that
// sends nothing meanwhile holds up neither. Closing leaves no goroutine behind.
func TestSplitPlain(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ca := newCA(t)
	certFile, keyFile := writePair(t, t.TempDir(), ca.leaf(t, appHost))
	m, err := New([]Site{{Hosts: []string{appHost}, CertFile: certFile, KeyFile: keyFile}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	addr, p := ln.Addr().String(), strconv.Itoa(port(ln))
	// As SplitPlain, but a silent client could hold accepting up for an hour.
	tlsLn, plainLn := splitPlain(ln, time.Hour)
	t.Run("serve", func(t *testing.T) { // its cleanup stops the servers before goleak looks
		serveHTTPS(t, tlsLn, m, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.Proto)
		}))
		serve(t, &http.Server{Handler: m.HTTPHandler(Redirect(port(ln)))}, plainLn)

		silent, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()

		c := client(t, ca.pool, addr)
		for _, method := range []string{"GET", "POST"} {
			req, _ := http.NewRequest(method, "http://"+appHost+":"+p+"/path?q=1", strings.NewReader("body"))
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := map[string]int{"GET": 301, "POST": 308}[method]
			loc := "https://" + appHost + ":" + p + "/path?q=1"
			if resp.StatusCode != want || resp.Header.Get("Location") != loc {
				t.Fatalf("%s over plain HTTP: %s to %q; want %d to %q", method, resp.Status, resp.Header.Get("Location"), want, loc)
			}
		}
		resp, err := c.Get("https://" + appHost + ":" + p + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "HTTP/2.0" {
			t.Fatalf("HTTPS on the split port: %s %q", resp.Status, body)
		}
	})
	for _, l := range []net.Listener{tlsLn, plainLn} {
		if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Errorf("the port still accepts once both halves are closed")
	}
}

// TestSplitPlainPeekTimeout: a connection that sends nothing is closed after the
// peek timeout.
func TestSplitPlainPeekTimeout(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln := listen(t)
	tlsLn, plainLn := splitPlain(ln, 200*time.Millisecond)
	defer plainLn.Close()
	defer tlsLn.Close()
	acceptLoop(tlsLn)
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("a silent connection after the peek timeout: read %v, want EOF", err)
	}
}

// TestSplitPlainClose: a half closed alone leaves the other serving and drops the
// connections meant for it; closing the other closes the connections still unread
// at once (the peek timeout is an hour) and ends every goroutine of the split.
func TestSplitPlainClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln := listen(t)
	tlsLn, plainLn := splitPlain(ln, time.Hour)
	accepted, acceptErr := acceptLoop(tlsLn)

	if err := plainLn.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := plainLn.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
	plain, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	io.WriteString(plain, "GET / HTTP/1.1\r\n\r\n")
	plain.SetReadDeadline(time.Now().Add(30 * time.Second))
	// Closed with the request unread: a reset rather than an EOF.
	if _, err := plain.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("plain HTTP with its half closed: read %v, want the connection closed", err)
	}

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{0x16, 3, 1})
	first := make([]byte, 3)
	if _, err := io.ReadFull(<-accepted, first); err != nil || first[0] != 0x16 {
		t.Fatalf("the TLS half, with the plain one closed: read %v, %v; want the bytes sent", first, err)
	}
	c.Close()

	unread, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer unread.Close()
	s := tlsLn.(*subListener).s
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		s.mu.Lock()
		n := len(s.pending)
		s.mu.Unlock()
		if n == 1 {
			break // its first byte awaited
		}
		if time.Now().After(deadline) {
			t.Fatal("the split never accepted the connection")
		}
	}
	if err := tlsLn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-acceptErr; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
	unread.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := unread.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("a connection unread at Close: read %v, want EOF", err)
	}
}

// acceptLoop accepts from l until it fails, sending each connection on the
// first channel and then the error on the second.
func acceptLoop(l net.Listener) (<-chan net.Conn, <-chan error) {
	accepted, failed := make(chan net.Conn), make(chan error, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				failed <- err
				return
			}
			accepted <- c
		}
	}()
	return accepted, failed
}
