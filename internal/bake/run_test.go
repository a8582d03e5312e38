package bake

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/sandbox"
)

var (
	toolOnce sync.Once
	toolTar  []byte
	toolErr  error
)

// toolsTarball is the run tests' builder: a rootfs tarball holding /bin/tool
// (testdata/runtool, built static by the test), /etc and /tmp, dated and owned alike
// on every machine.
func toolsTarball(t *testing.T) []byte {
	t.Helper()
	toolOnce.Do(func() {
		tc, err := goToolchain()
		if err != nil {
			toolErr = err
			return
		}
		bin := filepath.Join(os.TempDir(), fmt.Sprintf("kiln-runtool-%d", os.Getpid()))
		defer os.Remove(bin)
		cmd := exec.Command(filepath.Join(tc.Root, "bin", "go"), "build", "-trimpath", "-o", bin, "./testdata/runtool")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			toolErr = fmt.Errorf("building the run tool: %v\n%s", err, out)
			return
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			toolErr = err
			return
		}
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		mtime := time.Unix(testEpoch, 0)
		for _, h := range []*tar.Header{
			{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "bin/tool", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data))},
			{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
			{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
		} {
			h.ModTime = mtime
			tw.WriteHeader(h)
			if h.Typeflag == tar.TypeReg {
				tw.Write(data)
			}
		}
		tw.Close()
		toolTar = buf.Bytes()
	})
	if toolErr != nil {
		t.Fatal(toolErr)
	}
	return toolTar
}

// needSandbox skips under -short where no sandbox can be made; otherwise such a machine
// fails the test, as it fails a run step.
func needSandbox(t *testing.T) {
	t.Helper()
	err := sandbox.Run(t.Context(), &sandbox.Command{Path: "/bin/true", Args: []string{"true"}, Mounts: []sandbox.Mount{{Source: "/usr"}}})
	if errors.Is(err, sandbox.ErrUnavailable) && testing.Short() {
		t.Skipf("no sandbox here: %v", err)
	}
}

// runSpec is a multi-stage spec: tools (the builder), build (a run step over it that
// counts its runs in its cache directory, writes a tree, "compiles" hello.txt and
// writes its environment), and app (scratch, with the program copied out of build).
const runSpec = `
image "tools" {
  from = "./tools.tar"
}

image "build" {
  from = image.tools

  run "make" {
    command = ["tool", "count", "/cache/runs", "--", "write", "/out/gen", "--", "build", "hello.txt", "/out/hello", "--", "env", "/out/env"]
    inputs  = ["hello.txt", "src"]
    outputs = ["/out"]
    cache   = ["/cache"]
    env     = { GREETING = "hi" }
  }
}

image "app" {
  from = "scratch"

  copy "/out/hello" {
    from = image.build
    to   = "/app/hello"
  }

  entrypoint = ["/app/hello"]
}
`

// runProject writes a project with spec (runSpec when "") into a new directory.
func runProject(t *testing.T, spec string) string {
	t.Helper()
	if spec == "" {
		spec = runSpec
	}
	dir := filepath.Join(t.TempDir(), "project")
	writeFile(t, filepath.Join(dir, "kiln.hcl"), spec)
	writeFile(t, filepath.Join(dir, "tools.tar"), string(toolsTarball(t)))
	writeFile(t, filepath.Join(dir, "hello.txt"), "hello from kiln\n")
	writeFile(t, filepath.Join(dir, "src", "main.c"), "int main(void) { return 0; }\n")
	return dir
}

// runs is how many times the build image's make step ran in dir's state directory, as
// the command itself counted them in its cache directory.
func runs(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ".kiln", "cache", "run", "build", "make", sha256Hex([]byte("/cache"))[:16], "runs"))
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// layerContent is the content of the file name in r's layers (the topmost).
func layerContent(t *testing.T, r *Result, name string) string {
	t.Helper()
	layers, _ := r.Image.Layers()
	out, found := "", false
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for h, err := tr.Next(); err == nil; h, err = tr.Next() {
			if h.Name == name {
				b, _ := io.ReadAll(tr)
				out, found = string(b), true
			}
		}
		rc.Close()
	}
	if !found {
		t.Fatalf("no %s in image %s", name, r.Name)
	}
	return out
}

// runImage runs argv in a sandbox over the filesystem of img and returns what it printed.
func runImage(t *testing.T, img v1.Image, argv ...string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := extractImage(img, root); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := sandbox.Run(t.Context(), &sandbox.Command{Path: argv[0], Args: argv, Root: root, Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out.String())
	}
	return out.String()
}

// TestRunStepMultiStage bakes a program with a run step over a builder image and copies
// it into a scratch image: the program runs there, alone; a warm bake runs no command;
// another checkout, and a cold re-run (whose command writes its tree in another order
// with other times), give the same digests.
func TestRunStepMultiStage(t *testing.T) {
	needSandbox(t)
	dir := runProject(t, "")
	cold := mustBake(t, dir, testEpoch)
	st := cold.stepStates()
	if st["build/run make"] != StateBuilt || st["app/copy image.build:/out/hello -> /app/hello"] != StateBuilt {
		t.Fatalf("cold bake: %v", st)
	}
	if n := runs(t, dir); n != 1 {
		t.Fatalf("the command ran %d times in a cold bake", n)
	}
	app, build := cold.result("app"), cold.result("build")
	if got := keys(layerFiles(t, app)); !slices.Equal(sortStrings(got), []string{"app/", "app/hello"}) {
		t.Errorf("the app image holds %v: only the program, no compiler", got)
	}
	if got := runImage(t, app.Image, "/app/hello"); got != "hello from kiln\n" {
		t.Errorf("the program printed %q", got)
	}
	env := layerContent(t, build, "out/env")
	for _, want := range []string{"GREETING=hi\n", "HOME=/tmp\n", "PATH=" + defaultPath + "\n", fmt.Sprintf("SOURCE_DATE_EPOCH=%d\n", testEpoch)} {
		if !strings.Contains(env, want) {
			t.Errorf("the command's environment lacks %q:\n%s", want, env)
		}
	}

	warm := mustBake(t, dir, testEpoch)
	for _, name := range []string{"build", "app"} {
		if r := warm.result(name); !r.Cached || r.Digest != cold.result(name).Digest {
			t.Errorf("warm bake of %s: cached %v, %s (cold %s)", name, r.Cached, r.Digest, cold.result(name).Digest)
		}
	}
	if n := runs(t, dir); n != 1 {
		t.Errorf("a warm bake ran the command: %d runs", n)
	}

	other := runProject(t, "")
	again := mustBake(t, other, testEpoch)
	for _, name := range []string{"build", "app"} {
		if got, want := again.result(name).Digest, cold.result(name).Digest; got != want {
			t.Errorf("image %s from another checkout: %s, want %s", name, got, want)
		}
	}

	// Without the layer cache, the command runs again (its cache directory kept: it
	// counts two runs), writing its tree anew: the same layer.
	if err := os.RemoveAll(filepath.Join(dir, ".kiln", "cache", "layers")); err != nil {
		t.Fatal(err)
	}
	rerun := mustBake(t, dir, testEpoch)
	if rerun.stepStates()["build/run make"] != StateBuilt || runs(t, dir) != 2 {
		t.Fatalf("a re-run: %v, %d runs", rerun.stepStates(), runs(t, dir))
	}
	if got, want := rerun.result("build").Digest, cold.result("build").Digest; got != want {
		t.Errorf("a re-run of the command: %s, want %s", got, want)
	}
}

func sortStrings(s []string) []string { slices.Sort(s); return s }

// TestRunOutputsAreNormalised reads the run step's layer: entries sorted, dated by the
// bake's epoch, owned by root, modes kept without set-uid, a symlink kept, and files
// linked twice as hard links to the first of their paths.
func TestRunOutputsAreNormalised(t *testing.T) {
	needSandbox(t)
	run := mustBake(t, runProject(t, ""), testEpoch)
	layers, _ := run.result("build").Image.Layers()
	rc, err := layers[len(layers)-1].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var names []string
	hdrs := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		names = append(names, h.Name)
		hdrs[h.Name] = h
		if !h.ModTime.Equal(time.Unix(testEpoch, 0)) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" {
			t.Errorf("%s: time %v, owner %d:%d %q", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("entries not sorted: %v", names)
	}
	for name, want := range map[string]struct {
		typ  byte
		mode int64
		link string
	}{
		"out/":               {tar.TypeDir, 0o755, ""},
		"out/gen/z.txt":      {tar.TypeReg, 0o750, ""},
		"out/gen/a.txt":      {tar.TypeReg, 0o644, ""},
		"out/gen/link":       {tar.TypeSymlink, 0o777, "a.txt"},
		"out/gen/a-hard.txt": {tar.TypeReg, 0o644, ""},
		"out/gen/b/c.txt":    {tar.TypeLink, 0o644, "out/gen/a-hard.txt"},
		"out/gen/b/hard.txt": {tar.TypeLink, 0o644, "out/gen/a-hard.txt"},
		"out/gen/b/d/e.txt":  {tar.TypeReg, 0o644, ""},
		"out/hello":          {tar.TypeReg, 0o755, ""},
		"out/gen/m/":         {tar.TypeDir, 0o755, ""},
		"out/gen/b/d/":       {tar.TypeDir, 0o755, ""},
		"out/env":            {tar.TypeReg, 0o644, ""},
		"out/gen/m/n.txt":    {tar.TypeReg, 0o644, ""},
		"out/gen/":           {tar.TypeDir, 0o755, ""},
		"out/gen/b/":         {tar.TypeDir, 0o755, ""},
	} {
		h := hdrs[name]
		if h == nil {
			t.Errorf("no %s in the layer (%v)", name, names)
			continue
		}
		if h.Typeflag != want.typ || h.Mode != want.mode || h.Linkname != want.link {
			t.Errorf("%s: type %q mode %o link %q, want %q %o %q", name, h.Typeflag, h.Mode, h.Linkname, want.typ, want.mode, want.link)
		}
	}
	if len(hdrs) != 15 {
		t.Errorf("the layer holds %d entries: %v", len(hdrs), names)
	}
}

// TestRunFailureSaysWhy: a failing command's error has the step's place in the spec, the
// exit status and the last lines it printed.
func TestRunFailureSaysWhy(t *testing.T) {
	needSandbox(t)
	dir := runProject(t, strings.Replace(runSpec, `command = ["tool", "count"`, `command = ["tool", "fail", "30", "--", "count"`, 1))
	_, err := bake(t, dir, testEpoch, nil)
	wantStepError(t, err, 9, `run make: the command "tool fail 30 -- count`)
	var re *RunError
	if !errors.As(err, &re) {
		t.Fatalf("%v is no RunError", err)
	}
	msg := err.Error()
	for _, want := range []string{"exit status 3", "its last lines of output:\n  line 10\n", "\n  line 29"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "line 9\n") {
		t.Errorf("the error shows more than the last %d lines:\n%s", runErrorLines, msg)
	}
	if n := runs(t, dir); n != 0 {
		t.Errorf("the command went on after failing: %d runs", n)
	}
}

// TestRunNetwork: with network off (the default) a command reaches nothing, not even the
// host's loopback; with network = true it shares the host's network.
func TestRunNetwork(t *testing.T) {
	needSandbox(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	step := func(network bool) string {
		return fmt.Sprintf(`
image "tools" {
  from = "./tools.tar"
}

image "build" {
  from = image.tools

  run "fetch" {
    command = ["tool", "dial", %q, "--", "count", "/out/ok"]
    outputs = ["/out"]
    network = %v
  }
}
`, ln.Addr().String(), network)
	}
	_, err = bake(t, runProject(t, step(false)), testEpoch, nil)
	wantStepError(t, err, 9, "network is unreachable")
	run, err := bake(t, runProject(t, step(true)), testEpoch, nil)
	if err != nil {
		t.Fatalf("with the network: %v", err)
	}
	if got := layerContent(t, run.result("build"), "out/ok"); got != "ran\n" {
		t.Errorf("out/ok: %q", got)
	}
}

// TestRunRefusals: a missing output, a program not in PATH, an output reached through a
// link out of the work directory.
func TestRunRefusals(t *testing.T) {
	needSandbox(t)
	for name, tc := range map[string]struct {
		command, outputs, want string
	}{
		"missing output":   {`["tool", "count", "/src/a.o"]`, `["b.o"]`, "the output /src/b.o is missing"},
		"not in PATH":      {`["cc", "-c", "main.c"]`, `["/out"]`, `the command "cc -c main.c" could not start: executing cc: not found in PATH (` + defaultPath + ")"},
		"output via link":  {`["tool", "symlink", "/etc", "/src/etc"]`, `["etc/passwd"]`, "the output /src/etc/passwd is reached through a symlink that leads out of /src"},
		"absolute program": {`["/usr/bin/cc"]`, `["/out"]`, "could not start: executing /usr/bin/cc: no such file"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := runProject(t, fmt.Sprintf(`
image "tools" {
  from = "./tools.tar"
}

image "build" {
  from = image.tools

  run "x" {
    command = %s
    outputs = %s
  }
}
`, tc.command, tc.outputs))
			_, err := bake(t, dir, testEpoch, nil)
			wantStepError(t, err, 9, tc.want)
		})
	}
}

// TestRunInputs: the inputs land in the work directory at their relative paths, with
// normalised modes and times, and the state directory is never among them; a confined
// bake (a pipeline's) gives the same layer, and refuses a step the network.
func TestRunInputs(t *testing.T) {
	needSandbox(t)
	const spec = `
image "tools" {
  from = "./tools.tar"
}

image "build" {
  from = image.tools

  run "all" {
    command = ["tool", "count", "/src/ran"]
    inputs  = ["."]
    outputs = ["."]
    network = %v
  }
}
`
	dir := runProject(t, fmt.Sprintf(spec, false))
	run := mustBake(t, dir, testEpoch)
	files := layerFiles(t, run.result("build"))
	var got []string
	for name := range files {
		if strings.HasPrefix(name, "src/") {
			got = append(got, name)
		}
	}
	want := []string{"src/", "src/hello.txt", "src/kiln.hcl", "src/ran", "src/src/", "src/src/main.c", "src/tools.tar"}
	if !slices.Equal(sortStrings(got), want) {
		t.Errorf("the work directory held %v, want %v", got, want)
	}
	if h := files["src/hello.txt"]; h.Mode != 0o644 {
		t.Errorf("an input's mode in the layer: %o", h.Mode)
	}

	checkout := runProject(t, fmt.Sprintf(spec, false))
	confinedRun, err := bakeWith(t, checkout, testEpoch, nil, Options{Confine: true, Root: checkout})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := confinedRun.result("build").Digest, run.result("build").Digest; got != want {
		t.Errorf("confined: %s, want %s", got, want)
	}
	pipeline := runProject(t, fmt.Sprintf(spec, true))
	_, err = bakeWith(t, pipeline, testEpoch, nil, Options{Confine: true, Root: pipeline})
	wantStepError(t, err, 9, "a pipeline's run step cannot have the network")
}
