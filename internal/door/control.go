package door

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Plane is what configures a door, in this process (*Server) or in the door process
// (*Client).
type Plane interface {
	// Apply makes the door serve cfg (see Server.Apply).
	Apply(ctx context.Context, cfg Config) error
	// Check reports whether the door could listen on addr.
	Check(ctx context.Context, addr string) error
	// Drain waits until no request is in flight to the servers at addrs of service.
	Drain(ctx context.Context, service string, addrs []string) error
	// Stats returns every service's counters and rotation.
	Stats(ctx context.Context) (map[string]ServiceStats, error)
}

var (
	_ Plane = (*Server)(nil)
	_ Plane = (*Client)(nil)
)

// SocketFile is the control socket of a door, in its directory.
const SocketFile = "door.sock"

// Status is what a door says of itself.
type Status struct {
	Version    int               `json:"version"`
	Build      string            `json:"build"` // the door binary's build, as the daemon names builds
	PID        int               `json:"pid"`
	Started    time.Time         `json:"started"`
	Created    time.Time         `json:"created"`              // of its container: the newer door of two is the later
	HandedOff  bool              `json:"handed_off,omitempty"` // its listeners went to a newer door
	Generation int64             `json:"generation"`
	Listeners  map[string]string `json:"listeners"`
}

// Control is the door's control API, served on its unix socket: status, configuration,
// listen checks, drains and counters. Whoever can open the socket (its owner: mode
// 0600) controls the door.
func Control(s *Server, build string, created time.Time, handedOff <-chan struct{}) http.Handler {
	started := time.Now().UTC()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st := Status{Version: Version, Build: build, PID: os.Getpid(), Started: started, Created: created.UTC(),
			Generation: s.Config().Generation, Listeners: s.Listeners()}
		select {
		case <-handedOff:
			st.HandedOff = true
		default:
		}
		reply(w, st, nil)
	})
	mux.HandleFunc("GET /v1/config", func(w http.ResponseWriter, r *http.Request) { reply(w, s.Config(), nil) })
	mux.HandleFunc("PUT /v1/config", func(w http.ResponseWriter, r *http.Request) {
		var cfg Config
		if err := json.NewDecoder(io.LimitReader(r.Body, 16<<20)).Decode(&cfg); err != nil {
			reply(w, nil, fmt.Errorf("decoding the configuration: %w", err))
			return
		}
		reply(w, struct{}{}, s.Apply(r.Context(), cfg))
	})
	mux.HandleFunc("POST /v1/check", func(w http.ResponseWriter, r *http.Request) {
		reply(w, struct{}{}, s.Check(r.Context(), r.URL.Query().Get("addr")))
	})
	mux.HandleFunc("POST /v1/drain", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		reply(w, struct{}{}, s.Drain(r.Context(), q.Get("service"), q["addr"]))
	})
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.Stats(r.Context())
		reply(w, st, err)
	})
	return mux
}

type errorBody struct {
	Error string `json:"error"`
	Stale bool   `json:"stale,omitempty"`
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusUnprocessableEntity)
		json.NewEncoder(w).Encode(errorBody{Error: err.Error(), Stale: errors.Is(err, ErrStale)})
		return
	}
	json.NewEncoder(w).Encode(v)
}

// ServeControl serves the control API of s on the unix socket at path (replacing a
// stale one) until ctx ends.
func ServeControl(ctx context.Context, path string, h http.Handler) error {
	os.Remove(path)
	ln, err := listenUnix(path)
	if err != nil {
		return fmt.Errorf("the door's control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// listenUnix listens on the unix socket at path, whose file is left in place when the
// listener closes: after a handoff the path is the newer door's, and the older one's
// close must not remove it. (Each door removes a stale one before it listens.)
func listenUnix(path string) (net.Listener, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	return ln, nil
}

// Client configures a door process through its control socket.
type Client struct {
	path string
	http *http.Client
}

// Dial returns a client of the door whose control socket is at path; it connects on
// each call.
func Dial(path string) *Client {
	return &Client{path: path, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		// A connection per call: the socket's path may change hands (a newer door
		// takes it over), and a kept connection would go on reaching the old door.
		DisableKeepAlives: true,
	}}}
}

// Status asks the door what it is.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	return st, c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
}

// Config returns the configuration the door serves.
func (c *Client) Config(ctx context.Context) (Config, error) {
	var cfg Config
	return cfg, c.do(ctx, http.MethodGet, "/v1/config", nil, &cfg)
}

func (c *Client) Apply(ctx context.Context, cfg Config) error {
	return c.do(ctx, http.MethodPut, "/v1/config", cfg, nil)
}

func (c *Client) Check(ctx context.Context, addr string) error {
	return c.do(ctx, http.MethodPost, "/v1/check?addr="+queryEscape(addr), nil, nil)
}

func (c *Client) Drain(ctx context.Context, service string, addrs []string) error {
	q := "service=" + queryEscape(service)
	for _, a := range addrs {
		q += "&addr=" + queryEscape(a)
	}
	return c.do(ctx, http.MethodPost, "/v1/drain?"+q, nil, nil)
}

func (c *Client) Stats(ctx context.Context) (map[string]ServiceStats, error) {
	var st map[string]ServiceStats
	return st, c.do(ctx, http.MethodGet, "/v1/stats", nil, &st)
}

// Close closes the client's idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://door"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("the front door process (socket %s) does not answer: %w", c.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e)
		if e.Stale {
			return fmt.Errorf("%w: %s", ErrStale, e.Error)
		}
		if e.Error == "" {
			e.Error = resp.Status
		}
		return errors.New(e.Error)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func queryEscape(s string) string { return url.QueryEscape(s) }
