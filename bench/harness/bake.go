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
	"slices"
	"strconv"
	"strings"
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

// baker is one tool of the bake scenario. build runs one build with env (the shared
// environment, SOURCE_DATE_EPOCH left out when the reproducibility check asks) and
// returns the digest it made: the manifest digest kiln and ko print, the image ID
// (config digest) for docker, which has no manifest without a registry.
type baker struct {
	name  string
	dir   string
	build func(ctx context.Context, env []string) (string, error)
	clean func(ctx context.Context) error
}

// Bake builds the example's server image with kiln, ko and go build + docker build, in
// the same run, in four cases: cold (the tool's own state removed, Go's build cache
// warm), cold-go (Go's build cache emptied too), noop (nothing changed) and edit (one
// line of main.go changed); then checks that each tool's digest is reproducible.
func Bake(ctx context.Context, e *Env, o Options) (*Result, error) {
	r := e.newResult(ctx, "bake", "kiln bake vs ko build vs docker build", o)
	r.Notes = []string{
		"Wall-clock seconds of one build of the example (examples/hello); one untimed warm-up before each cell. The three tools share a private, warm Go build cache (`GOCACHE` in the scratch directory), `CGO_ENABLED=0` and `SOURCE_DATE_EPOCH`; each has its own copy of the example.",
		"*cold*: before each run the tool's own state is removed: kiln's `.kiln/`, ko's OCI layout, docker's images (by label) and the built binary (the legacy builder has no cache to empty; with BuildKit the cold build runs with `--no-cache`). *noop*: nothing changed. *edit*: one line of main.go changed, a new value every run (a marker kept in the binary).",
		"kiln: `kiln bake` (built once from ./cmd/kiln). ko " + koVersion + ": `ko build --bare --push=false --oci-layout-path DIR .`, ldflags through .ko.yaml, static/ as kodata/, its base a zero-layer image in a local `crane registry serve`. docker: `go build -trimpath` then `docker build -q --iidfile` of a `FROM scratch` Dockerfile mirroring kiln.hcl.",
		"*cold-go*: as cold, and the shared Go build cache emptied too (no warm-up): the standard library and net/http are compiled again, as on a fresh machine or CI runner.",
		"*same digest twice*: after the timings, each tool builds the unchanged example twice, each time from a clean tool state, with SOURCE_DATE_EPOCH set and then unset; 1 when the two digests are equal (they are listed below). Digests: the manifest digest kiln and ko print; docker's image ID (the config digest) from `--iidfile`: the legacy builder stamps the build time into the config.",
		"The machine is shared with other engineers running tests: a concurrent `go test` easily doubles a build's time.",
	}
	gocache := filepath.Join(e.Work, "gocache")
	base := []string{"GOCACHE=" + gocache, "CGO_ENABLED=0", "GOFLAGS="}
	env := append(base, "SOURCE_DATE_EPOCH="+sourceDateEpoch)
	var tools []baker
	if o.want("kiln") {
		t, err := e.kilnBaker(ctx)
		if err != nil {
			return nil, err
		}
		tools = append(tools, t)
	}
	if o.want("ko") {
		t, stop, err := e.koBaker(ctx)
		if err != nil {
			r.Failf("ko: %v", err)
		} else {
			defer stop()
			tools = append(tools, t)
		}
	}
	if o.want("docker") {
		t, stop, err := e.dockerBaker(ctx)
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
		warm    bool
		prepare func(ctx context.Context, t baker) error
	}{
		{"cold", true, func(ctx context.Context, t baker) error { return t.clean(ctx) }},
		{"cold-go", false, func(ctx context.Context, t baker) error {
			return errors.Join(t.clean(ctx), os.RemoveAll(gocache))
		}},
		{"noop", true, func(context.Context, baker) error { return nil }},
		{"edit", true, func(_ context.Context, t baker) error {
			edits++
			return editMarker(t.dir, edits)
		}},
	}
	for _, c := range cases {
		if !o.wantCase(c.name) {
			continue
		}
		// Tools run one after another for each case, so slow drift of the machine is
		// spread over all of them. Every case starts from the baseline source.
		for _, t := range tools {
			if err := editMarker(t.dir, 0); err != nil {
				return nil, err
			}
			if c.warm { // fills Go's cache for the tool's flags and leaves a baked state
				if err := c.prepare(ctx, t); err == nil {
					t.build(ctx, env)
				}
			}
			for run := 1; run <= o.Runs; run++ {
				if err := c.prepare(ctx, t); err != nil {
					r.Failf("%s %s run %d: preparing: %v", t.name, c.name, run, err)
					continue
				}
				t0 := time.Now()
				if _, err := t.build(ctx, env); err != nil {
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
	// Reproducibility: two builds of the baseline source, each from a clean tool
	// state, with SOURCE_DATE_EPOCH set and then unset. Not timed.
	for _, sde := range []struct {
		name string
		env  []string
	}{{"SOURCE_DATE_EPOCH set", env}, {"SOURCE_DATE_EPOCH unset", base}} {
		for _, t := range tools {
			if err := editMarker(t.dir, 0); err != nil {
				return nil, err
			}
			var d [2]string
			var err error
			for i := range d {
				if err = t.clean(ctx); err == nil {
					d[i], err = t.build(ctx, sde.env)
				}
				if err != nil {
					break
				}
				if t.name == "docker" {
					time.Sleep(1100 * time.Millisecond) // let wall-clock timestamps tick
				}
			}
			if err != nil {
				r.Failf("%s reproducibility, %s: %v", t.name, sde.name, err)
				continue
			}
			same := 0.0
			if d[0] == d[1] {
				same = 1
			}
			r.Add(t.name, "same digest twice, "+sde.name+" (1 = yes)", "", same)
			r.Notes = append(r.Notes, fmt.Sprintf("%s digests, %s: `%s` / `%s`", t.name, sde.name, d[0], d[1]))
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

var kilnDigest = regexp.MustCompile(`(?m)^[^@\s]+@(sha256:[0-9a-f]{64})$`)
var anyDigest = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

func (e *Env) kilnBaker(ctx context.Context) (baker, error) {
	p, err := e.Project(ctx, "bake-kiln", "bench-bake-hello", ServiceOptions{Name: e.ID + "-bake", Replicas: 1, Interval: "1s", Port: 1})
	if err != nil {
		return baker{}, err
	}
	if err := appendMarker(p.Dir); err != nil {
		return baker{}, err
	}
	return baker{name: "kiln", dir: p.Dir,
		build: func(ctx context.Context, env []string) (string, error) {
			out, err := e.Run(ctx, p.Dir, env, e.Kiln, "bake")
			if err != nil {
				return "", err
			}
			m := kilnDigest.FindStringSubmatch(out)
			if m == nil {
				return "", fmt.Errorf("kiln bake printed no NAME@sha256:… line: %s", tail(out, 300))
			}
			return m[1], nil
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

func (e *Env) koBaker(ctx context.Context) (baker, func(), error) {
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
	koEnv := []string{"KO_DEFAULTBASEIMAGE=" + addr + "/scratch:latest", "KO_DOCKER_REPO=" + addr + "/hello"}
	return baker{name: "ko", dir: dir,
		build: func(ctx context.Context, env []string) (string, error) {
			// A relative layout path: ko turns it into an image reference, which must be
			// lower case, and the absolute scratch path may not be.
			out, err := e.Run(ctx, dir, append(slices.Clone(env), koEnv...), ko, "build", "--bare", "--push=false", "--oci-layout-path", "../layout", ".")
			if err != nil {
				return "", err
			}
			all := anyDigest.FindAllString(out, -1)
			if len(all) == 0 {
				return "", fmt.Errorf("ko build printed no digest: %s", tail(out, 300))
			}
			return all[len(all)-1], nil
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

func (e *Env) dockerBaker(ctx context.Context) (baker, func(), error) {
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
	builder := "DOCKER_BUILDKIT=0"
	if buildkit {
		builder = "DOCKER_BUILDKIT=1"
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
			build: func(ctx context.Context, env []string) (string, error) {
				if _, err := e.Run(ctx, dir, env, "go", "build", "-trimpath", "-ldflags="+goLDFlags, "-o", "hello.bin", "."); err != nil {
					return "", err
				}
				args := []string{"build", "-q", "--iidfile", "../iid", "--label", label, "-t", e.ID + "-bake/hello:latest"}
				if cold && buildkit {
					args = append(args, "--no-cache")
				}
				cold = false
				os.Remove(filepath.Join(dir, "..", "iid"))
				if _, err := e.Run(ctx, dir, append(slices.Clone(env), builder), "docker", append(args, ".")...); err != nil {
					return "", err
				}
				iid, err := os.ReadFile(filepath.Join(dir, "..", "iid"))
				return strings.TrimSpace(string(iid)), err
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
