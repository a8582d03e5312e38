//go:build unix

package spec

import (
	"os"
	"syscall"
)

// openFlags opens spec files without blocking: opening a FIFO for reading would wait
// for a writer, and file() refuses FIFOs once it can look at what it opened.
const openFlags = os.O_RDONLY | syscall.O_NONBLOCK
