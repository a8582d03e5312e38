package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Files in the state directory through which the CLI finds its daemon: the address it
// listens on (loopback) and its bearer tokens (mode 0600): one for everything, one
// that can only read (for the dashboard or monitoring).
const (
	AddrFile          = "api.addr"
	TokenFile         = "token"
	ReadOnlyTokenFile = "token.readonly"
)

// SessionCookie is the dashboard's session cookie. Front doors remove it from the
// requests they pass on: it is the browser's key to the daemon, and cookies are not
// kept apart by port, so the browser sends it to every service on the same host.
const SessionCookie = "kiln_session"

// ErrNoDaemon means no daemon answers for this state directory.
var ErrNoDaemon = errors.New("no kiln daemon is running for this spec")

// Client talks to a kiln daemon.
type Client struct {
	http  *http.Client
	base  string
	token string
	where string // for error messages
}

// Discover returns a client for the daemon of stateDir: KILN_ADDR and KILN_TOKEN if set,
// else the unix socket and token in stateDir.
func Discover(stateDir string) (*Client, error) {
	if addr := os.Getenv("KILN_ADDR"); addr != "" {
		return New(addr, os.Getenv("KILN_TOKEN")), nil
	}
	addr, err := os.ReadFile(filepath.Join(stateDir, AddrFile))
	token, terr := os.ReadFile(filepath.Join(stateDir, TokenFile))
	if err != nil || terr != nil {
		return nil, fmt.Errorf("%w: start one with `kiln serve` or `kiln up` in the spec's directory, or set KILN_ADDR", ErrNoDaemon)
	}
	return New(strings.TrimSpace(string(addr)), strings.TrimSpace(string(token))), nil
}

// New returns a client for addr: "unix:///path/kiln.sock" or "http://127.0.0.1:7777".
func New(addr, token string) *Client {
	c := &Client{token: token, where: addr}
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}}
		c.http, c.base = &http.Client{Transport: tr}, "http://kiln"
	} else {
		c.http, c.base = &http.Client{}, strings.TrimSuffix(addr, "/")
	}
	return c
}

func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s (%v): start it with `kiln serve` or `kiln up`", ErrNoDaemon, c.where, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e Error
		b, _ := io.ReadAll(resp.Body)
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return nil, &StatusError{Code: resp.StatusCode, Message: e.Error}
	}
	return resp, nil
}

// StatusError is an error answer of the daemon.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string { return e.Message }

func (c *Client) get(ctx context.Context, path string, out any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// stream sends a request answered with NDJSON messages, calls onEvent for each event
// and returns the result.
func (c *Client) stream(ctx context.Context, method, path string, body any, onEvent func(Event)) (Result, error) {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var m Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return Result{}, fmt.Errorf("reading the daemon's answer: %w", err)
		}
		switch {
		case m.Event != nil && onEvent != nil:
			onEvent(*m.Event)
		case m.Result != nil:
			return *m.Result, nil
		}
	}
	if err := sc.Err(); err != nil {
		return Result{}, fmt.Errorf("reading the daemon's answer: %w", err)
	}
	return Result{}, errors.New("the daemon closed the connection before the outcome was known: see `kiln status` and `kiln history`")
}

// Plan returns the plan of req, in the JSON shape of plan.JSONPlan (passed through raw).
func (c *Client) Plan(ctx context.Context, req PlanRequest) (json.RawMessage, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/plan", req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// Apply records and rolls out req, calling onEvent as things happen, and returns once
// the outcome is known (or at once with req.Detach).
func (c *Client) Apply(ctx context.Context, req ApplyRequest, onEvent func(Event)) (Result, error) {
	return c.stream(ctx, http.MethodPost, "/v1/apply", req, onEvent)
}

// Rollback rolls service back.
func (c *Client) Rollback(ctx context.Context, service string, req RollbackRequest, onEvent func(Event)) (Result, error) {
	return c.stream(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(service)+"/rollback", req, onEvent)
}

// Destroy removes service and its servers.
func (c *Client) Destroy(ctx context.Context, service string, onEvent func(Event)) (Result, error) {
	return c.stream(ctx, http.MethodDelete, "/v1/services/"+url.PathEscape(service), nil, onEvent)
}

// Status returns the state of every service.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.get(ctx, "/v1/status", &s)
}

// History returns the revisions of service, newest first.
func (c *Client) History(ctx context.Context, service string) ([]Revision, error) {
	var r []Revision
	return r, c.get(ctx, "/v1/services/"+url.PathEscape(service)+"/history", &r)
}

// Events returns events after since (all services when service is "").
func (c *Client) Events(ctx context.Context, service string, since int64) ([]Event, error) {
	var e []Event
	q := url.Values{"since": {fmt.Sprint(since)}, "service": {service}}
	return e, c.get(ctx, "/v1/events?"+q.Encode(), &e)
}

// StreamEvents calls fn for every event after since (of service, or all when ""), and
// then for new ones as they happen, until ctx ends or the daemon goes away.
func (c *Client) StreamEvents(ctx context.Context, service string, since int64, fn func(Event)) error {
	q := url.Values{"since": {fmt.Sprint(since)}, "service": {service}}
	resp, err := c.do(ctx, http.MethodGet, "/v1/events/stream?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev Event
		if err := json.Unmarshal([]byte(data), &ev); err == nil {
			fn(ev)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("the daemon closed the event stream")
}

// Logs copies what service's servers print to w; with follow, until ctx ends.
func (c *Client) Logs(ctx context.Context, service string, follow bool, w io.Writer) error {
	q := url.Values{}
	if follow {
		q.Set("follow", "1")
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(service)+"/logs?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Pipelines returns the recorded pipelines.
func (c *Client) Pipelines(ctx context.Context) ([]Pipeline, error) {
	var p []Pipeline
	return p, c.get(ctx, "/v1/pipelines", &p)
}

// Runs returns the latest runs (of pipeline, or all when ""), as JSON objects.
func (c *Client) Runs(ctx context.Context, pipeline string) ([]Run, error) {
	var r []Run
	return r, c.get(ctx, "/v1/runs?"+url.Values{"pipeline": {pipeline}}.Encode(), &r)
}

// Run returns one run with its stages.
func (c *Client) Run(ctx context.Context, id int64) (Run, error) {
	var r Run
	return r, c.get(ctx, fmt.Sprintf("/v1/runs/%d", id), &r)
}

// Trigger queues a run of commit (the branch's head when "").
func (c *Client) Trigger(ctx context.Context, pipeline, commit string) (Run, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/pipelines/"+url.PathEscape(pipeline)+"/trigger", TriggerRequest{Commit: commit})
	if err != nil {
		return Run{}, err
	}
	defer resp.Body.Close()
	var r Run
	return r, json.NewDecoder(resp.Body).Decode(&r)
}

// Pause holds the new requests of service's front door (each for up to 30 s, then
// 503) until Resume; with req.Maintenance, the door answers every request 503 with it
// instead.
func (c *Client) Pause(ctx context.Context, service string, req PauseRequest) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(service)+"/pause", req)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Promote passes the current step of service's canary: it moves on to the next step,
// or replaces the stable set after the last.
func (c *Client) Promote(ctx context.Context, service string, req CanaryRequest) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(service)+"/promote", req)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Abort fails service's canary at once: every request back to the stable set.
func (c *Client) Abort(ctx context.Context, service string, req CanaryRequest) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(service)+"/abort", req)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Resume lets the requests of service's front door through again.
func (c *Client) Resume(ctx context.Context, service string) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(service)+"/resume", struct{}{})
	if err != nil {
		return err
	}
	return resp.Body.Close()
}
