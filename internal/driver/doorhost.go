package driver

import "context"

// DoorHost is implemented by runtimes that can keep a project's door process running
// apart from the daemon, supervised by the runtime itself: restarted when it exits and
// when the host restarts, whatever becomes of the daemon.
type DoorHost interface {
	// EnsureDoor makes the door of spec run, from spec's build, and returns once its
	// process is started (its control socket may take a moment to answer). A door of
	// the project that is running stays as it is when it is of spec.Build; one of
	// another build, or one that stopped, is replaced.
	EnsureDoor(ctx context.Context, spec DoorSpec) error
	// RemoveDoor stops and removes the project's door, if it has one.
	RemoveDoor(ctx context.Context, project string) error
}

// DoorSpec is a project's door process.
type DoorSpec struct {
	Project string
	// Dir is the door's directory on the host (its configuration, control socket and
	// certificate cache), which the door gets as its working directory.
	Dir string
	// Binary is kiln's executable on the host, run as `kiln door`; Build names it
	// (a digest of the file), and the door runs as User ("uid:gid").
	Binary string
	Build  string
	User   string
}
