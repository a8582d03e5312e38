//go:build !unix

package spec

import "os"

// openFlags opens spec files for reading (see open_unix.go).
const openFlags = os.O_RDONLY
