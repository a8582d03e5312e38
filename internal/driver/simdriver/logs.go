package simdriver

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/kiln-build/kiln/internal/driver"
)

// maxLines is how many lines of its log a server keeps.
const maxLines = 1000

// logbuf is what a process printed: its last maxLines lines.
type logbuf struct {
	mu    sync.Mutex
	lines []string
	total int // lines ever printed
	// changed is closed (and replaced) when a line is added or the log ends.
	changed chan struct{}
	ended   bool // the process has ended: no line comes after
}

func newLogbuf() *logbuf { return &logbuf{changed: make(chan struct{})} }

func (l *logbuf) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return
	}
	l.lines = append(l.lines, line)
	if len(l.lines) > maxLines {
		l.lines = slices.Delete(l.lines, 0, len(l.lines)-maxLines)
	}
	l.total++
	close(l.changed)
	l.changed = make(chan struct{})
}

// end marks that no line comes after, and wakes the followers.
func (l *logbuf) end() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ended {
		l.ended = true
		close(l.changed)
		l.changed = make(chan struct{})
	}
}

// since returns the lines printed after the first n (those still kept), how many were
// printed in all, a channel closed at the next change, and whether the log has ended.
func (l *logbuf) since(n int) (lines []string, total int, changed <-chan struct{}, ended bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := l.total - len(l.lines) // the number of the first line kept
	lines = slices.Clone(l.lines[max(n-first, 0):])
	return lines, l.total, l.changed, l.ended
}

// Logs returns what the server printed: its last lines, and with follow those it
// prints next, until ctx ends, the reader is closed, or its process ends. ErrNotFound
// if there is no such server (destroyed ones included).
func (d *Driver) Logs(ctx context.Context, id driver.ServerID, follow bool) (io.ReadCloser, error) {
	d.mu.Lock()
	s := d.servers[id]
	d.mu.Unlock()
	if s == nil {
		return nil, fmt.Errorf("logs of %s: %w", id, driver.ErrNotFound)
	}
	l := s.proc.logs
	lines, n, changed, ended := l.since(0)
	if !follow {
		return io.NopCloser(strings.NewReader(join(lines))), nil
	}
	pr, pw := io.Pipe()
	closed := make(chan struct{})
	go func() {
		for {
			if len(lines) > 0 {
				if _, err := io.WriteString(pw, join(lines)); err != nil {
					return // the reader is closed
				}
			}
			if ended {
				pw.Close()
				return
			}
			select {
			case <-ctx.Done():
				pw.Close()
				return
			case <-closed:
				return
			case <-changed:
			}
			lines, n, changed, ended = l.since(n)
		}
	}()
	return &follower{PipeReader: pr, closed: closed}, nil
}

func join(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// follower is a followed log; Close ends the goroutine that writes it.
type follower struct {
	*io.PipeReader
	once   sync.Once
	closed chan struct{}
}

func (f *follower) Close() error {
	f.once.Do(func() { close(f.closed) })
	return f.PipeReader.Close()
}
