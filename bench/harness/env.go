package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Env is one run of kiln-bench: the repository, a scratch directory, and the kiln
// binary built once for every scenario of the run.
type Env struct {
	Root   string // the repository's root
	Source string // the checkout kiln is built from: Root, or KILN_BENCH_SOURCE
	Work   string // scratch directory, removed by Close unless Keep
	Kiln   string // the kiln binary
	// ID names everything the run creates outside Work (containers, images, Swarm
	// services): "bench-<pid>".
	ID   string
	Keep bool
	Log  *slog.Logger
	// loaded are the images of kiln's image repository in Docker (kiln/img:<hex>) when
	// the run started: removeLoaded leaves them.
	loaded map[string]bool
}

// Setup creates the scratch directory under root/bench/.work and builds kiln from
// root/cmd/kiln into it. It blocks for the build.
func Setup(ctx context.Context, root string, log *slog.Logger) (*Env, error) {
	e := &Env{Root: root, ID: "bench-" + strconv.Itoa(os.Getpid()), Log: log}
	if err := os.MkdirAll(filepath.Join(root, "bench", ".work"), 0o755); err != nil {
		return nil, err
	}
	w, err := os.MkdirTemp(filepath.Join(root, "bench", ".work"), "run-")
	if err != nil {
		return nil, fmt.Errorf("creating the scratch directory: %w", err)
	}
	e.Work, e.Kiln = w, filepath.Join(w, "bin", "kiln")
	e.loaded = map[string]bool{}
	if out, err := e.Docker(ctx, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", loadedRepo); err == nil {
		for _, l := range splitLines(out) {
			e.loaded[l] = true
		}
	}
	// KILN_BENCH_SOURCE names another checkout of kiln to build and measure (an earlier
	// commit, to compare); the scenarios' projects still come from root.
	e.Source = root
	if src := os.Getenv("KILN_BENCH_SOURCE"); src != "" {
		e.Source = src
	}
	log.Info("building kiln", "from", filepath.Join(e.Source, "cmd", "kiln"))
	if _, err := e.Run(ctx, e.Source, nil, "go", "build", "-o", e.Kiln, "./cmd/kiln"); err != nil {
		e.Close()
		return nil, fmt.Errorf("building kiln: %w", err)
	}
	return e, nil
}

// loadedRepo is where kiln's Docker driver tags the images it loads:
// kiln/img:<hex of the manifest digest>.
const loadedRepo = "kiln/img"

// removeLoaded removes the images kiln loaded into Docker for these manifest digests,
// except those that were there when the run started; an image a container still uses
// stays (docker rmi refuses).
func (e *Env) removeLoaded(ctx context.Context, digests []string) {
	seen := map[string]bool{}
	for _, d := range digests {
		tag := loadedRepo + ":" + strings.TrimPrefix(d, "sha256:")
		if d == "" || seen[tag] || e.loaded[tag] {
			continue
		}
		seen[tag] = true
		if _, err := e.Docker(ctx, "rmi", tag); err != nil {
			e.Log.Debug("an image kiln loaded stays", "image", tag, "err", err)
		}
	}
}

// Close removes the scratch directory (unless Keep).
func (e *Env) Close() {
	if e.Keep {
		e.Log.Info("scratch directory kept", "dir", e.Work)
		return
	}
	os.RemoveAll(e.Work)
}

// Run runs a command in dir with env added to the harness's environment, and returns
// its standard output; a failure's error carries the end of its standard error.
func (e *Env) Run(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tail(stderr.String(), 600))
	}
	return out.String(), nil
}

// Docker runs the docker CLI.
func (e *Env) Docker(ctx context.Context, args ...string) (string, error) {
	return e.Run(ctx, e.Work, nil, "docker", args...)
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// FreePort returns a loopback port nobody listens on now.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ServiceOptions is one service of a scratch project: the example's service block
// with these settings.
type ServiceOptions struct {
	Name       string
	Replicas   int
	Interval   string // health check interval
	MinHealthy string // "" keeps the example's
	Memory     string // resources { memory }; "" for kiln's default
	Port       int    // the front door's loopback port
}

// Project is a scratch copy of examples/hello whose kiln.hcl has the image renamed (so
// that `kiln bake --load` does not replace the kiln/hello:latest other tests use) and
// the given services, one block each, rolling one at a time (max_surge 1).
type Project struct {
	env      *Env
	Dir      string
	Image    string
	Services []ServiceOptions
	// Env is added to the environment of every kiln command of the project (KILN_VAR_…).
	Env []string
}

// serviceBlock finds the example's service block.
var serviceBlock = regexp.MustCompile(`(?ms)^service "hello" \{\n.*?^\}\n`)

// Project writes the scratch project name under the scratch directory and checks it
// with `kiln validate`. Every edit of the example's kiln.hcl must apply: a changed
// example stops the run with a message, never measures something else.
func (e *Env) Project(ctx context.Context, name, image string, services ...ServiceOptions) (*Project, error) {
	dir, err := e.CopyExample(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "kiln.hcl"))
	if err != nil {
		return nil, err
	}
	src := string(b)
	tmpl := serviceBlock.FindString(src)
	if tmpl == "" {
		return nil, errors.New("examples/hello/kiln.hcl has no service \"hello\" block: has it changed shape?")
	}
	rest := serviceBlock.ReplaceAllString(src, "")
	rest, err = edit(rest, `(?m)^image "hello" \{`, `image "`+image+`" {`)
	if err != nil {
		return nil, err
	}
	var out strings.Builder
	out.WriteString(rest)
	for _, s := range services {
		blk, err := serviceSpec(tmpl, image, s)
		if err != nil {
			return nil, err
		}
		out.WriteString("\n" + blk)
	}
	if err := os.WriteFile(filepath.Join(dir, "kiln.hcl"), []byte(out.String()), 0o644); err != nil {
		return nil, err
	}
	if _, err := e.Run(ctx, dir, nil, e.Kiln, "validate"); err != nil {
		return nil, fmt.Errorf("the scratch project %s: %w", name, err)
	}
	return &Project{env: e, Dir: dir, Image: image, Services: services}, nil
}

func serviceSpec(tmpl, image string, s ServiceOptions) (string, error) {
	edits := [][2]string{
		{`(?m)^service "hello" \{`, fmt.Sprintf(`service %q {`, s.Name)},
		{`(?m)= image\.hello$`, "= image." + image},
		{`(?m)^(\s*replicas\s*=).*$`, fmt.Sprintf("${1} %d", s.Replicas)},
		{`(?m)^(\s*listen\s*=).*$`, fmt.Sprintf(`${1} "127.0.0.1:%d"`, s.Port)},
		{`(?m)^(\s*interval\s*=).*$`, fmt.Sprintf(`${1} %q`, s.Interval)},
		{`(?m)^(\s*max_surge\s*=).*$`, "${1} 1"},
		{`(?m)^(\s*strategy\s*=).*$`, `${1} "rolling"`},
	}
	if s.MinHealthy != "" {
		edits = append(edits, [2]string{`(?m)^(\s*min_healthy\s*=).*$`, fmt.Sprintf(`${1} %q`, s.MinHealthy)})
	}
	if s.Memory != "" {
		edits = append(edits, [2]string{`(?s)\n\}\n$`, fmt.Sprintf("\n\n  resources {\n    memory = %q\n  }\n}\n", s.Memory)})
	}
	blk := tmpl
	for _, ed := range edits {
		var err error
		if blk, err = edit(blk, ed[0], ed[1]); err != nil {
			return "", err
		}
	}
	return blk, nil
}

// edit replaces what pattern matches; an error when it matches nothing.
func edit(s, pattern, repl string) (string, error) {
	re := regexp.MustCompile(pattern)
	if !re.MatchString(s) {
		return "", fmt.Errorf("examples/hello/kiln.hcl has no line matching /%s/: has it changed shape?", pattern)
	}
	return re.ReplaceAllString(s, repl), nil
}

// CopyExample copies examples/hello to name under the scratch directory and returns
// the copy's path.
func (e *Env) CopyExample(name string) (string, error) {
	return e.copyExample("hello", name)
}

// copyExample copies examples/example to name under the scratch directory (its state
// directory left out) and returns the copy's path.
func (e *Env) copyExample(example, name string) (string, error) {
	dir := filepath.Join(e.Work, name)
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(e.Root, "examples", example))); err != nil {
		return "", fmt.Errorf("copying the example: %w", err)
	}
	return dir, os.RemoveAll(filepath.Join(dir, ".kiln"))
}

// Kiln runs the kiln CLI in the project with KILN_VAR_version=version.
func (p *Project) Kiln(ctx context.Context, version string, args ...string) (string, error) {
	return p.env.Run(ctx, p.Dir, append([]string{"KILN_VAR_version=" + version}, p.Env...), p.env.Kiln, args...)
}

// LoadImage bakes version of the project's image into Docker (`kiln bake --load`)
// and tags it tag.
func (p *Project) LoadImage(ctx context.Context, version, tag string) error {
	if _, err := p.Kiln(ctx, version, "bake", "--load"); err != nil {
		return err
	}
	if _, err := p.env.Docker(ctx, "tag", "kiln/"+p.Image+":latest", tag); err != nil {
		return err
	}
	p.env.Docker(ctx, "rmi", "kiln/"+p.Image+":latest")
	return nil
}

// logFile is where a long-running command of the project writes.
func (p *Project) logFile(name string) (io.WriteCloser, error) {
	return os.Create(filepath.Join(p.Dir, name))
}

// waitFor polls cond every interval until it returns true, an error, or timeout.
func waitFor(ctx context.Context, timeout, interval time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s (last error: %v)", what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
