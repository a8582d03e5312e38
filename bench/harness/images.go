package harness

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// imageExample is one example on Debian packages that the images scenario bakes with
// kiln and builds with docker build from the Dockerfile a user would write for it.
// Adding an example is one entry of imageExamples.
type imageExample struct {
	name string // its directory under examples/
	// optional examples are skipped, with a note, while examples/<name>/kiln.hcl does
	// not exist.
	optional bool
	// scratch: the Dockerfile is multi-stage onto scratch, its image the program alone,
	// as kiln's is: the size goal is "no larger".
	scratch bool
	// edit is the file (a glob under the example, the first match) the edit case
	// changes: editLine(n) is appended to its committed content for the n-th edit.
	edit     string
	editLine func(n int) string
	// dockerignore and dockerfile are written into docker's copy of the example. The
	// Dockerfile is a text/template of imageDockerfileData; it must give the image the
	// config kiln.hcl gives kiln's (the run compares the two images' configs) and the
	// same packages (apt-get install of the packages the lock's set was resolved for).
	dockerignore string
	dockerfile   string
}

// imageDockerfileData is what a Dockerfile template is given.
type imageDockerfileData struct {
	Base string // the slim Debian base's tag in the engine
}

func textEdit(n int) string { return fmt.Sprintf("kiln-bench edit %d\n", n) }
func cEdit(n int) string    { return fmt.Sprintf("/* kiln-bench edit %d */\n", n) }

// imageExamples are the examples on OS packages, in the order measured. The
// Dockerfiles put the config before the COPY of the app, so that a change of the app
// rebuilds only the COPY: the Dockerfile kindest to docker's layer cache.
var imageExamples = []imageExample{
	{
		name: "python", edit: "app/greeting.txt", editLine: textEdit,
		dockerignore: "*\n!app\n",
		dockerfile: `FROM {{.Base}}
RUN apt-get update && apt-get install -y --no-install-recommends python3 && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/bin:/bin PYTHONDONTWRITEBYTECODE=1 GREETING_FILE=/app/greeting.txt VERSION=dev
WORKDIR /app
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/usr/bin/python3", "-u", "/app/app.py"]
COPY app /app
`,
	},
	{
		name: "node", edit: "app/greeting.txt", editLine: textEdit,
		dockerignore: "*\n!app\n",
		dockerfile: `FROM {{.Base}}
RUN apt-get update && apt-get install -y --no-install-recommends nodejs && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/bin:/bin NODE_ENV=production GREETING_FILE=/app/greeting.txt VERSION=dev
WORKDIR /app
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/usr/bin/node", "/app/server.js"]
COPY app /app
`,
	},
	{
		// A C program compiled with gcc in a builder image and copied onto scratch.
		name: "c", edit: "src/hello.c", editLine: cEdit, scratch: true,
		dockerignore: "*\n!src\n",
		dockerfile: `FROM {{.Base}} AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY src /src/src
RUN mkdir -p /out && gcc -O2 -static -Wall -Wextra -o /out/hello src/hello.c

FROM scratch
ENV VERSION=dev
EXPOSE 8080
USER 65532:65532
ENTRYPOINT ["/app/hello"]
COPY --from=build /out/hello /app/hello
`,
	},
}

// The cases of the images scenario (-cases), in the order measured.
const (
	imgCold     = "cold"      // nothing cached: kiln's .kiln/ removed; docker build --no-cache
	imgColdDebs = "cold-debs" // kiln only: .kiln/ removed but for its package cache
	imgEdit     = "edit"      // the app changed, everything else cached
	imgSize     = "size"      // sizes, package counts and configs of the baked images
)

var imageCases = []string{imgCold, imgColdDebs, imgEdit, imgSize}

// imageSelection splits -cases into the examples and the cases it names (each empty
// for all); a name that is neither is an error.
func imageSelection(items []string) (examples, cases []string, err error) {
	for _, it := range items {
		switch {
		case slices.Contains(imageCases, it):
			cases = append(cases, it)
		case slices.ContainsFunc(imageExamples, func(x imageExample) bool { return x.name == it }):
			examples = append(examples, it)
		default:
			var names []string
			for _, x := range imageExamples {
				names = append(names, x.name)
			}
			return nil, nil, fmt.Errorf("images: -cases names %q, which is neither a case (%s) nor an example (%s)",
				it, strings.Join(imageCases, " "), strings.Join(names, " "))
		}
	}
	return examples, cases, nil
}

// imageBuild is what one build reports.
type imageBuild struct {
	ref string // kiln: the digest kiln printed; docker: the image ID
	// downloaded is the bytes fetched from Debian's archive, NaN when not known.
	downloaded float64
}

// imageTool is kiln or docker for one example.
type imageTool struct {
	name  string
	cases []string
	// prepare readies the tool's state for a run of case c: the app as committed (as
	// edited for imgEdit), the caches the case removes removed.
	prepare func(ctx context.Context, c string) error
	build   func(ctx context.Context) (imageBuild, error)
	// measure records the image's sizes and package counts in r and returns its
	// config.
	measure func(ctx context.Context, r *Result) (imageConfig, error)
	close   func()
}

// Images measures each example on Debian packages baked by kiln against docker build
// of the equivalent Dockerfile, in the same run: a cold build, a cold bake with the
// .debs already downloaded (kiln), a build after an app change, the images' sizes and
// their Debian packages.
func Images(ctx context.Context, e *Env, o Options) (*Result, error) {
	exNames, caseNames, err := imageSelection(o.Cases)
	if err != nil {
		return nil, err
	}
	wantCase := func(c string) bool { return len(caseNames) == 0 || slices.Contains(caseNames, c) }
	r := e.newResult(ctx, "images", "kiln bake vs docker build: images on Debian packages", o)
	r.Notes = imageNotes()

	buildkit := false
	if _, err := e.Docker(ctx, "buildx", "version"); err == nil {
		buildkit = true
	}
	var base string // the Debian base's tag in the engine
	if o.want("docker") {
		if _, err := e.Docker(ctx, "info"); err != nil {
			return nil, fmt.Errorf("images: docker needs a running Docker Engine: %w", err)
		}
		b, err := e.ensureDebianBase(ctx)
		if err != nil {
			r.Failf("docker: the Debian base: %v", err)
		} else {
			base = e.ID + "-images/debian:bookworm-slim"
			if err := e.importBase(ctx, b, base); err != nil {
				r.Failf("docker: %v", err)
				base = ""
			} else {
				defer e.Docker(context.WithoutCancel(ctx), "rmi", "-f", base)
				how := "reused from the cache"
				if b.Built > 0 {
					how = fmt.Sprintf("built by this run in %.0f s", b.Built.Seconds())
				}
				r.Notes = append(r.Notes, fmt.Sprintf("The Debian base: `%s` (%s), imported with `docker import` as `%s` before the measurements.", b.Tar, how, base))
				if wantCase(imgSize) {
					e.baseImage(ctx, r, base)
				}
			}
		}
		builder := "the legacy builder (`DOCKER_BUILDKIT=0`: the docker CLI speaks BuildKit only through the buildx plugin, which is not installed)"
		if buildkit {
			builder = "BuildKit (`DOCKER_BUILDKIT=1`, buildx is installed)"
		}
		r.Notes = append(r.Notes, "docker build ran with "+builder+".")
	}

	for _, ex := range imageExamples {
		if len(exNames) > 0 && !slices.Contains(exNames, ex.name) {
			continue
		}
		if _, err := os.Stat(filepath.Join(e.Root, "examples", ex.name, "kiln.hcl")); err != nil {
			if ex.optional {
				r.Notes = append(r.Notes, fmt.Sprintf("%s: not measured: examples/%s/kiln.hcl does not exist yet.", ex.name, ex.name))
				continue
			}
			return nil, fmt.Errorf("images: examples/%s: %w", ex.name, err)
		}
		if err := checkDockerfilePackages(e.Root, ex); err != nil {
			r.Failf("%s: not measured: %v", ex.name, err)
			continue
		}
		var tools []imageTool
		if o.want("kiln") {
			t, err := e.kilnImageTool(ctx, ex)
			if err != nil {
				r.Failf("%s: kiln: %v", ex.name, err)
			} else {
				tools = append(tools, t)
			}
		}
		if o.want("docker") && base != "" {
			t, err := e.dockerImageTool(ctx, ex, base, buildkit)
			if err != nil {
				r.Failf("%s: docker: %v", ex.name, err)
			} else {
				tools = append(tools, t)
			}
		}
		e.measureImages(ctx, r, ex, tools, o.Runs, wantCase)
		for _, t := range tools {
			t.close()
		}
	}
	return e.finish(ctx, r), nil
}

// baseImage records the size and the packages of the Dockerfiles' base.
func (e *Env) baseImage(ctx context.Context, r *Result, base string) {
	const what = "the Debian base (FROM): "
	out, err := e.Docker(ctx, "image", "inspect", "-f", "{{.Size}}", base)
	if err == nil {
		var n int64
		if n, err = strconv.ParseInt(strings.TrimSpace(out), 10, 64); err == nil {
			r.Add("docker", what+"image size, uncompressed", "MB", float64(n)/1e6)
		}
	}
	if err != nil {
		r.Failf("docker: the size of the base %s: %v", base, err)
	}
	pkgs, err := e.dpkgPackages(ctx, base)
	if err != nil {
		r.Failf("docker: the packages of the base %s: %v", base, err)
		return
	}
	r.Add("docker", what+"Debian packages (dpkg database)", "", float64(pkgs))
}

// measureImages runs the wanted cases of one example, the tools interleaved run by
// run so that slow drift of the machine is spread over both, then its ratios and
// goals.
func (e *Env) measureImages(ctx context.Context, r *Result, ex imageExample, tools []imageTool, runs int, wantCase func(string) bool) {
	metric := func(what string) string { return ex.name + ": " + what }
	timed := map[string]string{
		imgCold:     metric("bake, cold (.debs downloaded)"),
		imgColdDebs: metric("bake, cold, .debs already downloaded"),
		imgEdit:     metric("bake after an app change (warm)"),
	}
	for _, c := range imageCases[:3] {
		if !wantCase(c) {
			continue
		}
		var in []imageTool
		for _, t := range tools {
			if slices.Contains(t.cases, c) {
				in = append(in, t)
			}
		}
		if c != imgCold { // a baked state to start from: the package cache, the layers
			for _, t := range in {
				if err := t.prepare(ctx, ""); err == nil {
					if _, err := t.build(ctx); err != nil {
						r.Failf("%s %s %s: the untimed build before the runs: %v", ex.name, t.name, c, err)
					}
				}
			}
		}
		for run := 1; run <= runs; run++ {
			for _, t := range in {
				if err := t.prepare(ctx, c); err != nil {
					r.Failf("%s %s %s run %d: preparing: %v", ex.name, t.name, c, run, err)
					continue
				}
				t0 := time.Now()
				b, err := t.build(ctx)
				d := time.Since(t0)
				if err != nil {
					r.Failf("%s %s %s run %d: %v", ex.name, t.name, c, run, err)
					continue
				}
				r.Add(t.name, timed[c], "s", d.Seconds())
				if c == imgCold && !math.IsNaN(b.downloaded) {
					r.Add(t.name, metric("downloaded by the cold bake"), "MB", b.downloaded/1e6)
				}
				e.Log.Info("images", "example", ex.name, "tool", t.name, "case", c, "run", run, "seconds", d.Seconds())
			}
		}
	}
	var configs []imageConfig
	if wantCase(imgSize) {
		for _, t := range tools {
			if err := t.prepare(ctx, ""); err != nil {
				r.Failf("%s %s %s: preparing: %v", ex.name, t.name, imgSize, err)
				continue
			}
			cfg, err := t.measure(ctx, r)
			if err != nil {
				r.Failf("%s %s %s: %v", ex.name, t.name, imgSize, err)
				continue
			}
			configs = append(configs, cfg)
		}
		if len(configs) == 2 {
			if d := configDiff(configs[0], configs[1]); len(d) > 0 {
				r.Failf("%s: the Dockerfile's image is configured unlike kiln's (kiln vs docker): %s", ex.name, strings.Join(d, "; "))
			} else {
				r.Notes = append(r.Notes, fmt.Sprintf("%s: kiln's and docker's images have the same config (entrypoint, command, env, user, workdir, ports).", ex.name))
			}
		}
	}
	ratio := map[string]float64{}
	for _, m := range []string{timed[imgCold], timed[imgEdit], metric(sizeMetric), metric(gzipMetric)} {
		if v, ok := r.AddRatio(ex.name+": kiln / docker, "+strings.TrimPrefix(m, ex.name+": "), "kiln", "docker", m); ok {
			ratio[m] = v
		}
	}
	if v, ok := ratio[metric(sizeMetric)]; ok {
		if ex.scratch {
			// Both images are the program alone: the same size is the best either can do.
			r.AddGoal(ex.name+": no larger than the Dockerfile's multi-stage image (kiln / docker, uncompressed)", v, "×", 1, false)
		} else {
			r.AddGoal(ex.name+": smaller images than the Dockerfile's (kiln / docker, uncompressed)", v, "×", 1, true)
		}
	}
	if v, ok := r.Median("kiln", timed[imgEdit]); ok {
		r.AddGoal(ex.name+": a warm re-bake after an app change in under 0.5 s", v, "s", 0.5, true)
	}
	if v, ok := ratio[timed[imgCold]]; ok {
		r.AddGoal(ex.name+": a cold bake no slower than the Dockerfile's (kiln / docker)", v, "×", 1, false)
	}
}

const (
	sizeMetric = "image size, uncompressed (docker image inspect)"
	gzipMetric = "layers, gzip-compressed"
)

func imageNotes() []string {
	return []string{
		"Each example on Debian packages (examples/python, examples/node; examples/c once it exists) is baked by kiln and built by `docker build` from the Dockerfile a user would write for it, in the same run: the same Debian packages (bookworm, bookworm-updates, bookworm-security; `apt-get install --no-install-recommends` of the packages kiln.hcl names), the same app files and the same config (entrypoint, env, workdir, port, user; compared after the build). Each tool has its own copy of the example; kiln's image is renamed (`bench-<pid>-NAME`, in kiln.hcl and in the lock) so that `kiln bake --load` replaces no image other tests use. Wall-clock seconds.",
		"*cold (.debs downloaded)*: kiln: a fresh copy's state, no `.kiln/` (no package cache, no layer cache, no image store), with the committed kiln.lock.hcl (the run checks that the bake leaves it unchanged: the pinned versions were used, nothing was resolved again); the bake downloads every .deb from deb.debian.org. docker: `docker build --no-cache`, the earlier builds' images removed; the base image is present, as a pulled debian:bookworm-slim would be; the build runs `apt-get update` (the archive's indexes) and downloads the .debs. *downloaded by the cold bake*: kiln: the size of its package cache after the bake (the .debs: with the lock, kiln fetches them by URL and checks their SHA-256, and reads no index); docker: the sum of apt's `Fetched …` lines (the indexes of `apt-get update`, then the .debs, fewer than kiln's since the base has some of the packages).",
		"*cold, .debs already downloaded*: kiln only: `.kiln/` removed but for its package cache (`.kiln/cache/debian`): the layers are built again from the cached .debs. docker has no counterpart without BuildKit's cache mounts: a `--no-cache` build downloads again.",
		"*after an app change (warm)*: one line appended to the app's file (python, node: `app/greeting.txt`; c: its source), a new line every run, everything else cached: kiln's step cache; docker's layer cache (only the `COPY` of the app, the last instruction, is built again). One untimed build before the runs.",
		"*image size, uncompressed*: `docker image inspect -f {{.Size}}` of each image in the engine (kiln's after `kiln bake --load`). *layers, gzip-compressed*: kiln: the sizes of the layers in its image manifest (kiln compresses with gzip, level BestSpeed); docker: each layer of `docker save` gzipped here at the same level. *Debian packages*: kiln: the `pkg:deb/…` purls of `kiln sbom NAME`; both: the packages the image's dpkg database records, read with `docker cp` from a created (never started) container (`/var/lib/dpkg/status` entries installed, plus `status.d/` files, where kiln records its packages as distroless does).",
		"The Debian base of the Dockerfiles stands for debian:bookworm-slim, which cannot be pulled here: `debootstrap --variant=minbase bookworm` from deb.debian.org, slimmed as debuerreotype slims it (dpkg excludes of documentation, manuals and translations, Docker's apt settings: no .debs kept, no translations), its three repositories, file times clamped; cached as a tarball outside the repository (KILN_TEST_CACHE, else /var/cache/kiln-test as root), keyed by its inputs.",
		"What differs by design: kiln installs the packages without running their maintainer scripts (no byte-compiled Python, no dpkg `info/` files; see internal/debian) and with no base: the image holds the packages' closure, not Debian's essential set, apt and dpkg. docker's image holds the base (bash, apt, dpkg, coreutils …) and what the scripts made.",
		"The machine is shared with other engineers running tests, and downloads from deb.debian.org vary: look at min and max.",
	}
}

// imageCopy copies examples/<ex> to dir, and returns the path of the file the edit
// case changes, with its committed content.
func (e *Env) imageCopy(ex imageExample, dir string) (string, []byte, error) {
	if err := os.CopyFS(dir, os.DirFS(filepath.Join(e.Root, "examples", ex.name))); err != nil {
		return "", nil, fmt.Errorf("copying examples/%s: %w", ex.name, err)
	}
	m, err := filepath.Glob(filepath.Join(dir, ex.edit))
	if err != nil || len(m) == 0 {
		return "", nil, fmt.Errorf("examples/%s has no file matching %s to change: has the example changed shape?", ex.name, ex.edit)
	}
	b, err := os.ReadFile(m[0])
	return m[0], b, err
}

// editor writes the edit file as committed, or with a new line for each edit.
type editor struct {
	file     string
	baseline []byte
	line     func(int) string
	n        int
}

func (ed *editor) reset() error { return os.WriteFile(ed.file, ed.baseline, 0o644) }

func (ed *editor) edit() error {
	ed.n++
	b := append(slices.Clone(ed.baseline), ed.line(ed.n)...)
	return os.WriteFile(ed.file, b, 0o644)
}

func (ed *editor) prepare(c string) error {
	if c == imgEdit {
		return ed.edit()
	}
	return ed.reset()
}

var (
	imageBlock   = regexp.MustCompile(`(?m)^image "([^"]+)" \{`)
	imageRef     = regexp.MustCompile(`\bimage\.([A-Za-z_][A-Za-z0-9_-]*)`)
	debianBlock  = regexp.MustCompile(`(?m)^debian "([^"]+)" \{`)
	servedImage  = regexp.MustCompile(`(?m)^service "[^"]+" \{\n(?:.*\n)*?\s*image\s*=\s*image\.([A-Za-z_][A-Za-z0-9_-]*)\s*$`)
	lockPackages = regexp.MustCompile(`(?m)^debian "([^"]+)" \{\n(?:.*\n)*?\s*packages\s*=\s*\[([^\]]*)\]`)
)

// renameImages prefixes every image of a spec and of its lock file with prefix- (the
// image blocks, the references to them, the lock's sets), and returns the spec's
// served image under its new name: the first service's, else the last one declared.
func renameImages(spec, lock, prefix string) (newSpec, newLock, served string, err error) {
	blocks := imageBlock.FindAllStringSubmatch(spec, -1)
	if len(blocks) == 0 {
		return "", "", "", errors.New("kiln.hcl has no image block: has the example changed shape?")
	}
	served = blocks[len(blocks)-1][1] // without a service, the last image declared
	if m := servedImage.FindStringSubmatch(spec); m != nil {
		served = m[1]
	}
	if !debianBlock.MatchString(lock) {
		return "", "", "", errors.New("kiln.lock.hcl has no debian set: has the example changed shape?")
	}
	spec = imageBlock.ReplaceAllString(spec, `image "`+prefix+`-${1}" {`)
	spec = imageRef.ReplaceAllString(spec, "image."+prefix+"-${1}")
	lock = debianBlock.ReplaceAllString(lock, `debian "`+prefix+`-${1}" {`)
	return spec, lock, prefix + "-" + served, nil
}

// aptInstall is a Dockerfile's package installation: apt-get install [options] PKG….
var aptInstall = regexp.MustCompile(`apt-get install((?: +[^ &;\n]+)+)`)

// dockerfilePackages are the packages a Dockerfile installs with apt-get, sorted.
func dockerfilePackages(df string) []string {
	var out []string
	for _, m := range aptInstall.FindAllStringSubmatch(df, -1) {
		for _, w := range strings.Fields(m[1]) {
			if !strings.HasPrefix(w, "-") && !slices.Contains(out, w) {
				out = append(out, w)
			}
		}
	}
	slices.Sort(out)
	return out
}

// checkDockerfilePackages checks that an example's Dockerfile installs the packages
// its lock's sets were resolved for: else the two images would hold different things.
func checkDockerfilePackages(root string, ex imageExample) error {
	lock, err := os.ReadFile(filepath.Join(root, "examples", ex.name, "kiln.lock.hcl"))
	if err != nil {
		return fmt.Errorf("examples/%s has no lock file: %w", ex.name, err)
	}
	var want []string
	for _, pkgs := range lockedPackages(string(lock)) {
		for _, p := range pkgs {
			if !slices.Contains(want, p) {
				want = append(want, p)
			}
		}
	}
	slices.Sort(want)
	got := dockerfilePackages(ex.dockerfile)
	if len(want) == 0 || !slices.Equal(got, want) {
		return fmt.Errorf("its Dockerfile installs [%s] but examples/%s/kiln.lock.hcl pins [%s]: update the example's entry in bench/harness/images.go", strings.Join(got, " "), ex.name, strings.Join(want, " "))
	}
	return nil
}

// lockedPackages are the packages each set of a lock file was resolved for, by image.
func lockedPackages(lock string) map[string][]string {
	out := map[string][]string{}
	for _, m := range lockPackages.FindAllStringSubmatch(lock, -1) {
		var pkgs []string
		for _, p := range strings.Split(m[2], ",") {
			if p = strings.Trim(strings.TrimSpace(p), `"`); p != "" {
				pkgs = append(pkgs, p)
			}
		}
		out[m[1]] = pkgs
	}
	return out
}

// bakedDigest is the digest kiln bake printed for image (a NAME@sha256:… line).
func bakedDigest(out, image string) (string, error) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(image) + `@(sha256:[0-9a-f]{64})$`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("kiln bake printed no %s@sha256:… line: %s", image, tail(out, 300))
	}
	return m[1], nil
}

func (e *Env) kilnImageTool(ctx context.Context, ex imageExample) (imageTool, error) {
	dir := filepath.Join(e.Work, "images-"+ex.name, "kiln")
	file, baseline, err := e.imageCopy(ex, dir)
	if err != nil {
		return imageTool{}, err
	}
	spec, err := os.ReadFile(filepath.Join(dir, "kiln.hcl"))
	if err != nil {
		return imageTool{}, err
	}
	lockPath := filepath.Join(dir, "kiln.lock.hcl")
	lock, err := os.ReadFile(lockPath)
	if err != nil {
		return imageTool{}, fmt.Errorf("examples/%s has no kiln.lock.hcl: the cold bake would resolve the packages again: %w", ex.name, err)
	}
	s, l, image, err := renameImages(string(spec), string(lock), e.ID)
	if err != nil {
		return imageTool{}, fmt.Errorf("examples/%s: %w", ex.name, err)
	}
	if err := errors.Join(os.WriteFile(filepath.Join(dir, "kiln.hcl"), []byte(s), 0o644), os.WriteFile(lockPath, []byte(l), 0o644)); err != nil {
		return imageTool{}, err
	}
	if _, err := e.Run(ctx, dir, nil, e.Kiln, "validate"); err != nil {
		return imageTool{}, fmt.Errorf("the renamed copy of examples/%s: %w", ex.name, err)
	}
	ed := &editor{file: file, baseline: baseline, line: ex.editLine}
	state := filepath.Join(dir, ".kiln")
	debs := filepath.Join(state, "cache", "debian")
	cold := false
	tag := "kiln/" + image + ":latest"
	loaded := false
	return imageTool{
		name:  "kiln",
		cases: []string{imgCold, imgColdDebs, imgEdit},
		prepare: func(ctx context.Context, c string) error {
			cold = c == imgCold
			switch c {
			case imgCold:
				if err := os.RemoveAll(state); err != nil {
					return err
				}
			case imgColdDebs:
				if err := removeAllBut(state, debs); err != nil {
					return err
				}
			}
			return ed.prepare(c)
		},
		build: func(ctx context.Context) (imageBuild, error) {
			out, err := e.Run(ctx, dir, nil, e.Kiln, "bake", image)
			if err != nil {
				return imageBuild{}, err
			}
			d, err := bakedDigest(out, image)
			if err != nil {
				return imageBuild{}, err
			}
			b := imageBuild{ref: d, downloaded: math.NaN()}
			if now, err := os.ReadFile(lockPath); err != nil || string(now) != l {
				return b, fmt.Errorf("kiln bake changed kiln.lock.hcl (%v): the lock no longer pins the example's packages, so the bake resolved them again; run `kiln lock` in examples/%s", err, ex.name)
			}
			if cold {
				n, err := treeBytes(debs)
				if err != nil {
					return b, fmt.Errorf("kiln's package cache: %w", err)
				}
				b.downloaded = float64(n)
			}
			return b, nil
		},
		measure: func(ctx context.Context, r *Result) (imageConfig, error) {
			metric := func(what string) string { return ex.name + ": " + what }
			t0 := time.Now()
			out, err := e.Run(ctx, dir, nil, e.Kiln, "bake", "--load", image)
			if err != nil {
				return imageConfig{}, err
			}
			loaded = true
			r.Add("kiln", metric("kiln bake --load (warm: the load into Docker)"), "s", time.Since(t0).Seconds())
			d, err := bakedDigest(out, image)
			if err != nil {
				return imageConfig{}, err
			}
			man, err := os.ReadFile(filepath.Join(state, "images", "blobs", "sha256", strings.TrimPrefix(d, "sha256:")))
			if err != nil {
				return imageConfig{}, fmt.Errorf("reading the manifest of %s@%s in kiln's image store: %w", image, d, err)
			}
			gz, err := manifestLayerBytes(man)
			if err != nil {
				return imageConfig{}, fmt.Errorf("the manifest of %s@%s: %w", image, d, err)
			}
			r.Add("kiln", metric(gzipMetric), "MB", float64(gz)/1e6)
			sbom, err := e.Run(ctx, dir, nil, e.Kiln, "sbom", image)
			if err != nil {
				return imageConfig{}, err
			}
			n, err := sbomDebPackages([]byte(sbom))
			if err != nil {
				return imageConfig{}, fmt.Errorf("kiln sbom %s: %w", image, err)
			}
			r.Add("kiln", metric("Debian packages (SBOM purls)"), "", float64(n))
			return e.engineImage(ctx, r, "kiln", ex.name, tag)
		},
		close: func() {
			if loaded {
				e.Docker(context.WithoutCancel(ctx), "rmi", tag)
			}
		},
	}, nil
}

// removeAllBut removes everything under dir except keep (a path under dir) and the
// directories leading to it.
func removeAllBut(dir, keep string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	for _, de := range entries {
		p := filepath.Join(dir, de.Name())
		switch {
		case p == keep:
		case de.IsDir() && strings.HasPrefix(keep, p+string(filepath.Separator)):
			if err := removeAllBut(p, keep); err != nil {
				return err
			}
		default:
			if err := os.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// treeBytes is the size of the regular files under dir.
func treeBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	return n, err
}

// manifestLayerBytes is the sum of the layer sizes an OCI image manifest names.
func manifestLayerBytes(b []byte) (int64, error) {
	var m struct {
		Layers []struct {
			Size int64 `json:"size"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return 0, fmt.Errorf("not an image manifest: %w", err)
	}
	var n int64
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}

// sbomDebPackages counts the distinct pkg:deb/ purls of a CycloneDX document's
// components, nested ones included.
func sbomDebPackages(b []byte) (int, error) {
	type component struct {
		Purl       string      `json:"purl"`
		Components []component `json:"components"`
	}
	var doc struct {
		BOMFormat  string      `json:"bomFormat"`
		Components []component `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || doc.BOMFormat != "CycloneDX" {
		return 0, fmt.Errorf("not a CycloneDX SBOM (%v)", err)
	}
	seen := map[string]bool{}
	var walk func([]component)
	walk = func(cs []component) {
		for _, c := range cs {
			if strings.HasPrefix(c.Purl, "pkg:deb/") {
				seen[c.Purl] = true
			}
			walk(c.Components)
		}
	}
	walk(doc.Components)
	return len(seen), nil
}

// renderDockerfile fills a Dockerfile template.
func renderDockerfile(tmpl string, d imageDockerfileData) (string, error) {
	t, err := template.New("Dockerfile").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", err
	}
	return b.String(), nil
}

func (e *Env) dockerImageTool(ctx context.Context, ex imageExample, base string, buildkit bool) (imageTool, error) {
	dir := filepath.Join(e.Work, "images-"+ex.name, "docker")
	file, baseline, err := e.imageCopy(ex, dir)
	if err != nil {
		return imageTool{}, err
	}
	df, err := renderDockerfile(ex.dockerfile, imageDockerfileData{Base: base})
	if err != nil {
		return imageTool{}, fmt.Errorf("the Dockerfile of %s: %w", ex.name, err)
	}
	if err := errors.Join(os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644),
		os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte(ex.dockerignore), 0o644)); err != nil {
		return imageTool{}, err
	}
	ed := &editor{file: file, baseline: baseline, line: ex.editLine}
	builder := "DOCKER_BUILDKIT=0"
	if buildkit {
		builder = "DOCKER_BUILDKIT=1"
	}
	tag := e.ID + "-images/" + ex.name + ":latest"
	var built []string // every image ID built, removed at the end
	remove := func(ctx context.Context) {
		if len(built) > 0 {
			e.Docker(ctx, append([]string{"rmi", "-f"}, built...)...)
			built = nil
		}
	}
	cold := false
	iid := filepath.Join(dir, "..", "iid")
	return imageTool{
		name:  "docker",
		cases: []string{imgCold, imgEdit},
		prepare: func(ctx context.Context, c string) error {
			cold = c == imgCold
			if cold {
				remove(ctx)
			}
			return ed.prepare(c)
		},
		build: func(ctx context.Context) (imageBuild, error) {
			args := []string{"build", "--force-rm", "--iidfile", iid, "-t", tag}
			if cold {
				args = append(args, "--no-cache")
			}
			os.Remove(iid)
			out, err := e.Run(ctx, dir, []string{builder}, "docker", append(args, ".")...)
			if err != nil {
				return imageBuild{}, err
			}
			id, err := os.ReadFile(iid)
			if err != nil {
				return imageBuild{}, fmt.Errorf("docker build wrote no image ID: %w", err)
			}
			b := imageBuild{ref: strings.TrimSpace(string(id)), downloaded: math.NaN()}
			if !slices.Contains(built, b.ref) {
				built = append(built, b.ref)
			}
			if cold {
				if n, ok := aptFetched(out); ok {
					b.downloaded = n
				}
			}
			return b, nil
		},
		measure: func(ctx context.Context, r *Result) (imageConfig, error) {
			cold = false
			b, err := func() (imageBuild, error) { // the committed app, from the layer cache
				os.Remove(iid)
				if _, err := e.Run(ctx, dir, []string{builder}, "docker", "build", "--force-rm", "-q", "--iidfile", iid, "-t", tag, "."); err != nil {
					return imageBuild{}, err
				}
				id, err := os.ReadFile(iid)
				return imageBuild{ref: strings.TrimSpace(string(id))}, err
			}()
			if err != nil {
				return imageConfig{}, err
			}
			if !slices.Contains(built, b.ref) {
				built = append(built, b.ref)
			}
			gz, err := e.savedLayerBytes(ctx, b.ref)
			if err != nil {
				return imageConfig{}, err
			}
			r.Add("docker", ex.name+": "+gzipMetric, "MB", float64(gz)/1e6)
			return e.engineImage(ctx, r, "docker", ex.name, b.ref)
		},
		close: func() { remove(context.WithoutCancel(ctx)) },
	}, nil
}

// aptFetchedLine is apt's summary of a download: "Fetched 17.6 MB in 2s (8,120 kB/s)",
// after the terminal escapes a build's output may put at the start of a line.
var aptFetchedLine = regexp.MustCompile(`(?m)^(?:\x1b\[[0-9;]*m)*Fetched ([0-9][0-9,.]*) (B|kB|MB|GB) in `)

// aptFetched sums the bytes of apt's "Fetched …" lines in a build's output (apt's
// units are decimal: kB is 1000 bytes); false when there is none.
func aptFetched(out string) (float64, bool) {
	all := aptFetchedLine.FindAllStringSubmatch(out, -1)
	var n float64
	for _, m := range all {
		v, err := strconv.ParseFloat(strings.ReplaceAll(m[1], ",", ""), 64)
		if err != nil {
			return 0, false
		}
		n += v * map[string]float64{"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[m[2]]
	}
	return n, len(all) > 0
}

// engineImage records the size of an image in the engine and the Debian packages of
// its dpkg database, and returns its config.
func (e *Env) engineImage(ctx context.Context, r *Result, system, example, ref string) (imageConfig, error) {
	out, err := e.Docker(ctx, "image", "inspect", "-f", "{{.Size}} {{json .Config}}", ref)
	if err != nil {
		return imageConfig{}, err
	}
	size, cfgJSON, _ := strings.Cut(strings.TrimSpace(out), " ")
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil {
		return imageConfig{}, fmt.Errorf("docker image inspect %s: size %q: %w", ref, size, err)
	}
	cfg, err := parseImageConfig([]byte(cfgJSON))
	if err != nil {
		return imageConfig{}, fmt.Errorf("docker image inspect %s: %w", ref, err)
	}
	r.Add(system, example+": "+sizeMetric, "MB", float64(n)/1e6)
	pkgs, err := e.dpkgPackages(ctx, ref)
	if err != nil {
		return cfg, err
	}
	r.Add(system, example+": Debian packages (dpkg database)", "", float64(pkgs))
	return cfg, nil
}

// dpkgPackages counts the packages in an image's dpkg database, copied out of a
// container created (never started) from it; 0 when the image has none.
func (e *Env) dpkgPackages(ctx context.Context, ref string) (int, error) {
	id, err := e.Docker(ctx, "create", "--label", "kiln-bench="+e.ID, "--entrypoint", "/kiln-bench-never-started", ref)
	if err != nil {
		return 0, err
	}
	id = strings.TrimSpace(id)
	defer e.Docker(context.WithoutCancel(ctx), "rm", "-f", id)
	out, err := e.Docker(ctx, "cp", id+":/var/lib/dpkg", "-")
	if err != nil {
		if strings.Contains(err.Error(), "Could not find the file") || strings.Contains(err.Error(), "No such container:path") {
			return 0, nil
		}
		return 0, err
	}
	return countDpkg(strings.NewReader(out))
}

// countDpkg counts the packages a tar of a dpkg directory records: the stanzas of
// its status file whose Status is "install ok installed", and the control files in
// status.d/ (one package each; NAME.md5sums beside them are not packages).
func countDpkg(r io.Reader) (int, error) {
	tr := tar.NewReader(r)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, fmt.Errorf("reading the dpkg database: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		p := strings.TrimPrefix(path.Clean(h.Name), "./")
		dir, base := path.Split(p)
		switch {
		case base == "status" && (dir == "dpkg/" || dir == ""):
			k, err := installedStanzas(tr)
			if err != nil {
				return 0, err
			}
			n += k
		case strings.HasSuffix(dir, "status.d/") && !strings.HasSuffix(base, ".md5sums"):
			k, err := installedStanzas(tr)
			if err != nil {
				return 0, err
			}
			n += k
		}
	}
}

// installedStanzas counts the stanzas of a dpkg status file that are installed
// packages: a Package field, and a Status field of "install ok installed" when there
// is one (status.d/ files have none).
func installedStanzas(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	n := 0
	pkg, status := false, ""
	end := func() {
		if pkg && (status == "" || status == "install ok installed") {
			n++
		}
		pkg, status = false, ""
	}
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.TrimSpace(l) == "":
			end()
		case strings.HasPrefix(l, "Package:"):
			pkg = true
		case strings.HasPrefix(l, "Status:"):
			status = strings.TrimSpace(strings.TrimPrefix(l, "Status:"))
		}
	}
	end()
	return n, sc.Err()
}

// savedLayerBytes is the size of an image's layers as `docker save` writes them,
// each gzip-compressed here at the level kiln compresses its layers with.
func (e *Env) savedLayerBytes(ctx context.Context, ref string) (int64, error) {
	cmd := exec.CommandContext(ctx, "docker", "save", ref)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("docker save %s: %w", ref, err)
	}
	n, perr := gzippedLayers(out)
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("docker save %s: %w: %s", ref, err, tail(stderr.String(), 300))
	}
	return n, perr
}

// gzippedLayers reads a `docker save` tar and returns the sum of its layers' sizes
// once gzip-compressed (level BestSpeed). The layers are the files manifest.json
// names (legacy layout: ID/layer.tar; OCI layout: blobs/sha256/…); every file is
// compressed as it streams past, since manifest.json may come last.
func gzippedLayers(r io.Reader) (int64, error) {
	tr := tar.NewReader(r)
	sizes := map[string]int64{}
	var manifest []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("reading docker save's archive: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(h.Name)
		if name == "manifest.json" {
			if manifest, err = io.ReadAll(tr); err != nil {
				return 0, err
			}
			continue
		}
		var c countWriter
		zw, _ := gzip.NewWriterLevel(&c, gzip.BestSpeed)
		if _, err := io.Copy(zw, tr); err != nil {
			return 0, err
		}
		if err := zw.Close(); err != nil {
			return 0, err
		}
		sizes[name] = c.n
	}
	var m []struct {
		Layers []string `json:"Layers"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil || len(m) != 1 {
		return 0, fmt.Errorf("docker save's manifest.json names no single image (%v)", err)
	}
	var n int64
	for _, l := range m[0].Layers {
		s, ok := sizes[path.Clean(l)]
		if !ok {
			return 0, fmt.Errorf("docker save's archive lacks the layer %s", l)
		}
		n += s
	}
	return n, nil
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// imageConfig is what of an image's config a user's server depends on.
type imageConfig struct {
	Entrypoint   []string
	Cmd          []string
	Env          []string
	User         string
	WorkingDir   string
	ExposedPorts map[string]struct{}
}

func parseImageConfig(b []byte) (imageConfig, error) {
	var c imageConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("reading an image config: %w", err)
	}
	return c, nil
}

// configDiff lists how two configs differ (the env as a set), empty when they do not.
func configDiff(a, b imageConfig) []string {
	var d []string
	str := func(v []string) string { return strings.Join(v, " ") }
	if !slices.Equal(a.Entrypoint, b.Entrypoint) {
		d = append(d, fmt.Sprintf("entrypoint [%s] vs [%s]", str(a.Entrypoint), str(b.Entrypoint)))
	}
	if !slices.Equal(a.Cmd, b.Cmd) {
		d = append(d, fmt.Sprintf("command [%s] vs [%s]", str(a.Cmd), str(b.Cmd)))
	}
	ea, eb := slices.Sorted(slices.Values(withoutDockerPath(a.Env, b.Env))), slices.Sorted(slices.Values(withoutDockerPath(b.Env, a.Env)))
	if !slices.Equal(ea, eb) {
		d = append(d, fmt.Sprintf("env [%s] vs [%s]", str(ea), str(eb)))
	}
	if a.User != b.User {
		d = append(d, fmt.Sprintf("user %q vs %q", a.User, b.User))
	}
	if a.WorkingDir != b.WorkingDir {
		d = append(d, fmt.Sprintf("workdir %q vs %q", a.WorkingDir, b.WorkingDir))
	}
	pa, pb := portList(a.ExposedPorts), portList(b.ExposedPorts)
	if !slices.Equal(pa, pb) {
		d = append(d, fmt.Sprintf("ports [%s] vs [%s]", str(pa), str(pb)))
	}
	return d
}

// dockerPath is the PATH docker build gives every image, one FROM scratch too.
const dockerPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// withoutDockerPath is env without docker build's default PATH when other sets no
// PATH: not a setting of the Dockerfile's, so no difference between the images.
func withoutDockerPath(env, other []string) []string {
	if slices.ContainsFunc(other, func(kv string) bool { return strings.HasPrefix(kv, "PATH=") }) {
		return env
	}
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return kv == dockerPath })
}

func portList(m map[string]struct{}) []string {
	var out []string
	for p := range m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}
