package engine

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/driver"
)

// lastLines is how many lines of a server's output explain its exit.
const lastLines = 10

// ExitError means a server's process exited before it passed its health gate: a crash
// is not a timeout, and says why at once.
type ExitError struct {
	Server string
	Exit   driver.Exit
	// Lines are the last lines the server printed, oldest first.
	Lines []string
}

func (e *ExitError) Error() string {
	var b strings.Builder
	// The name is the caller's to give ("server NAME: ..."), as for any gate failure.
	fmt.Fprintf(&b, "exited (%s) before it became healthy", e.Exit)
	if len(e.Lines) > 0 {
		b.WriteString("; its last output:")
		for _, l := range e.Lines {
			b.WriteString("\n    " + l)
		}
	}
	return b.String()
}

// exited is the ExitError of server s, with its last lines of output if the driver can
// read them.
func (e *Engine) exited(ctx context.Context, s driver.Server, x driver.Exit) *ExitError {
	out := &ExitError{Server: s.Name, Exit: x}
	l, ok := e.opts.Driver.(driver.Logger)
	if !ok || !e.caps.Logs {
		return out
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	rc, err := l.Logs(ctx, s.ID, false)
	if err != nil {
		return out
	}
	defer rc.Close()
	out.Lines = lastLinesOf(rc, lastLines)
	return out
}

// lastLinesOf returns the last n lines of r, each cut to 300 bytes.
func lastLinesOf(r io.Reader, n int) []string {
	var lines []string
	sc := bufio.NewScanner(io.LimitReader(r, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if len(line) > 300 {
			line = line[:300] + "…"
		}
		if lines = append(lines, line); len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}
