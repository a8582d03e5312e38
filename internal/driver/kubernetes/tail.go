package kubernetes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/kiln-build/kiln/internal/atomicfile"
)

// maxLine is the longest line a follower returns; longer ones are skipped whole, and
// counted. An audit event of an exec has no request or response body, but it holds
// the request's headers (the API server takes up to 1 MiB of them) and its URI, which
// JSON may write at six bytes a byte ("<" is \u003c).
const maxLine = 8 << 20

// maxRead is the most a follower reads in one call: a log read again from its start
// (truncated, replaced) is taken a part at a time.
const maxRead = 32 << 20

// follower reads the lines appended to a file that is rotated (renamed away and made
// anew, as kube-apiserver's log rotation does) or truncated, as a log is. It is not
// safe for concurrent use.
type follower struct {
	path     string
	f        *os.File // nil while path could not be opened
	off      int64    // how far f has been read
	partial  []byte   // the start of a line whose end is not written yet
	skipping bool     // within a line longer than maxLine
	skipped  int      // lines longer than maxLine, since the last call of next
	state    string   // where the position is saved; "" for nowhere
	saved    position // the position last saved
	buf      []byte
}

// follow follows path from where an earlier follower saved in file state had read it
// (the same file, not shorter), so that what was appended meanwhile is read; else,
// or with state "", from its end: what it holds already is history. When path cannot
// be opened now, the error says why, and the follower opens it as soon as it can,
// from its start (the file is new then).
func follow(path, state string) (*follower, error) {
	t := &follower{path: path, state: state, buf: make([]byte, 64<<10)}
	f, err := os.Open(path)
	if err != nil {
		return t, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return t, err
	}
	// From the end, a line being written at this very moment is cut: its end does not
	// parse, and is skipped like any other line that is not an audit event.
	t.f, t.off = f, st.Size()
	if saved, ok := t.load(); ok && saved.File == fileID(st) && saved.Offset <= st.Size() {
		t.off = saved.Offset
	}
	t.saved = t.position(st)
	return t, nil
}

// position is where a follower has read to in a file: its device and inode, and the
// offset of the first line not returned yet.
type position struct {
	File   string `json:"file"`
	Offset int64  `json:"offset"`
}

// fileID names the file st is of, for as long as it exists: "" where unknown.
func fileID(st os.FileInfo) string {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d:%d", uint64(sys.Dev), uint64(sys.Ino))
	}
	return ""
}

func (t *follower) position(st os.FileInfo) position {
	off := t.off
	if !t.skipping {
		off -= int64(len(t.partial))
	}
	return position{File: fileID(st), Offset: off}
}

// load is the position saved in t.state.
func (t *follower) load() (position, bool) {
	var p position
	if t.state == "" {
		return p, false
	}
	b, err := os.ReadFile(t.state)
	return p, err == nil && json.Unmarshal(b, &p) == nil && p.File != ""
}

// save writes where t has read to in t.state, when it has moved.
func (t *follower) save() error {
	if t.state == "" || t.f == nil {
		return nil
	}
	st, err := t.f.Stat()
	if err != nil {
		return err
	}
	p := t.position(st)
	if p == t.saved || p.File == "" {
		return nil
	}
	b, _ := json.Marshal(p)
	if err := atomicfile.Write(t.state, b, 0o600); err != nil {
		return fmt.Errorf("saving how far the audit log was read: %w", err)
	}
	t.saved = p
	return nil
}

// next returns the complete lines appended since the last call, without their "\n";
// none when nothing was. A file rotated away is read to its end before the new one is
// opened and read from its start; a file shorter than what was read of it (truncated,
// or replaced by a copy) is read again from its start. An error (the file gone or
// unreadable) comes with the lines read before it, and the next call tries again.
func (t *follower) next() ([][]byte, error) {
	var lines [][]byte
	if t.f == nil {
		if err := t.reopen(); err != nil {
			return nil, err
		}
	}
	cur, err := t.f.Stat()
	if err != nil {
		return nil, err
	}
	now, err := os.Stat(t.path)
	switch {
	case err != nil:
		// Gone for now (between a rotation's rename and its new file, or removed):
		// what the old file still gets is read below.
	case !os.SameFile(cur, now):
		lines, err = t.read(lines)
		t.f.Close()
		t.f = nil
		if err == nil {
			err = t.reopen()
		}
		if err != nil {
			return lines, err
		}
	case now.Size() < t.off:
		t.off, t.partial, t.skipping = 0, nil, false
	}
	lines, rerr := t.read(lines)
	return lines, errors.Join(err, rerr)
}

// reopen opens path from its start.
func (t *follower) reopen() error {
	f, err := os.Open(t.path)
	if err != nil {
		return err
	}
	t.f, t.off, t.partial, t.skipping = f, 0, nil, false
	return nil
}

// read appends to lines those of f from t.off to its end, or to maxRead further.
func (t *follower) read(lines [][]byte) ([][]byte, error) {
	for start := t.off; t.off-start < maxRead; {
		n, err := t.f.ReadAt(t.buf, t.off)
		t.off += int64(n)
		lines = t.split(lines, t.buf[:n])
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return lines, err
		}
	}
	return lines, nil
}

// split appends to lines those b ends, keeping the start of one it does not end.
func (t *follower) split(lines [][]byte, b []byte) [][]byte {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if t.skipping || len(t.partial)+len(b) > maxLine {
				if !t.skipping {
					t.skipped++
				}
				t.partial, t.skipping = nil, true
			} else {
				t.partial = append(t.partial, b...)
			}
			return lines
		}
		switch {
		case t.skipping:
		case len(t.partial)+i > maxLine:
			t.skipped++
		default:
			line := append(t.partial, b[:i]...) // a copy: t.buf is read into again
			lines = append(lines, line)
		}
		t.partial, t.skipping = nil, false
		b = b[i+1:]
	}
	return lines
}

// close closes the file.
func (t *follower) close() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}
