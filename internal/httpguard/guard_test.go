package httpguard

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// echo answers with how much of the body it read, or why it could not.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	switch {
	case TooLarge(err):
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	case errors.Is(err, ErrSlowBody):
		http.Error(w, "too slow", http.StatusRequestTimeout)
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		fmt.Fprint(w, n)
	}
})

func tooLarge(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "declared too large", http.StatusRequestEntityTooLarge)
}

func TestBodyMax(t *testing.T) {
	srv := httptest.NewServer(Body{Max: 1000}.Limit(tooLarge, echo))
	defer srv.Close()
	post := func(body io.Reader) (int, string) {
		resp, err := http.Post(srv.URL, "text/plain", body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	if code, text := post(strings.NewReader(strings.Repeat("x", 1000))); code != 200 || text != "1000" {
		t.Errorf("a body of the limit: %d %q", code, text)
	}
	if code, text := post(strings.NewReader(strings.Repeat("x", 1001))); code != 413 || text != "declared too large" {
		t.Errorf("a declared body over the limit: %d %q", code, text)
	}
	// No Content-Length (chunked): found out while reading.
	if code, _ := post(io.MultiReader(strings.NewReader(strings.Repeat("x", 5000)))); code != 413 {
		t.Errorf("a chunked body over the limit: %d, want 413", code)
	}
}

// slowPost sends a body of n bytes one byte per gap on a raw connection and returns
// what the server answered and when.
func slowPost(t *testing.T, addr string, n int, gap time.Duration) (status string, took time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", n)
	go func() {
		for i := 0; i < n; i++ {
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(gap)
		}
	}()
	c.SetReadDeadline(time.Now().Add(time.Duration(n) * gap * 2))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && line == "" {
		line = "error: " + err.Error()
	}
	return strings.TrimSpace(line), time.Since(start)
}

func TestBodySlowClient(t *testing.T) {
	srv := httptest.NewServer(Body{Grace: 300 * time.Millisecond, MinRate: 1000}.Limit(tooLarge, echo))
	defer srv.Close()
	// 40 bytes at 10 bytes/s would take 4 s; the rate allows 0.3 s + 40 ms.
	status, took := slowPost(t, srv.Listener.Addr().String(), 40, 100*time.Millisecond)
	if !strings.Contains(status, "408") || took > 3*time.Second {
		t.Errorf("a slow body: %q after %s, want 408 well before the body's 4 s", status, took)
	}
	// A fast body is not bothered, nor is the next request on the connection.
	resp, err := http.Post(srv.URL, "text/plain", bytes.NewReader(make([]byte, 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "1048576" {
		t.Errorf("a fast body: %d %q", resp.StatusCode, b)
	}
}

// TestBodySlowHandler: time the handler spends away from the body (a proxy whose
// server is slow to take it) does not count against the client.
func TestBodySlowHandler(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 10)
		var n int
		for {
			m, err := r.Body.Read(buf)
			n += m
			if err == io.EOF {
				break
			}
			if err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		fmt.Fprint(w, n)
	})
	srv := httptest.NewServer(Body{Grace: 200 * time.Millisecond, MinRate: 1000}.Limit(tooLarge, h))
	defer srv.Close()
	resp, err := http.Post(srv.URL, "text/plain", strings.NewReader(strings.Repeat("x", 50)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "50" {
		t.Errorf("a slow handler: %d %q", resp.StatusCode, b)
	}
}

func TestRecover(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boom/{x}", func(w http.ResponseWriter, r *http.Request) { panic("kaboom") })
	mux.HandleFunc("GET /half", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("partial"))
		http.NewResponseController(w).Flush()
		panic("late")
	})
	mux.HandleFunc("GET /ok", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	srv := httptest.NewServer(Recover(log, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "internal error", http.StatusInternalServerError)
	}, mux))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/boom/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 {
		t.Errorf("a panic: %d, want 500", resp.StatusCode)
	}
	for _, want := range []string{`"route":"GET /boom/{x}"`, `"panic":"kaboom"`, `"stack":"goroutine`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %s:\n%s", want, logs.String())
		}
	}
	// A panic after the answer started cuts the connection: the client sees an error.
	if resp, err := http.Get(srv.URL + "/half"); err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("a panic mid-answer ended the answer cleanly")
		}
	}
	if resp, err := http.Get(srv.URL + "/ok"); err != nil || resp.StatusCode != 200 {
		t.Errorf("after panics: %v", err)
	}
}

func TestLimitListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })}
	go srv.Serve(LimitListener(ln, 1))
	defer srv.Close()
	hold, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // accepted
	c := &http.Client{Timeout: 500 * time.Millisecond}
	if _, err := c.Get("http://" + ln.Addr().String()); err == nil {
		t.Fatal("a second connection was served while the limit of one was held")
	}
	hold.Close()
	c.Timeout = 5 * time.Second
	if _, err := c.Get("http://" + ln.Addr().String()); err != nil {
		t.Fatalf("once the first closed: %v", err)
	}
}
