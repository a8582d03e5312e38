package bake

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/kiln-build/kiln/internal/sandbox"
	"github.com/kiln-build/kiln/internal/spec"
)

// runStep is a run step ready to be keyed and run: its builder (the image's base, whose
// filesystem is the sandbox's root), the environment the command gets, and the inputs
// as they land in the work directory.
type runStep struct {
	img     *spec.Image
	r       *spec.Run
	builder v1.Image
	layers  []v1.Hash // the builder's diff IDs: what its filesystem is
	env     []string
	inputs  []entry
	epoch   int64
}

// stepInputs is what steps take besides the spec and the host's files: a run step's
// builder is the image's base, a copy from an image reads an image baked before.
type stepInputs struct {
	base   base
	images map[string]*Result
}

// imagesStep keys a step that works on images (a run step, a copy from an image) and
// returns how to build its entries; *done is set to what removes the files they read.
func (b *Baker) imagesStep(ctx context.Context, h *hostFiles, img *spec.Image, st spec.Step, epoch int64, in stepInputs, done *func()) (string, func() ([]entry, *goRecord, error), error) {
	switch st := st.(type) {
	case *spec.Run:
		rs, err := b.newRunStep(img, st, in.base, h, epoch)
		if err != nil {
			return "", nil, err
		}
		return rs.key(), func() (entries []entry, _ *goRecord, err error) {
			entries, *done, err = b.run(ctx, rs)
			return entries, nil, err
		}, nil
	case *spec.CopyFrom:
		src := in.images[st.Image]
		if src == nil {
			return "", nil, fmt.Errorf("image %q was not baked", st.Image)
		}
		layers, err := diffIDs(src.Image)
		if err != nil {
			return "", nil, err
		}
		return copyFromKey(st, layers, epoch), func() (entries []entry, _ *goRecord, err error) {
			entries, *done, err = copyFromImage(st, src.Image, b.tmp, headerCache{dir: filepath.Join(b.store.StateDir(), "cache", "headers")})
			return entries, nil, err
		}, nil
	}
	return "", nil, fmt.Errorf("unknown step %T", st)
}

// defaultPath is the command's PATH when neither the builder nor the step sets one.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// newRunStep prepares st of img over the base bs; epoch is the bake's file time, given to
// the command as SOURCE_DATE_EPOCH unless its env says otherwise.
func (b *Baker) newRunStep(img *spec.Image, st *spec.Run, bs base, h *hostFiles, epoch int64) (*runStep, error) {
	if b.opts.Confine && st.Network {
		return nil, errors.New("a pipeline's run step cannot have the network")
	}
	builder, err := b.builderImage(bs)
	if err != nil {
		return nil, err
	}
	layers, err := diffIDs(builder)
	if err != nil {
		return nil, fmt.Errorf("reading the builder image: %w", err)
	}
	if len(layers) == 0 {
		return nil, errors.New("the image's base is empty (scratch): a run step needs a base with its command, such as an image of the spec with packages")
	}
	cf, err := builder.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the builder image's configuration: %w", err)
	}
	env := mergeEnv(cf.Config.Env, st.Env)
	for _, kv := range []string{"PATH=" + defaultPath, "HOME=/tmp", "SOURCE_DATE_EPOCH=" + strconv.FormatInt(epoch, 10)} {
		k, _, _ := strings.Cut(kv, "=")
		if !hasEnv(env, k) {
			env = append(env, kv)
		}
	}
	s := &runStep{img: img, r: st, builder: builder, layers: layers, env: env, epoch: epoch}
	for _, in := range st.Inputs {
		c := &spec.Copy{
			Source: in.Source, Path: in.Path,
			To:      path.Join(st.Workdir, filepath.ToSlash(filepath.Clean(in.Source))),
			Exclude: []string{".kiln"}, // a state directory is never an input, at any depth
		}
		entries, err := copyEntries(c, h)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", in.Source, err)
		}
		s.inputs = append(s.inputs, entries...)
	}
	return s, nil
}

func hasEnv(env []string, k string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, k+"=") {
			return true
		}
	}
	return false
}

// builderImage is bs as an image: its layers read from a file or the engine included.
func (b *Baker) builderImage(bs base) (v1.Image, error) {
	if len(bs.layers) == 0 {
		return bs.img, nil
	}
	var ls []v1.Layer
	for _, bl := range bs.layers {
		ls = append(ls, &storedLayer{s: b.store, d: bl.Layer})
	}
	return mutate.AppendLayers(bs.img, ls...)
}

// key hashes everything the step's layer is made from: the builder's filesystem, the
// command, its environment (the builder's, the step's and kiln's defaults), the work
// directory, the outputs, the network and cache directories asked for, the inputs'
// paths, modes and contents, the epoch, and the user it runs as. What the cache
// directories hold is not part of it: they make a command faster, not different.
func (s *runStep) key() string {
	return key(map[string]any{
		"kind": "run", "builder": s.layers, "command": s.r.Command, "env": s.env,
		"workdir": s.r.Workdir, "outputs": s.r.Outputs, "network": s.r.Network, "cache": s.r.Cache,
		"inputs": entriesKey("inputs", s.epoch, s.inputs), "epoch": s.epoch, "uid": sandbox.UID,
	})
}

// RunError is a run step's command that failed; Output is the end of what it printed.
type RunError struct {
	Step    string
	Command []string
	Output  string
	Err     error
}

// runErrorLines is how many of the command's last lines a RunError shows.
const runErrorLines = 20

func (e *RunError) Error() string {
	lines := strings.Split(strings.TrimRight(e.Output, "\n"), "\n")
	if len(lines) > runErrorLines {
		lines = lines[len(lines)-runErrorLines:]
	}
	out := "it printed nothing"
	if strings.TrimSpace(e.Output) != "" {
		out = "its last lines of output:\n  " + strings.Join(lines, "\n  ")
	}
	var exit *exec.ExitError
	if !errors.As(e.Err, &exit) {
		return fmt.Sprintf("the command %q could not start: %v", strings.Join(e.Command, " "), strings.TrimPrefix(e.Err.Error(), "sandbox: "))
	}
	return fmt.Sprintf("the command %q failed: %v; %s", strings.Join(e.Command, " "), e.Err, out)
}

func (e *RunError) Unwrap() error { return e.Err }

// run runs the step's command in a sandbox over the builder's filesystem and returns the
// entries of its outputs, which read files of a temporary directory that done removes
// (after the layer is written).
func (b *Baker) run(ctx context.Context, s *runStep) (entries []entry, done func(), err error) {
	r := s.r
	rootfs, err := b.rootfsDir(s.builder)
	if err != nil {
		return nil, nil, err
	}
	tmp, err := os.MkdirTemp(b.tmp, "run-")
	if err != nil {
		return nil, nil, err
	}
	var closers []func()
	cleanup := func() {
		for _, c := range closers {
			c()
		}
		removeTree(tmp)
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	work := filepath.Join(tmp, "work")
	if err := writeInputs(work, r.Workdir, s.inputs, s.epoch); err != nil {
		return nil, nil, fmt.Errorf("copying the inputs into the work directory: %w", err)
	}
	if err := sandbox.OwnTree(work); err != nil {
		return nil, nil, err
	}
	mounts := []sandbox.Mount{{Source: work, Target: r.Workdir, Writable: true}}
	var outs []outputDir
	workFiles, err := openHostFiles(work, true)
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, workFiles.close)
	for i, o := range r.Outputs {
		if rel, ok := under(o, r.Workdir); ok {
			outs = append(outs, outputDir{files: workFiles, in: r.Workdir, rel: rel, at: o})
			continue
		}
		d := filepath.Join(tmp, "out-"+strconv.Itoa(i))
		if err := mkdirMode(d, 0o755); err != nil {
			return nil, nil, err
		}
		if err := sandbox.Own(d); err != nil {
			return nil, nil, err
		}
		f, err := openHostFiles(d, true)
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, f.close)
		mounts = append(mounts, sandbox.Mount{Source: d, Target: o, Writable: true})
		outs = append(outs, outputDir{files: f, in: o, rel: ".", at: o})
	}
	for _, c := range r.Cache {
		d := filepath.Join(b.runCacheDir(), s.img.Name, r.Name, sha256Hex([]byte(c))[:16])
		if err := os.MkdirAll(d, dirPerm); err != nil {
			return nil, nil, fmt.Errorf("creating the cache directory %s: %w", c, err)
		}
		if err := sandbox.Own(d); err != nil {
			return nil, nil, err
		}
		mounts = append(mounts, sandbox.Mount{Source: d, Target: c, Writable: true})
	}
	if r.Network {
		mounts = append(mounts, resolverMounts(rootfs)...)
	}
	var output tail
	err = sandbox.Run(ctx, &sandbox.Command{
		Path: r.Command[0], LookPath: true, Args: r.Command, Env: s.env, Dir: r.Workdir,
		Mounts: mounts, Root: rootfs, Network: r.Network, Umask: 0o022,
		Stdout: &output, Stderr: &output,
	})
	switch {
	case ctx.Err() != nil:
		return nil, nil, ctx.Err()
	case errors.Is(err, sandbox.ErrUnavailable):
		return nil, nil, fmt.Errorf("this bake runs commands only in a sandbox, and none can be made here: %w", err)
	case err != nil:
		return nil, nil, &RunError{Step: r.Name, Command: r.Command, Output: output.String(), Err: err}
	}
	entries, err = collectOutputs(outs, maxCopyBytes)
	if err != nil {
		return nil, nil, err
	}
	return entries, cleanup, nil
}

// under reports whether p is dir or below it, and p relative to dir in slash form.
func under(p, dir string) (string, bool) {
	if p == dir {
		return ".", true
	}
	rel, ok := strings.CutPrefix(p, strings.TrimSuffix(dir, "/")+"/")
	return rel, ok
}

// runCacheDir holds the run steps' cache directories, one per image, step and path.
func (b *Baker) runCacheDir() string {
	if b.opts.RunCache != "" {
		return b.opts.RunCache
	}
	return filepath.Join(b.store.StateDir(), "cache", "run")
}

// mkdirMode makes the directory d with exactly mode, whatever the umask (the daemon's is
// 077).
func mkdirMode(d string, mode os.FileMode) error {
	if err := os.Mkdir(d, mode); err != nil {
		return err
	}
	return os.Chmod(d, mode)
}

// writeInputs writes the input entries (paths under workdir in the sandbox) into the new
// directory work, through an os.Root so that an input's symlink cannot lead a later
// input's write out of it: modes as the entries say, directories made for every parent
// (0755), every time set to epoch. The command sees its inputs the same on every
// machine, whatever the host's umask or clock.
func writeInputs(work, workdir string, inputs []entry, epoch int64) error {
	if err := mkdirMode(work, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(work)
	if err != nil {
		return err
	}
	defer root.Close()
	var timed []string
	for _, e := range withParents(inputs) {
		rel, ok := under(e.Path, workdir)
		if !ok {
			continue // a parent of the work directory
		}
		switch e.Type {
		case tar.TypeDir:
			if rel != "." {
				if err := root.Mkdir(rel, 0o755); err != nil && !os.IsExist(err) {
					return err
				}
			}
		case tar.TypeReg:
			root.Remove(rel)
			f, err := root.OpenFile(rel, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			err = copyEntry(f, &e)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", e.Path, err)
			}
		case tar.TypeSymlink:
			root.Remove(rel)
			if err := root.Symlink(e.Link, rel); err != nil {
				return err
			}
			continue
		}
		if err := root.Chmod(rel, os.FileMode(e.Mode&0o777)); err != nil {
			return err
		}
		timed = append(timed, rel)
	}
	t := time.Unix(epoch, 0)
	for i := len(timed) - 1; i >= 0; i-- {
		if err := root.Chtimes(timed[i], t, t); err != nil {
			return err
		}
	}
	return nil
}

func copyEntry(w io.Writer, e *entry) error {
	r, err := e.reader()
	if err != nil {
		return err
	}
	defer r.Close()
	n, err := io.Copy(w, io.LimitReader(r, e.Size+1))
	if err == nil && n != e.Size {
		err = fmt.Errorf("changed size while being read (%d bytes, expected %d): bake again", n, e.Size)
	}
	return err
}

// resolverMounts give a step with the network the host's name resolution: its
// /etc/resolv.conf and /etc/hosts, read-only, where the builder's are files or missing
// (a builder's symlink there is left as it is: mount points are never reached through
// links).
func resolverMounts(rootfs string) []sandbox.Mount {
	var out []sandbox.Mount
	for _, f := range []string{"/etc/resolv.conf", "/etc/hosts"} {
		if info, err := os.Lstat(filepath.Join(rootfs, f)); err == nil && !info.Mode().IsRegular() {
			continue
		}
		if info, err := os.Lstat(filepath.Join(rootfs, "etc")); err == nil && !info.IsDir() {
			continue
		}
		src, err := filepath.EvalSymlinks(f)
		if err != nil {
			continue
		}
		if info, err := os.Stat(src); err == nil && info.Mode().IsRegular() {
			out = append(out, sandbox.Mount{Source: src, Target: f})
		}
	}
	return out
}

// tail keeps the last tailBytes bytes written to it.
type tail struct{ b []byte }

const tailBytes = 64 << 10

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 2*tailBytes {
		t.b = append([]byte(nil), t.b[len(t.b)-tailBytes:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	if len(t.b) > tailBytes {
		return string(t.b[len(t.b)-tailBytes:])
	}
	return string(t.b)
}
