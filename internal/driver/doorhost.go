package driver

import "context"

// DoorHost is implemented by runtimes that can keep a project's door process running
// apart from the daemon, supervised by the runtime itself: restarted when it exits and
// when the host restarts, whatever becomes of the daemon.
type DoorHost interface {
	// EnsureDoor makes the door of spec run, from spec's build, and returns once its
	// process is started (its control socket may take a moment to answer). A running
	// door of spec.Build stays as it is; while one of another build runs, the new door
	// takes its listeners over (`kiln door --takeover`) and the caller retires it
	// (RetireDoors) once the new one answers; one that stopped is removed.
	EnsureDoor(ctx context.Context, spec DoorSpec) error
	// RetireDoors stops the project's doors of other builds than build, letting their
	// requests finish, and removes them.
	RetireDoors(ctx context.Context, project, build string) error
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
