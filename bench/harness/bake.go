package harness

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

const (
	koVersion    = "v0.19.1"
	craneVersion = "v0.22.1"
	goLDFlags    = "-s -w -X main.version=dev"
	// sourceDateEpoch is fixed while timing: kiln and ko honour it.
	sourceDateEpoch = "1700000000"
)

// marker is appended to every copy's main.go: the edit case rewrites its first line,
// and init keeps it in the binary, so an edit changes the package, the binary and the
// image.
const marker = `
// Appended by kiln-bench; its "edit" case rewrites the next line.
var benchMarker = "kiln-bench-0"

var benchSink string

func init() { benchSink = benchMarker }
`

var markerLine = regexp.MustCompile(`(?m)^var benchMarker = "kiln-bench-\d+"$`)

// baker is one tool of the bake scenario.
type baker struct {
	name  string
	dir   string
	build func(ctx context.Context) error
	clean func(ctx context.Context) error
}

// Bake builds the example's server image with kiln, ko and go build + docker build, in
// the same run, in three cases: cold (the tool's own state removed, Go's build cache
// warm), noop (nothing changed) and edit (one line of main.go changed).
func Bake(ctx context.Context, e *Env, o Options) (*Result, error) {
	r := e.newResult(ctx, "bake", "kiln bake vs ko build vs docker build", o)
	r.Notes = []string{
		"Wall-clock seconds of one build of the example (examples/hello); one untimed warm-up before each cell. The three tools share a private, warm Go build cache (`GOCACHE` in the scratch directory), `CGO_ENABLED=0` and `SOURCE_DATE_EPOCH`; each has its own copy of the example.",
		"*cold*: before each run the tool's own state is removed: kiln's `.kiln/`, ko's OCI layout, docker's images (by label) and the built binary (the legacy builder has no cache to empty; with BuildKit the cold build runs with `--no-cache`). *noop*: nothing changed. *edit*: one line of main.go changed, a new value every run (a marker kept in the binary).",
		"kiln: `kiln bake` (built once from ./cmd/kiln). ko " + koVersion + ": `ko build --bare --push=false --oci-layout-path DIR .`, ldflags through .ko.yaml, static/ as kodata/, its base a zero-layer image in a local `crane registry serve`. docker: `go build -trimpath` then `docker build -q --iidfile` of a `FROM scratch` Dockerfile mirroring kiln.hcl.",
		"Not ported from bench/bake.sh: the cold-go case (Go's build cache emptied too) and the digest reproducibility check.",
		"The machine is shared with other engineers running tests: a concurrent `go test` easily doubles a build's time.",
	}
	env := []string{"GOCACHE=" + filepath.Join(e.Work, "gocache"), "CGO_ENABLED=0", "SOURCE_DATE_EPOCH=" + sourceDateEpoch, "GOFLAGS="}
	var tools []baker
	if o.want("kiln") {
		t, err := e.kilnBaker(ctx, env)
		if err != nil {
			return nil, err
		}
		tools = append(tools, t)
	}
	if o.want("ko") {
		t, stop, err := e.koBaker(ctx, env)
		if err != nil {
			r.Failf("ko: %v", err)
		} else {
			defer stop()
			tools = append(tools, t)
		}
	}
	if o.want("docker") {
		t, stop, err := e.dockerBaker(ctx, env)
		if err != nil {
			r.Failf("docker: %v", err)
		} else {
			defer stop()
			tools = append(tools, t)
		}
	}
	edits := 0
	cases := []struct {
		name    string
		prepare func(ctx context.Context, t baker) error
	}{
		{"cold", func(ctx context.Context, t baker) error { return t.clean(ctx) }},
		{"noop", func(context.Context, baker) error { return nil }},
		{"edit", func(_ context.Context, t baker) error {
			edits++
			return editMarker(t.dir, edits)
		}},
	}
	for _, c := range cases {
		// Tools run one after another for each case, so slow drift of the machine is
		// spread over all of them.
		for _, t := range tools {
			if err := c.prepare(ctx, t); err == nil {
				err = t.build(ctx) // warm-up
			}
			for run := 1; run <= o.Runs; run++ {
				if err := c.prepare(ctx, t); err != nil {
					r.Failf("%s %s run %d: preparing: %v", t.name, c.name, run, err)
					continue
				}
				t0 := time.Now()
				if err := t.build(ctx); err != nil {
					r.Failf("%s %s run %d: %v", t.name, c.name, run, err)
					continue
				}
				r.Add(t.name, c.name, "s", time.Since(t0).Seconds())
			}
			m, _ := r.Median(t.name, c.name)
			e.Log.Info("bake", "tool", t.name, "case", c.name, "median_seconds", m)
		}
		for _, peer := range []string{"ko", "docker"} {
			r.AddRatio(fmt.Sprintf("kiln / %s, %s", peer, c.name), "kiln", peer, c.name)
		}
	}
	return e.finish(ctx, r), nil
}

func editMarker(dir string, n int) error {
	f := filepath.Join(dir, "main.go")
	b, err := os.ReadFile(f)
	if err != nil {
		return err
	}
	if !markerLine.Match(b) {
		return errors.New("main.go has no benchMarker line")
	}
	b = markerLine.ReplaceAll(b, []byte(`var benchMarker = "kiln-bench-`+strconv.Itoa(n)+`"`))
	return os.WriteFile(f, b, 0o644)
}

func appendMarker(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, "main.go"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(marker)
	return errors.Join(err, f.Close())
}

func (e *Env) kilnBaker(ctx context.Context, env []string) (baker, error) {
	p, err := e.Project(ctx, "bake-kiln", "bench-bake-hello", ServiceOptions{Name: e.ID + "-bake", Replicas: 1, Interval: "1s", Port: 1})
	if err != nil {
		return baker{}, err
	}
	if err := appendMarker(p.Dir); err != nil {
		return baker{}, err
	}
	return baker{name: "kiln", dir: p.Dir,
		build: func(ctx context.Context) error {
			_, err := e.Run(ctx, p.Dir, env, e.Kiln, "bake")
			return err
		},
		clean: func(context.Context) error { return os.RemoveAll(filepath.Join(p.Dir, ".kiln")) },
	}, nil
}

// tool returns the path of a Go tool in bench/.tools, installing it there first with
// `go install` (through the module proxy) when it is missing.
func (e *Env) tool(ctx context.Context, name, pkg, version string) (string, error) {
	dir := filepath.Join(e.Root, "bench", ".tools")
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	e.Log.Info("installing a tool", "tool", name, "package", pkg+"@"+version, "dir", dir)
	if _, err := e.Run(ctx, os.TempDir(), []string{"GOBIN=" + dir, "GOFLAGS="}, "go", "install", pkg+"@"+version); err != nil {
		return "", err
	}
	return path, nil
}

func (e *Env) koBaker(ctx context.Context, env []string) (baker, func(), error) {
	ko, err := e.tool(ctx, "ko", "github.com/google/ko", koVersion)
	if err != nil {
		return baker{}, nil, err
	}
	crane, err := e.tool(ctx, "crane", "github.com/google/go-containerregistry/cmd/crane", craneVersion)
	if err != nil {
		return baker{}, nil, err
	}
	port, err := FreePort()
	if err != nil {
		return baker{}, nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	reg := exec.Command(crane, "registry", "serve", "--address", addr)
	if err := reg.Start(); err != nil {
		return baker{}, nil, fmt.Errorf("crane registry serve: %w", err)
	}
	stop := func() { reg.Process.Kill(); reg.Wait() }
	err = waitFor(ctx, 10*time.Second, 50*time.Millisecond, "crane registry serve", func() (bool, error) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil, err
	})
	var layout string
	if err == nil {
		layout, err = scratchLayout(filepath.Join(e.Work, "scratch-layout"))
	}
	if err == nil {
		_, err = e.Run(ctx, e.Work, nil, crane, "push", layout, addr+"/scratch:latest")
	}
	var dir string
	if err == nil {
		dir, err = e.CopyExample("bake-ko/src")
	}
	if err == nil {
		err = appendMarker(dir)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, ".ko.yaml"), []byte("builds:\n- id: hello\n  main: .\n  ldflags: [\""+goLDFlags+"\"]\n"), 0o644)
	}
	if err == nil {
		err = os.CopyFS(filepath.Join(dir, "kodata"), os.DirFS(filepath.Join(dir, "static")))
	}
	if err != nil {
		stop()
		return baker{}, nil, err
	}
	koEnv := append(env, "KO_DEFAULTBASEIMAGE="+addr+"/scratch:latest", "KO_DOCKER_REPO="+addr+"/hello")
	return baker{name: "ko", dir: dir,
		build: func(ctx context.Context) error {
			// A relative layout path: ko turns it into an image reference, which must be
			// lower case, and the absolute scratch path may not be.
			_, err := e.Run(ctx, dir, koEnv, ko, "build", "--bare", "--push=false", "--oci-layout-path", "../layout", ".")
			return err
		},
		clean: func(context.Context) error { return os.RemoveAll(filepath.Join(dir, "..", "layout")) },
	}, stop, nil
}

// scratchLayout writes an OCI layout holding one zero-layer linux/amd64 image.
func scratchLayout(dir string) (string, error) {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return "", err
	}
	blob := func(s string) (string, error) {
		sum := sha256.Sum256([]byte(s))
		d := hex.EncodeToString(sum[:])
		return d, os.WriteFile(filepath.Join(blobs, d), []byte(s), 0o644)
	}
	cfg := `{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}`
	cd, err := blob(cfg)
	if err != nil {
		return "", err
	}
	man := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[]}`, cd, len(cfg))
	md, err := blob(man)
	if err != nil {
		return "", err
	}
	index := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d}]}`, md, len(man))
	if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte(index), 0o644); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}

func (e *Env) dockerBaker(ctx context.Context, env []string) (baker, func(), error) {
	if _, err := e.Docker(ctx, "info"); err != nil {
		return baker{}, nil, err
	}
	dir, err := e.CopyExample("bake-docker/src")
	if err != nil {
		return baker{}, nil, err
	}
	if err := appendMarker(dir); err != nil {
		return baker{}, nil, err
	}
	files := map[string]string{
		"Dockerfile": `FROM scratch
COPY hello.bin /app/hello
COPY static /srv/static
COPY greeting.txt /etc/hello/greeting.txt
ENV STATIC_DIR=/srv/static GREETING_FILE=/etc/hello/greeting.txt
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/app/hello"]
`,
		".dockerignore": "*\n!hello.bin\n!static\n!greeting.txt\n",
		"greeting.txt":  "Hello from kiln!\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			return baker{}, nil, err
		}
	}
	label := "kiln-bench=" + e.ID
	buildkit := false
	if _, err := e.Docker(ctx, "buildx", "version"); err == nil {
		buildkit = true
	}
	denv := append(env, "DOCKER_BUILDKIT=0")
	if buildkit {
		denv = append(env, "DOCKER_BUILDKIT=1")
	}
	cold := false
	remove := func(ctx context.Context) error {
		out, err := e.Docker(ctx, "image", "ls", "-q", "--filter", "label="+label)
		if f := fields(out); err == nil && len(f) > 0 {
			_, err = e.Docker(ctx, append([]string{"rmi", "-f"}, f...)...)
		}
		return err
	}
	return baker{name: "docker", dir: dir,
			build: func(ctx context.Context) error {
				if _, err := e.Run(ctx, dir, env, "go", "build", "-trimpath", "-ldflags="+goLDFlags, "-o", "hello.bin", "."); err != nil {
					return err
				}
				args := []string{"build", "-q", "--iidfile", "../iid", "--label", label, "-t", e.ID + "-bake/hello:latest"}
				if cold && buildkit {
					args = append(args, "--no-cache")
				}
				cold = false
				_, err := e.Run(ctx, dir, denv, "docker", append(args, ".")...)
				return err
			},
			clean: func(ctx context.Context) error {
				cold = true
				os.Remove(filepath.Join(dir, "hello.bin"))
				return remove(ctx)
			},
		}, func() {
			remove(context.WithoutCancel(ctx))
		}, nil
}
