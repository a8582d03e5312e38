package daemon

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/kiln-build/kiln/internal/atomicfile"
)

// ListenFile remembers, in the state directory, the address the project's API and
// dashboard last listened on, so the dashboard's URL survives a restart. Unlike
// api.addr it stays when the daemon stops.
const ListenFile = "api.listen"

// DefaultListen is where the API and the dashboard listen the first time, unless told
// otherwise; a free port when another daemon has it.
const DefaultListen = "127.0.0.1:7777"

// listenAPI opens the API's listener: on flag when given (and only there); else on the
// address remembered in stateDir, else on DefaultListen; else, when that is taken, on a
// free port, saying so on notes. The address bound is remembered for the next start.
func listenAPI(stateDir, flag string, notes io.Writer) (net.Listener, error) {
	remembered := filepath.Join(stateDir, ListenFile)
	want, source := flag, "--listen"
	if want == "" {
		want, source = DefaultListen, ""
		if b, err := os.ReadFile(remembered); err == nil && strings.TrimSpace(string(b)) != "" {
			want, source = strings.TrimSpace(string(b)), remembered
		}
	}
	host, _, err := net.SplitHostPort(want)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		if source == remembered {
			// Not kiln's writing: forget it rather than refuse to start.
			fmt.Fprintf(notes, "kiln: ignoring %s (%q is not a loopback address)\n", remembered, want)
			want, source = DefaultListen, ""
		} else {
			return nil, fmt.Errorf("--listen %s: the API listens on loopback only (e.g. 127.0.0.1:7777)", want)
		}
	}
	ln, err := net.Listen("tcp", want)
	if err != nil && source != "--listen" {
		// Another process has the address; any free port will do, and is remembered.
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err == nil {
			if source == remembered {
				fmt.Fprintf(notes, "kiln: %s, where this project's dashboard was, is taken; listening on %s instead (remembered in %s)\n",
					want, ln.Addr(), remembered)
			} else {
				fmt.Fprintf(notes, "kiln: %s is taken; listening on %s instead (remembered in %s)\n", want, ln.Addr(), remembered)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("the API cannot listen on %s: %w", want, err)
	}
	if err := atomicfile.Write(remembered, []byte(ln.Addr().String()+"\n"), 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("remembering the API's address: %w", err)
	}
	return ln, nil
}
