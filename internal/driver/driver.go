package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrNotFound: no server with that ID.
	ErrNotFound = errors.New("server not found")
	// ErrImageNotFound: the runtime does not have the spec's image; make it available
	// with ImageLoader first.
	ErrImageNotFound = errors.New("image not available to the runtime")
	// ErrUnavailable: the runtime cannot be reached.
	ErrUnavailable = errors.New("runtime unavailable")
)

// Driver runs servers on one runtime. Implementations are safe for concurrent use.
//
// The core stays this small; everything else a runtime may do is an optional interface
// found by type assertion (Capable, ImageLoader, Watcher, Differ, Waiter, Stopper,
// Logger, SetDriver, io.Closer), and Capabilities says which of them the runtime behind it
// really does.
type Driver interface {
	// Name identifies the runtime, e.g. "docker".
	Name() string
	// Create starts a new server from spec and returns once the runtime reports it
	// running (not once it is healthy: that is the caller's to probe). It never
	// modifies an existing server. On error nothing is left behind.
	Create(ctx context.Context, spec ServerSpec) (Server, error)
	// Destroy stops a server (asking it to exit and waiting a grace period before
	// killing it) and removes it. It returns nil if the server is already gone.
	Destroy(ctx context.Context, id ServerID) error
	// List returns the servers kiln manages that match sel, as the runtime reports
	// them now: stopped and exited servers included. It never caches.
	List(ctx context.Context, sel Selector) ([]Server, error)
}

// ImageLoader is implemented by drivers that must be given images: EnsureImage makes
// the image with manifest digest available to Create, calling open only if the runtime
// lacks it. It is idempotent.
type ImageLoader interface {
	EnsureImage(ctx context.Context, digest string, open func() (v1.Image, error)) error
}

// Watcher is implemented by drivers that report runtime events as they happen. Watch
// returns a channel that is closed when ctx ends or the stream breaks; callers must
// still resync with List, since events can be missed.
type Watcher interface {
	Watch(ctx context.Context) (<-chan Event, error)
}

// Differ is implemented by drivers that can tell how a server differs from the spec it
// was created from, as the runtime reports it now: configuration changed or recreated
// out of band, and files changed outside its writable paths. No drift is an empty
// slice. ErrNotFound if the server is gone.
type Differ interface {
	Diff(ctx context.Context, s Server) ([]Drift, error)
}

// Drift is one difference between a server and its spec.
type Drift struct {
	Kind   DriftKind `json:"kind"`
	Detail string    `json:"detail"` // which file, which field
}

// DriftKind classifies drift.
type DriftKind string

const (
	DriftFile   DriftKind = "file"   // a file changed, added or deleted outside the writable paths
	DriftConfig DriftKind = "config" // image, command, env, limits or labels no longer match
	DriftExec   DriftKind = "exec"   // a process was started in the server from outside
	// DriftSet: the set the server is a member of was changed out of band (resized,
	// its template edited): on a runtime of sets, it is news for every member.
	DriftSet DriftKind = "set"
)

// Waiter is implemented by drivers that can tell when a server's process ends. Wait
// blocks until server id is not running (at once if it already is not) or ctx ends,
// and returns how its process ended. ErrNotFound if the server is gone.
type Waiter interface {
	Wait(ctx context.Context, id ServerID) (Exit, error)
}

// Stopper is implemented by drivers that can tell when a server's process has ended
// before the runtime is done tearing the server down (releasing its network,
// unmounting its filesystem). Stop asks server id to exit as Destroy does (its stop
// signal, a kill after its stop timeout) and returns once its process has ended; the
// runtime goes on tearing it down, and the server is listed, exited, until Destroy
// removes it (Destroy waits for the stop). Nil if the server is gone or its process
// ended already.
//
// A server whose Stop has returned no longer runs: a rollout counts it against no
// bound, and starts the next server while the runtime removes it.
type Stopper interface {
	Stop(ctx context.Context, id ServerID) error
}

// Exit is how a server's process ended.
type Exit struct {
	Code      int    `json:"code"`
	OOMKilled bool   `json:"oom_killed,omitempty"`
	Error     string `json:"error,omitempty"` // the runtime's own explanation, if any
}

func (x Exit) String() string {
	s := fmt.Sprintf("exit code %d", x.Code)
	if x.OOMKilled {
		s += ", killed for using more than its memory limit"
	}
	if x.Error != "" {
		s += ": " + x.Error
	}
	return s
}

// Logger is implemented by drivers that can return what a server prints.
type Logger interface {
	Logs(ctx context.Context, id ServerID, follow bool) (io.ReadCloser, error)
}

// ServerSpec is the flattened, fully resolved description of one server. Its Hash is
// the server's identity: two servers with the same hash are interchangeable.
type ServerSpec struct {
	// Project scopes servers to one kiln deployment (one state directory), so two
	// projects with a service of the same name never touch each other's servers.
	Project string `json:"project,omitempty"`
	Service string `json:"service"`
	// Revision is the revision that created the server. It is recorded on the server
	// but is not part of its identity.
	Revision int64  `json:"revision"`
	Image    string `json:"image"` // manifest digest, "sha256:..."
	// Command replaces the image's entrypoint, Args its cmd, when set.
	Command []string `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	// Env is the server's environment and Files the files (by absolute path, mounted
	// read-only on a tmpfs) it reads secrets from. Their values are never recorded on
	// the server, where anyone who can inspect it would read them: Hash and the spec a
	// driver records carry Digests instead, a keyed digest of each value by "env:NAME"
	// and "file:/path", which the caller fills (see Digests).
	Env     map[string]string `json:"-"`
	Files   map[string][]byte `json:"-"`
	Digests map[string]string `json:"digests,omitempty"`
	// User is the uid[:gid] the server runs as; never empty (the caller picks the
	// image's user, or 65532).
	User string `json:"user,omitempty"`
	// Init runs a minimal init as PID 1 that forwards signals to the server's process
	// and reaps its children. StopSignal asks the server to stop ("" is the image's,
	// else SIGTERM); Destroy waits StopTimeout (the driver's default when 0) before
	// killing it.
	Init        bool          `json:"init,omitempty"`
	StopSignal  string        `json:"stop_signal,omitempty"`
	StopTimeout time.Duration `json:"stop_timeout,omitempty"`
	// Port is the TCP port the server listens on; the driver makes it reachable from
	// the daemon's host, at Server.Address.
	Port int `json:"port"`
	// Writable paths get a private tmpfs; the rest of the filesystem is read-only.
	Writable  []string  `json:"writable,omitempty"`
	Resources Resources `json:"resources"`
	// Role is what the server is for: "" a server of its service, RoleCandidate a
	// pipeline's candidate, which no service counts as its own whatever its Service.
	Role string `json:"role,omitempty"`
	// Probe is the health check the runtime itself runs on the server, set only for a
	// driver that claims Capabilities.Readiness (nil elsewhere, so that it is no part
	// of any other server's identity).
	Probe *Probe `json:"probe,omitempty"`
}

// Probe is a health check a runtime runs on its servers (a readiness probe): an HTTP
// GET of HTTPPath answering 2xx or 3xx, or a TCP connect when HTTPPath is "".
type Probe struct {
	HTTPPath         string        `json:"http_path,omitempty"`
	Period           time.Duration `json:"period,omitempty"`
	Timeout          time.Duration `json:"timeout,omitempty"`
	InitialDelay     time.Duration `json:"initial_delay,omitempty"`
	SuccessThreshold int           `json:"success_threshold,omitempty"`
	FailureThreshold int           `json:"failure_threshold,omitempty"`
}

// ServiceHost is implemented by runtimes that carry a service's traffic themselves,
// to the servers kiln puts in rotation (a Kubernetes Service and its EndpointSlice):
// the daemon's front door then tells the runtime its rotation at every change, and
// the runtime routes to exactly those servers.
type ServiceHost interface {
	// SetRotation makes the runtime route what reaches the service's port to exactly
	// the servers at addrs (their Address), in one step; none routes nowhere. It is
	// idempotent.
	SetRotation(ctx context.Context, project, service string, port int, addrs []string) error
	// RemoveService removes what carries the service's traffic; nil if nothing does.
	RemoveService(ctx context.Context, project, service string) error
}

// Readier is implemented by runtimes that check their servers' health themselves, for
// a daemon that may not reach the servers (a Kubernetes pod's readiness probe): the
// spec's Probe is given to the runtime, and kiln gates and monitors servers on what
// the runtime reports instead of probing them.
type Readier interface {
	// Ready is nil when server id passes its check, as the runtime last saw it, and
	// an error saying why not otherwise; ErrNotFound when the server is gone.
	Ready(ctx context.Context, id ServerID) error
}

// RoleCandidate is the Role of a pipeline's candidate servers.
const RoleCandidate = "candidate"

// Resources are a server's limits. Zero CPUs means no CPU limit; memory and PIDs are
// always limited.
type Resources struct {
	CPUs        float64 `json:"cpus,omitempty"`
	MemoryBytes int64   `json:"memory_bytes"`
	PIDs        int64   `json:"pids"`
}

// DefaultResources are the limits of a server whose service sets none.
var DefaultResources = Resources{MemoryBytes: 256 << 20, PIDs: 256}

// Digests returns the digests of env and files under digest, by "env:NAME" and
// "file:/path": what ServerSpec.Digests holds.
func Digests(env map[string]string, files map[string][]byte, digest func([]byte) string) map[string]string {
	if len(env)+len(files) == 0 {
		return nil
	}
	out := make(map[string]string, len(env)+len(files))
	for k, v := range env {
		out["env:"+k] = digest([]byte(v))
	}
	for p, v := range files {
		out["file:"+p] = digest(v)
	}
	return out
}

// ServerID is the runtime's identifier of a server.
type ServerID string

// State is what the runtime says a server is doing.
type State string

const (
	// StatePending: the server exists but its process has not started yet (Docker: a
	// container created and not started; Kubernetes: a pod Pending, being scheduled or
	// pulling its image; QEMU: a VM booting). It is not dead: it may still start, and
	// a server that stays pending is the caller's to give up on. Its value, "created",
	// is the one kiln has always recorded.
	StatePending State = "created"
	StateRunning State = "running"
	StateExited  State = "exited" // stopped, crashed or killed
	StateOther   State = "other"  // paused, restarting, being removed...
)

// StateCreated is StatePending, by its former name.
//
// Deprecated: use StatePending.
const StateCreated = StatePending

// Server is one server as the runtime reports it.
type Server struct {
	ID       ServerID `json:"id"`
	Name     string   `json:"name"`
	Project  string   `json:"project,omitempty"`
	Service  string   `json:"service"`
	Revision int64    `json:"revision"`
	SpecHash string   `json:"spec_hash"`
	Image    string   `json:"image"`
	// Address is the host:port at which ServerSpec.Port is reachable from the daemon's
	// host: not necessarily loopback (Docker publishes a loopback port; a Kubernetes
	// pod is reached at its pod IP, a VM at its own address). Empty when the server is
	// not running.
	Address string `json:"address"`
	State   State  `json:"state"`
	// Node is the machine the server runs on, when the runtime runs servers on several
	// (a Kubernetes node); "" on a runtime of one machine.
	Node string `json:"node,omitempty"`
	// Waiting is why a pending server has not started, as the runtime says ("" when
	// it says nothing): not scheduled for want of room, its image being pulled...
	Waiting string    `json:"waiting,omitempty"`
	Created time.Time `json:"created"`
	// Spec is the spec the server was created from, as recorded on it by the driver;
	// its Hash is SpecHash unless the server was altered out of band.
	Spec ServerSpec `json:"spec"`
}

// Selector picks servers. The zero Selector matches every server of a service kiln
// manages (not a pipeline's candidates).
type Selector struct {
	Project string // "" for all projects
	Service string // "" for all services
	// Role is the servers' ServerSpec.Role, matched exactly: "" picks services'
	// servers only, RoleCandidate candidates only.
	Role string
}

// Matches reports whether s is selected.
func (sel Selector) Matches(s Server) bool {
	return (sel.Project == "" || sel.Project == s.Project) && (sel.Service == "" || sel.Service == s.Service) &&
		sel.Role == s.Spec.Role
}

// EventType is what happened to a server.
type EventType string

const (
	EventStart   EventType = "start"
	EventDie     EventType = "die"     // the process exited, for any reason
	EventDestroy EventType = "destroy" // the server was removed
	// EventExec: a process was started in the server from outside, or something
	// reached into it (docker exec, kubectl exec, attach or port-forward, a guest
	// agent's command). Its Detail starts with the runtime's own word for it: "exec"
	// for a process started ("exec_start: sh -c id"), else another ("attach by ...",
	// "portforward by ...").
	EventExec EventType = "exec"
	// EventChange: the server was altered out of band in another way: renamed,
	// paused, its limits updated...
	EventChange EventType = "change"
)

// Event is a runtime event about a server kiln manages.
type Event struct {
	Type     EventType `json:"type"`
	ServerID ServerID  `json:"server_id"`
	Project  string    `json:"project,omitempty"`
	Service  string    `json:"service"`
	Detail   string    `json:"detail,omitempty"`
	Time     time.Time `json:"time"`
}
