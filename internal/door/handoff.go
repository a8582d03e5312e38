package door

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// HandoffFile is the socket on which a door hands its listeners to the door that
// replaces it (an upgrade), in its directory.
const HandoffFile = "handoff.sock"

// The handoff, over a unix stream connection: the newer door sends hello; the older
// sends one byte carrying the listeners' file descriptors (SCM_RIGHTS), then offer;
// the newer serves them, with offer's configuration, and sends "ok\n"; the older then
// stops accepting and lets its requests finish. Both doors accept on the very same
// sockets meanwhile: no connection is refused or reset.
type (
	hello struct {
		Version int   `json:"version"`
		Created int64 `json:"created"` // the newer door's container's creation, unix ns
	}
	offer struct {
		Keys   []string `json:"keys"` // of the descriptors, in order
		Config Config   `json:"config"`
		Error  string   `json:"error,omitempty"`
	}
)

// handoffFiles returns a duplicate of each listener's socket, by key, and the
// configuration served.
func (s *Server) handoffFiles() ([]string, []*os.File, Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	var files []*os.File
	for key, ln := range s.listeners {
		tl, ok := ln.ln.(*net.TCPListener)
		if !ok {
			continue
		}
		f, err := tl.File()
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, nil, Config{}, fmt.Errorf("the socket of %s: %w", key, err)
		}
		keys, files = append(keys, key), append(files, f)
	}
	return keys, files, s.cfg, nil
}

// ServeHandoff hands s's listeners, on the unix socket at path, to a door created
// after created that asks (TakeOver), until ctx ends. Once one has taken them and
// serves, s stops accepting and its requests finish (s.Shutdown), and handedOff is
// closed: the caller then waits to be stopped, and must not exit (its supervisor would
// start it again).
func ServeHandoff(ctx context.Context, path string, s *Server, created time.Time) (handedOff <-chan struct{}, err error) {
	os.Remove(path)
	ln, err := listenUnix(path)
	if err != nil {
		return nil, fmt.Errorf("the door's handoff socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() { <-ctx.Done(); ln.Close() }()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if handOver(c.(*net.UnixConn), s, created) {
				ln.Close()
				close(done)
				return
			}
		}
	}()
	return done, nil
}

// handOver serves one handoff on c; true when the listeners were taken.
func handOver(c *net.UnixConn, s *Server, created time.Time) bool {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	r := bufio.NewReader(c)
	var h hello
	if line, err := r.ReadBytes('\n'); err != nil || json.Unmarshal(line, &h) != nil {
		return false
	}
	refuse := func(why string) bool {
		c.Write([]byte{0})
		json.NewEncoder(c).Encode(offer{Error: why})
		return false
	}
	if h.Version != Version {
		return refuse(fmt.Sprintf("this door speaks version %d, not %d", Version, h.Version))
	}
	if h.Created <= created.UnixNano() {
		return refuse("this door is the newer one")
	}
	keys, files, cfg, err := s.handoffFiles()
	if err != nil {
		return refuse(err.Error())
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	_, _, err = c.WriteMsgUnix([]byte{1}, syscall.UnixRights(fds...), nil)
	for _, f := range files {
		f.Close()
	}
	if err != nil || json.NewEncoder(c).Encode(offer{Keys: keys, Config: cfg}) != nil {
		return false
	}
	if line, err := r.ReadString('\n'); err != nil || line != "ok\n" {
		return false // the newer door failed: this one goes on serving
	}
	s.stopAccepting()
	s.Shutdown()
	return true
}

// Takeover is a handoff in progress: the listeners and configuration of the door
// being replaced. Serve them, then call Done.
type Takeover struct {
	Listeners map[string]net.Listener
	Config    Config
	c         *net.UnixConn
}

// Done tells the replaced door that its listeners are served here: it stops accepting.
func (t *Takeover) Done() error {
	defer t.c.Close()
	_, err := t.c.Write([]byte("ok\n"))
	return err
}

// Abort gives the listeners back: the replaced door goes on serving.
func (t *Takeover) Abort() {
	for _, ln := range t.Listeners {
		ln.Close()
	}
	t.c.Close()
}

// TakeOver asks the door serving the handoff socket at path for its listeners, as
// a door created at created.
func TakeOver(ctx context.Context, path string, created time.Time) (*Takeover, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("no door to take over at %s: %w", path, err)
	}
	c := conn.(*net.UnixConn)
	c.SetDeadline(time.Now().Add(time.Minute))
	if err := json.NewEncoder(c).Encode(hello{Version: Version, Created: created.UnixNano()}); err != nil {
		c.Close()
		return nil, err
	}
	buf, oob := make([]byte, 1), make([]byte, syscall.CmsgSpace(4*1024))
	_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("the door at %s handed nothing over: %w", path, err)
	}
	var fds []int
	if msgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if got, err := syscall.ParseUnixRights(&m); err == nil {
				fds = append(fds, got...)
			}
		}
	}
	var o offer
	if err := json.NewDecoder(c).Decode(&o); err != nil || o.Error != "" || len(o.Keys) != len(fds) {
		for _, fd := range fds {
			syscall.Close(fd)
		}
		c.Close()
		if o.Error != "" {
			return nil, fmt.Errorf("the door at %s does not hand over: %s", path, o.Error)
		}
		return nil, errors.Join(errors.New("a handoff that does not add up"), err)
	}
	t := &Takeover{Listeners: map[string]net.Listener{}, Config: o.Config, c: c}
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), o.Keys[i])
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			t.Abort()
			return nil, fmt.Errorf("the socket of %s: %w", o.Keys[i], err)
		}
		t.Listeners[o.Keys[i]] = ln
	}
	return t, nil
}

// stopAccepting closes the door's own descriptors of its listening sockets, which the
// newer door holds too: connections waiting to be accepted go to it. (Closing them
// first, rather than through the servers' shutdown, leaves no connection accepted here
// that the shutdown would then drop.)
func (s *Server) stopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		l.released.Store(true)
		l.ln.Close()
	}
}
