package sandbox

import (
	"context"
	"errors"
	"io"
)

// UID and GID are the user the command runs as: the "nonroot" user of distroless images.
const (
	UID = 65532
	GID = 65532
)

// ErrUnavailable means this machine cannot make a sandbox (no namespaces, or not
// allowed to make them). Callers that need isolation must fail on it, not run the command
// without one.
var ErrUnavailable = errors.New("cannot create a sandbox on this machine")

// Mount makes a host path visible in the sandbox.
type Mount struct {
	Source string // absolute host path: a directory or a file
	// Target is where it appears in the sandbox; Source when empty.
	Target string
	// Writable mounts read-write; everything else is read-only. Either way nothing on it
	// is set-uid or a device.
	Writable bool
}

// Command is what to run in a sandbox. Besides Mounts, the sandbox has a private /tmp
// (a tmpfs), /proc for its own processes, /dev/null, /dev/zero, /dev/random and
// /dev/urandom, and no network: not even loopback is up (unless Network).
type Command struct {
	// Path is the absolute path of the program in the sandbox; with LookPath, a name
	// without "/" looked up in Env's PATH inside the sandbox, as execvp does.
	Path     string
	LookPath bool
	Args     []string // Args[0] is the program's name
	Env      []string // the whole environment; nothing is inherited
	Dir      string   // working directory in the sandbox; "/" when empty
	Mounts   []Mount
	Stdout   io.Writer // nil: discarded
	Stderr   io.Writer // nil: discarded
	// Root, if set, is a host directory holding a whole root filesystem (an image's):
	// the sandbox's root is that tree, read-only, under Mounts, /proc, /tmp and the
	// devices. Their mount points are made in a throwaway layer above it (an overlay
	// whose upper layer is memory), so Root itself is never written, and a symlink on
	// the way to one is refused: the tree is an image's, and its links must not lead
	// the setup anywhere. When empty, the root is an empty tmpfs holding the mounts.
	Root string
	// Network shares the host's network namespace instead of a new one with no device
	// up: the program then reaches whatever the host reaches, loopback services
	// included. Only for commands that need it and are trusted with it.
	Network bool
	// Umask is the program's file creation mask; 0 means 077 (what it writes is its
	// own alone). 022 gives the modes a build tool usually writes.
	Umask int
}

// Run runs c in a new sandbox and waits for it. It kills the sandbox (all of its
// processes) when ctx is done. An error that wraps ErrUnavailable means the sandbox
// could not be made, and c did not run; an *exec.ExitError is c's own failure. The
// program must have called Init first thing in main (and a test binary, in TestMain).
func Run(ctx context.Context, c *Command) error { return run(ctx, c) }

// Init turns the process into a sandbox's first process when it was started as one
// by Run; it then never returns. Otherwise it returns at once. Call it first in main.
func Init() { initialized = true; child() }

var initialized bool
