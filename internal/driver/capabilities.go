package driver

import "io"

// Capable is implemented by drivers that say what they do. A driver that is not
// Capable claims nothing (CapabilitiesOf).
type Capable interface {
	// Capabilities is constant for the driver's life; it does not contact the runtime.
	Capabilities() Capabilities
}

// Capabilities are what a driver does beyond the core Driver contract: what the
// runtime enforces on every server, and what the driver can observe of one. The
// conformance suite (drivertest) holds a driver to what it claims.
//
// A driver may implement an optional interface without claiming it (a wrapper forwards
// every method to a driver that may lack it): callers rely on a capability, not on a
// type assertion alone. A claimed capability implies its interface.
type Capabilities struct {
	// Enforced on every server the driver creates: kiln's security defaults.
	ReadOnlyRoot bool // the root filesystem is read-only
	Tmpfs        bool // each ServerSpec.Writable path is a private writable tmpfs
	PIDsLimit    bool // Resources.PIDs is enforced
	MemoryLimit  bool // Resources.MemoryBytes is enforced
	CPULimit     bool // Resources.CPUs is enforced
	// NoPrivileges: all capabilities dropped, no privilege escalation, never
	// privileged, no host namespace.
	NoPrivileges bool
	// ProjectNetwork: servers of one project share a network no other project's
	// servers are on.
	ProjectNetwork bool
	// SecretFiles: ServerSpec.Files are given to the process as read-only files, and
	// neither their values nor Env's are recorded where the runtime's users read.
	SecretFiles bool

	// What the driver tells of its servers.
	LoadImages bool // it is an ImageLoader: Create finds only images given to it
	Events     bool // it is a Watcher reporting start, die and destroy
	ExecEvents bool // its Watcher reports EventExec for a process started from outside
	ConfigDiff bool // it is a Differ reporting DriftConfig
	FileDiff   bool // its Differ reports DriftFile for files changed outside Writable
	Logs       bool // it is a Logger
	Wait       bool // it is a Waiter
	Stop       bool // it is a Stopper
	Sets       bool // it is a SetDriver
	// Readiness: it is a Readier, running ServerSpec.Probe itself; kiln does not probe
	// its servers' addresses.
	Readiness bool
	// Traffic: it is a ServiceHost, carrying each service's traffic to the servers in
	// rotation.
	Traffic bool
}

// CapabilitiesOf is what d claims: its Capabilities if it is Capable, else none.
func CapabilitiesOf(d Driver) Capabilities {
	if c, ok := d.(Capable); ok {
		return c.Capabilities()
	}
	return Capabilities{}
}

// Close releases what d holds (connections, goroutines, a simulated runtime's
// servers) if it is an io.Closer, and is nil otherwise. A driver is not used after
// its Close. Closing a driver does not destroy real servers: they outlive kiln.
func Close(d Driver) error {
	if c, ok := d.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
