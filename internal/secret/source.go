package secret

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// MaxSize bounds a secret's value.
const MaxSize = 1 << 20

// Source is where a secret's value comes from: exactly one of File, Env and Command.
type Source struct {
	Name string
	// File is read whole; a trailing newline is kept, as the file holds it.
	File string
	// Env names an environment variable of the process that resolves the secret: the
	// daemon's.
	Env string
	// Command is run (in Dir, with the daemon's environment) and its standard output,
	// without one trailing newline, is the value: a password manager's CLI.
	Command []string
	// Dir is the directory of the spec that declared the secret.
	Dir string
}

// Describe says where the secret comes from, never what it is.
func (s Source) Describe() string {
	switch {
	case s.File != "":
		return "file " + s.File
	case s.Env != "":
		return "environment variable " + s.Env
	case len(s.Command) > 0:
		return fmt.Sprintf("command %q", s.Command)
	}
	return "nowhere"
}

// Resolve reads the secret's value. Errors name the secret and its source, never any
// part of the value (a command's standard error is not quoted: it may echo it).
func Resolve(ctx context.Context, s Source) ([]byte, error) {
	v, err := s.resolve(ctx)
	if err != nil {
		return nil, fmt.Errorf("secret %q (from %s): %w", s.Name, s.Describe(), err)
	}
	if len(v) > MaxSize {
		return nil, fmt.Errorf("secret %q (from %s) is larger than %d bytes", s.Name, s.Describe(), MaxSize)
	}
	return v, nil
}

func (s Source) resolve(ctx context.Context) ([]byte, error) {
	switch {
	case s.File != "":
		p := s.File
		if !filepath.IsAbs(p) {
			p = filepath.Join(s.Dir, p)
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
			return nil, errors.New("not a regular file")
		}
		return io.ReadAll(io.LimitReader(f, MaxSize+1))
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok {
			return nil, errors.New("the variable is not set in the daemon's environment (kiln serve or kiln up must be started with it)")
		}
		return []byte(v), nil
	case len(s.Command) > 0:
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, s.Command[0], s.Command[1:]...)
		cmd.Dir = s.Dir
		var out bytes.Buffer
		cmd.Stdout = &limited{w: &out, n: MaxSize + 1}
		if err := cmd.Run(); err != nil {
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				return nil, fmt.Errorf("the command exited with status %d", exit.ExitCode())
			}
			return nil, err
		}
		return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
	}
	return nil, errors.New("the secret has no source: give file, env or command")
}

// limited writes at most n bytes to w and then drops the rest, so a runaway command
// cannot fill the daemon's memory.
type limited struct {
	w io.Writer
	n int64
}

func (l *limited) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return len(p), nil
	}
	q := p
	if int64(len(q)) > l.n {
		q = q[:l.n]
	}
	l.n -= int64(len(q))
	l.w.Write(q)
	return len(p), nil
}
