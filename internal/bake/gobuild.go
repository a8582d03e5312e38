package bake

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/mod/modfile"

	"github.com/kiln-build/kiln/internal/sandbox"
	"github.com/kiln-build/kiln/internal/spec"
)

// goRecord is what the SBOM needs to know of a Go binary.
type goRecord struct {
	ImportPath string         `json:"importPath"`
	Binary     string         `json:"binary"`
	GoVersion  string         `json:"goVersion"`
	Main       moduleRecord   `json:"main"`
	Modules    []moduleRecord `json:"modules"`
}

type moduleRecord struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	Sum     string `json:"sum,omitempty"`
}

// goTool is the go command found on PATH: its GOROOT and version. Read once per process.
type goTool struct {
	Root    string `json:"GOROOT"`
	Version string `json:"GOVERSION"`
}

var goToolchain = sync.OnceValues(func() (goTool, error) {
	var tc goTool
	cmd := exec.Command("go", "env", "-json", "GOVERSION", "GOROOT")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "GOENV=off", "GOTOOLCHAIN=local", "GOFLAGS=", "GOWORK=off"}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return tc, fmt.Errorf("running `go env` (is Go installed and on PATH?): %w", err)
	}
	if err := json.Unmarshal(out, &tc); err != nil || tc.Root == "" {
		return tc, fmt.Errorf("reading `go env`: %v (%s)", err, out)
	}
	return tc, nil
})

// goCaches are the go command's module cache, build cache and GOPATH.
type goCaches struct {
	Mod   string `json:"GOMODCACHE"`
	Build string `json:"GOCACHE"`
	Path  string `json:"GOPATH"`
}

// goCacheDirs are the go command's caches for sandboxed builds, in the state directory:
// never the caller's own, which a sandboxed build must not write.
func goCacheDirs(stateDir string) goCaches {
	d := filepath.Join(stateDir, "cache", "go")
	return goCaches{Mod: filepath.Join(d, "mod"), Build: filepath.Join(d, "build"), Path: filepath.Join(d, "path")}
}

// makeGoCaches creates the sandboxed builds' caches. The module cache is read by the
// sandbox's user, so it is not dirPerm; the state directory above keeps others out.
func makeGoCaches(stateDir string) error {
	c := goCacheDirs(stateDir)
	if err := os.MkdirAll(c.Mod, 0o755); err != nil {
		return fmt.Errorf("creating the Go module cache: %w", err)
	}
	if err := os.MkdirAll(c.Build, dirPerm); err != nil {
		return fmt.Errorf("creating the Go build cache: %w", err)
	}
	return nil
}

// userGoCaches are the caller's own, for unsandboxed builds: a local bake shares them
// with the user's other builds.
var userGoCaches = sync.OnceValues(func() (goCaches, error) {
	var c goCaches
	out, err := exec.Command("go", "env", "-json", "GOMODCACHE", "GOCACHE", "GOPATH").Output()
	if err != nil {
		return c, fmt.Errorf("running `go env`: %w", err)
	}
	return c, json.Unmarshal(out, &c)
})

// goDownloadEnv are the settings of the process's environment a module download keeps:
// where modules come from and how they are checked. They are the operator's, never the
// spec's, and cannot change a binary: go.sum pins every module's content.
var goDownloadEnv = []string{"GOPROXY", "GOPRIVATE", "GONOPROXY", "GONOSUMDB", "GOSUMDB", "GOVCS", "GOINSECURE", "GOAUTH"}

func downloadEnv() []string {
	var env []string
	for _, k := range goDownloadEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// goEnvAllowed are the variables a spec's `go { env }` may set: they pick what the
// compiler targets or enables. None runs a program or changes where the go command reads
// code or modules from, as GOFLAGS (-toolexec, -modfile, -overlay), GOTOOLCHAIN, GOROOT,
// GOENV, GOPROXY, GONOSUMDB, CC and the like would.
var goEnvAllowed = []string{"GO386", "GOAMD64", "GOARM", "GOARM64", "GOEXPERIMENT", "GOFIPS140", "GOMIPS", "GOMIPS64", "GOPPC64", "GORISCV64", "GOWASM"}

// goCgoEnvAllowed are allowed too when the step has cgo = true; their flags are checked
// by validCFlag.
var goCgoEnvAllowed = []string{"CGO_CFLAGS", "CGO_CPPFLAGS", "CGO_CXXFLAGS", "CGO_FFLAGS", "CGO_LDFLAGS"}

// cFlags are the C compiler and linker flags a spec may pass (CGO_*FLAGS, -extldflags):
// an allow-list in the manner of the go command's own for #cgo directives (which it
// does not apply to the environment). A flag not in it may load or run a program of
// the commit's (-fplugin, -wrapper, -B, -specs, -Wl,-plugin=, @file, --prefix), write
// files (-MF, -fdump-*) or read them (-include, @file): each of these has been used to
// run code from a commit.
var cFlags = []*regexp.Regexp{
	regexp.MustCompile(`^-D[A-Za-z_][A-Za-z0-9_]*(=[A-Za-z0-9_.:+-]*)?$`),
	regexp.MustCompile(`^-U[A-Za-z_][A-Za-z0-9_]*$`),
	regexp.MustCompile(`^-I[A-Za-z0-9_./][A-Za-z0-9_./+-]*$`),
	regexp.MustCompile(`^-L[A-Za-z0-9_./][A-Za-z0-9_./+-]*$`),
	regexp.MustCompile(`^-l[A-Za-z0-9_][A-Za-z0-9_.+-]*$`),
	regexp.MustCompile(`^-O([0-3sgz]|fast)?$`),
	regexp.MustCompile(`^-g[0-3]?$`),
	regexp.MustCompile(`^-W(all|extra|error|pedantic|no-[a-z0-9-]+|error=[a-z0-9-]+)$`),
	regexp.MustCompile(`^-w$`),
	regexp.MustCompile(`^-std=[a-z0-9+]+$`),
	regexp.MustCompile(`^-m(arch|tune|cpu|fpu|abi|float-abi)=[a-z0-9._+-]+$`),
	regexp.MustCompile(`^-m(32|64|sse[0-9.]*|avx[0-9]*|fma|bmi2?|popcnt|aes|pclmul|no-red-zone|thumb|arm)$`),
	regexp.MustCompile(`^-f(PIC|pic|PIE|pie|wrapv|omit-frame-pointer|exceptions|common|signed-char|unsigned-char|strict-aliasing|stack-protector(-all|-strong)?|visibility=(default|hidden)|sanitize=[a-z,]+|no-[a-z0-9-]+)$`),
	regexp.MustCompile(`^-(pthread|static|static-libgcc|rdynamic|pie|no-pie)$`),
}

// validCFlag reports whether f may be passed to the C compiler or linker.
func validCFlag(f string) bool {
	for _, re := range cFlags {
		if re.MatchString(f) {
			return true
		}
	}
	return false
}

// goLinkerFlags are the go linker's flags a spec may give in ldflags, and whether each
// takes a value.
var goLinkerFlags = map[string]bool{"-s": false, "-w": false, "-X": true, "-buildid": true, "-linkmode": true, "-extldflags": true, "-compressdwarf": true, "-B": true}

// checkLdflags allows only the go linker's flags above; -extldflags only with C flags
// validCFlag allows, -linkmode only internal, external or auto.
func checkLdflags(ldflags []string) error {
	fields := strings.Fields(strings.Join(ldflags, " "))
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		name, value, hasValue := strings.Cut(f, "=")
		takes, ok := goLinkerFlags[name]
		if !ok {
			return fmt.Errorf("ldflags: %s is not allowed (a go block's ldflags may give %s)", f, strings.Join(slices.Sorted(maps.Keys(goLinkerFlags)), ", "))
		}
		if !takes {
			continue
		}
		if !hasValue {
			if i+1 == len(fields) {
				return fmt.Errorf("ldflags: %s needs a value", name)
			}
			i++
			value = fields[i]
		}
		switch name {
		case "-linkmode":
			if value != "internal" && value != "external" && value != "auto" {
				return fmt.Errorf("ldflags: -linkmode %s: use internal, external or auto", value)
			}
		case "-extldflags":
			// The value may be quoted and hold several flags, in this field and the next.
			value = strings.Trim(value, `"'`)
			for strings.Count(fields[i], `"`)+strings.Count(fields[i], `'`) == 1 && i+1 < len(fields) {
				i++
				value += " " + strings.Trim(fields[i], `"'`)
				if strings.ContainsAny(fields[i], `"'`) {
					break
				}
			}
			for _, c := range strings.Fields(value) {
				if !validCFlag(c) {
					return fmt.Errorf("ldflags: -extldflags %s is not allowed (the C linker may only be given flags such as -static, -lNAME, -LDIR)", c)
				}
			}
		case "-B":
			if !strings.HasPrefix(value, "0x") && value != "gobuildid" {
				return fmt.Errorf("ldflags: -B %s: give a build ID as 0x... or gobuildid", value)
			}
		}
	}
	return nil
}

// checkGoStep refuses what would let a spec run a program of its own during the build or
// change the go command's inputs: it applies to every bake, so a spec that bakes on a
// laptop bakes in a pipeline too.
func checkGoStep(g *spec.GoBuild) error {
	if strings.HasPrefix(g.Package, "-") {
		return fmt.Errorf("package %q: a package may not start with \"-\"", g.Package)
	}
	allowed := slices.Clone(goEnvAllowed)
	if g.CGO {
		allowed = append(allowed, goCgoEnvAllowed...)
	}
	var refused []string
	for _, k := range slices.Sorted(maps.Keys(g.Env)) {
		if !slices.Contains(allowed, k) {
			refused = append(refused, k)
		}
	}
	if len(refused) > 0 {
		slices.Sort(allowed)
		return fmt.Errorf("env: %s may not be set here; a go block's env may set only %s", strings.Join(refused, ", "), strings.Join(allowed, ", "))
	}
	for _, v := range append(append(slices.Collect(maps.Values(g.Env)), g.Ldflags...), g.Tags...) {
		if strings.Contains(v, "toolexec") {
			return fmt.Errorf("%q: -toolexec is not allowed", v)
		}
	}
	for _, k := range goCgoEnvAllowed {
		for _, f := range strings.Fields(g.Env[k]) {
			if !validCFlag(f) {
				return fmt.Errorf("env: %s: %s is not allowed (C flags may define macros, name include and library directories, optimise, warn and pick the target: -DNAME, -IDIR, -O2, -Wall, -march=...)", k, f)
			}
		}
	}
	for _, t := range g.Tags {
		if !tagPattern.MatchString(t) {
			return fmt.Errorf("tags: %q is not a build tag", t)
		}
	}
	return checkLdflags(g.Ldflags)
}

var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_.]+$`)

// goStep builds a Go main package into a static binary.
type goStep struct {
	g        *spec.GoBuild
	platform spec.Platform
	h        *hostFiles
	modRoot  string
	modPath  string
	pkgDir   string // absolute, when Package is a relative path
}

func newGoStep(g *spec.GoBuild, platform spec.Platform, h *hostFiles) (*goStep, error) {
	if err := checkGoStep(g); err != nil {
		return nil, err
	}
	s := &goStep{g: g, platform: platform, h: h}
	start := g.Dir
	if isRelPackage(g.Package) {
		s.pkgDir = filepath.Join(g.Dir, g.Package)
		start = s.pkgDir
	}
	for _, d := range []string{g.Dir, start} {
		if info, err := h.stat(d); err != nil {
			return nil, err
		} else if !info.IsDir() {
			return nil, fmt.Errorf("%s is not a directory", d)
		}
	}
	root, err := findModuleRoot(h, start)
	if err != nil {
		return nil, err
	}
	s.modRoot = root
	b, err := h.readFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return nil, err
	}
	s.modPath = modfile.ModulePath(b)
	if s.modPath == "" {
		return nil, fmt.Errorf("%s has no module line", filepath.Join(root, "go.mod"))
	}
	return s, nil
}

func isRelPackage(p string) bool {
	return p == "." || p == ".." || strings.HasPrefix(p, "./") || strings.HasPrefix(p, "../")
}

// findModuleRoot finds the go.mod of dir: in it or a parent, never above a confined
// bake's root.
func findModuleRoot(h *hostFiles, dir string) (string, error) {
	for d := dir; h.inside(d); d = filepath.Dir(d) {
		if info, err := h.stat(filepath.Join(d, "go.mod")); err == nil && info.Mode().IsRegular() {
			return d, nil
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	return "", fmt.Errorf("no go.mod in %s or any parent: the Go package must be in a module", dir)
}

// importPath is the package's import path, which names the binary. It never depends on
// where the source is checked out.
func (s *goStep) importPath() string {
	if s.pkgDir == "" {
		return s.g.Package
	}
	rel, err := filepath.Rel(s.modRoot, s.pkgDir)
	if err != nil || rel == "." {
		return s.modPath
	}
	return path.Join(s.modPath, filepath.ToSlash(rel))
}

// target is where the binary lands in the image: `to`, or /app/<last element of the
// import path> as ko does.
func (s *goStep) target() string {
	if s.g.To != "" {
		return s.g.To
	}
	return "/app/" + path.Base(s.importPath())
}

// modFlag is how the go command may use go.mod: never changing it, and from vendor/ when
// the module vendors its dependencies.
func (s *goStep) modFlag() string {
	if info, err := s.h.stat(filepath.Join(s.modRoot, "vendor", "modules.txt")); err == nil && info.Mode().IsRegular() {
		return "-mod=vendor"
	}
	return "-mod=readonly"
}

// env is the whole environment of the go command: nothing of the caller's but extra. The
// spec's env comes last and may only hold goEnvAllowed.
func (s *goStep) env(tc goTool, c goCaches, home, tmp string, extra ...string) []string {
	cgo := "0"
	if s.g.CGO {
		cgo = "1"
	}
	env := []string{
		"PATH=" + filepath.Join(tc.Root, "bin") + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + home, "TMPDIR=" + tmp,
		"GOROOT=" + tc.Root, "GOPATH=" + c.Path, "GOCACHE=" + c.Build, "GOMODCACHE=" + c.Mod,
		"GOTOOLCHAIN=local", "GOENV=off", "GOWORK=off", "GOFLAGS=" + s.modFlag(),
		"CGO_ENABLED=" + cgo, "GOOS=" + s.platform.OS, "GOARCH=" + s.platform.Arch,
	}
	if s.platform.Arch == "arm" && s.platform.Variant != "" {
		env = append(env, "GOARM="+strings.TrimPrefix(s.platform.Variant, "v"))
	}
	env = append(env, extra...)
	for _, k := range slices.Sorted(maps.Keys(s.g.Env)) {
		env = append(env, k+"="+s.g.Env[k])
	}
	return env
}

func (s *goStep) args(out string) []string {
	args := []string{"build", "-trimpath", "-buildvcs=false", "-o", out}
	if len(s.g.Ldflags) > 0 {
		args = append(args, "-ldflags="+strings.Join(s.g.Ldflags, " "))
	}
	if len(s.g.Tags) > 0 {
		args = append(args, "-tags="+strings.Join(s.g.Tags, ","))
	}
	return append(args, s.g.Package)
}

// key hashes everything the binary depends on: the toolchain's version, the flags and
// env (the rest of the go command's environment is fixed, see env), and every file
// of the module (and of modules it replaces with local directories). Dependencies from
// the module cache are pinned by go.sum, which is part of the module.
func (s *goStep) key(epoch int64) (string, error) {
	tc, err := goToolchain()
	if err != nil {
		return "", err
	}
	trees := map[string]string{}
	for _, root := range s.roots() {
		h, err := hashGoTree(s.h, root)
		if err != nil {
			return "", fmt.Errorf("hashing Go sources in %s: %w", root, err)
		}
		rel, _ := filepath.Rel(s.modRoot, root)
		trees[filepath.ToSlash(rel)] = h
	}
	wd, _ := filepath.Rel(s.modRoot, s.g.Dir)
	return key(map[string]any{
		"kind":     "go",
		"epoch":    epoch,
		"go":       tc.Version,
		"mod":      s.modFlag(),
		"args":     s.args("OUT"),
		"env":      s.g.Env,
		"cgo":      s.g.CGO,
		"platform": s.platform.String(),
		"target":   s.target(),
		"import":   s.importPath(),
		"wd":       filepath.ToSlash(wd),
		"trees":    trees,
	}), nil
}

// roots are the module's directory and those of the modules it replaces with local ones.
func (s *goStep) roots() []string {
	roots := []string{s.modRoot}
	if b, err := s.h.readFile(filepath.Join(s.modRoot, "go.mod")); err == nil {
		if mf, err := modfile.Parse("go.mod", b, nil); err == nil { // ParseLax skips replace
			for _, r := range mf.Replace {
				if r.New.Version == "" && (isRelPackage(r.New.Path) || filepath.IsAbs(r.New.Path)) {
					roots = append(roots, resolveDir(s.modRoot, r.New.Path))
				}
			}
		}
	}
	return roots
}

func resolveDir(base, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// goInputExt are the extensions of files the go command compiles or links.
var goInputExt = map[string]bool{
	".go": true, ".s": true, ".S": true, ".sx": true, ".c": true, ".cc": true, ".cpp": true,
	".cxx": true, ".h": true, ".hh": true, ".hpp": true, ".hxx": true, ".m": true, ".f": true,
	".F": true, ".for": true, ".f90": true, ".syso": true, ".swig": true, ".swigcxx": true,
}

// hashGoTree hashes the files of a module that go build may read: sources (but not
// tests), go.mod, go.sum, and files named by //go:embed. It skips the directories the go
// command ignores (testdata, names starting with "." or "_") and nested modules, so
// editing a README or a static file that is not embedded rebuilds nothing.
func hashGoTree(h *hostFiles, root string) (string, error) {
	files := map[string]bool{}
	var embeds []string // patterns, joined to the directory of the file naming them
	sizes := map[string]int64{}
	err := h.walkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root {
				if name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
					return filepath.SkipDir
				}
				if _, err := h.lstat(filepath.Join(p, "go.mod")); err == nil {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case goInputExt[filepath.Ext(name)]:
			files[p], sizes[p] = true, info.Size()
		case name == "go.mod" || name == "go.sum" || name == "go.work" || name == "go.work.sum" || name == "modules.txt":
			files[p], sizes[p] = true, info.Size()
		}
		if filepath.Ext(name) == ".go" {
			pats, err := embedPatterns(h, p)
			if err != nil {
				return err
			}
			for _, pat := range pats {
				embeds = append(embeds, filepath.Join(filepath.Dir(p), filepath.FromSlash(pat)))
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	for _, pat := range embeds {
		matches, _ := h.glob(pat)
		for _, m := range matches {
			h.walkDir(m, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					if info, err := d.Info(); err == nil {
						files[p], sizes[p] = true, info.Size()
					}
				}
				return nil
			})
		}
	}
	sum := sha256.New()
	for _, p := range slices.Sorted(maps.Keys(files)) {
		fsum, err := h.sha256(p, sizes[p])
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(sum, "%s %s\n", filepath.ToSlash(rel), fsum)
	}
	return hex.EncodeToString(sum.Sum(nil)), nil
}

// embedPatterns returns the patterns of the //go:embed directives in a Go file, without
// the "all:" prefix. Quoted patterns are unquoted.
func embedPatterns(h *hostFiles, path string) ([]string, error) {
	b, err := h.readFile(path)
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(b, []byte("//go:embed")) {
		return nil, nil
	}
	var pats []string
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "//go:embed")
		if !ok {
			continue
		}
		for _, f := range strings.Fields(rest) {
			f = strings.Trim(f, "\"`")
			pats = append(pats, strings.TrimPrefix(f, "all:"))
		}
	}
	return pats, nil
}

// BuildError is a go build that failed; Output is what the go command printed.
type BuildError struct {
	Package string
	Output  string
	Err     error
}

func (e *BuildError) Error() string {
	return fmt.Sprintf("go build %s failed: %v\n%s", e.Package, e.Err, strings.TrimRight(e.Output, "\n"))
}

func (e *BuildError) Unwrap() error { return e.Err }

// goSandbox is how a sandboxed build runs.
type goSandbox struct {
	// caches are the store's: the module cache, filled outside the sandbox and read-only
	// in it, and the build cache, written in it.
	caches goCaches
	// dirs are the host directories the build may read: a confined bake's root; when
	// empty, the step's directory, its module's and those the module replaces.
	dirs []string
}

// build runs go build into tmpDir (in a sandbox when sb is set) and returns the binary
// as a layer entry.
func (s *goStep) build(ctx context.Context, tmpDir string, sb *goSandbox) ([]entry, *goRecord, error) {
	tc, err := goToolchain()
	if err != nil {
		return nil, nil, err
	}
	work, err := os.MkdirTemp(tmpDir, "go-build-*")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(work)
	out, home := filepath.Join(work, "out"), filepath.Join(work, "home")
	for _, d := range []string{out, home} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, nil, err
		}
	}
	bin := filepath.Join(out, "bin") // absolute: go build runs in the package's directory
	var output bytes.Buffer
	if sb == nil {
		c, err := userGoCaches()
		if err != nil {
			return nil, nil, err
		}
		// The user's HOME, for the git credentials of private modules.
		cmd := exec.CommandContext(ctx, filepath.Join(tc.Root, "bin", "go"), s.args(bin)...)
		cmd.Dir = s.g.Dir
		cmd.Env = s.env(tc, c, os.Getenv("HOME"), os.TempDir(), downloadEnv()...)
		cmd.Stdout, cmd.Stderr = &output, &output
		err = cmd.Run()
	} else {
		err = s.sandboxed(ctx, tc, sb, home, out, bin, &output)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		var be *BuildError
		if errors.Is(err, sandbox.ErrUnavailable) || errors.As(err, &be) {
			return nil, nil, err
		}
		return nil, nil, &BuildError{Package: s.g.Package, Output: output.String(), Err: err}
	}
	data, err := readOutput(bin)
	if err != nil {
		return nil, nil, &BuildError{Package: s.g.Package, Output: output.String(), Err: err}
	}
	if len(data) == 0 {
		return nil, nil, &BuildError{Package: s.g.Package, Output: output.String(), Err: errors.New("the go command wrote no binary")}
	}
	rec := &goRecord{ImportPath: s.importPath(), Binary: s.target()}
	if bi, err := buildinfo.Read(bytes.NewReader(data)); err == nil {
		rec.GoVersion = bi.GoVersion
		rec.Main = moduleRecord{Path: bi.Main.Path, Version: bi.Main.Version, Sum: bi.Main.Sum}
		for _, m := range bi.Deps {
			if m.Replace != nil {
				m = m.Replace
			}
			rec.Modules = append(rec.Modules, moduleRecord{Path: m.Path, Version: m.Version, Sum: m.Sum})
		}
		sort.Slice(rec.Modules, func(i, j int) bool { return rec.Modules[i].Path < rec.Modules[j].Path })
	}
	sum := sha256.Sum256(data)
	return []entry{{
		Path:   s.target(),
		Type:   tar.TypeReg,
		Mode:   0o755,
		Size:   int64(len(data)),
		Data:   data,
		SHA256: hex.EncodeToString(sum[:]),
	}}, rec, nil
}

// readOutput reads the binary a build wrote. The build may have been a sandboxed one,
// which owns the directory: the binary must be a regular file, not a link to one of the
// host's, and of a sane size.
func readOutput(bin string) ([]byte, error) {
	f, err := os.OpenFile(bin, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("reading the binary: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() || info.Size() > maxBaseBytes {
		return nil, fmt.Errorf("the build wrote a %s of %d bytes, not a binary", fileKind(info.Mode()), info.Size())
	}
	return io.ReadAll(io.LimitReader(f, info.Size()))
}

// sandboxed runs the build in a sandbox (see internal/sandbox): modules are downloaded
// first, outside it (the go command runs no code of theirs to do that); the build then
// sees the toolchain, the module cache and the sources read-only, writes only the build
// cache and out, and has no network (GOPROXY=off).
func (s *goStep) sandboxed(ctx context.Context, tc goTool, sb *goSandbox, home, out, bin string, output *bytes.Buffer) error {
	goBin := filepath.Join(tc.Root, "bin", "go")
	// The download runs as the daemon, outside the sandbox: what it reads of the
	// checkout must be the checkout's own files, not links to the host's.
	for _, name := range []string{"go.mod", "go.sum", "go.work"} {
		if info, err := os.Lstat(filepath.Join(s.modRoot, name)); err == nil && !info.Mode().IsRegular() {
			return fmt.Errorf("%s is a %s, not a file: a sandboxed build reads only the sources' own files", name, fileKind(info.Mode()))
		}
	}
	if s.modFlag() != "-mod=vendor" {
		cmd := exec.CommandContext(ctx, goBin, "mod", "download")
		cmd.Dir = s.modRoot
		c := goCaches{Mod: sb.caches.Mod, Build: filepath.Join(home, "cache"), Path: filepath.Join(home, "go")}
		env := downloadEnv()
		if _, set := os.LookupEnv("GOVCS"); !set {
			// Modules through the proxy only: a commit's go.mod must not make the daemon
			// run git or hg against hosts it names (GOVCS in the daemon's environment
			// opts back in).
			env = append(env, "GOVCS=*:off")
		}
		cmd.Env = s.env(tc, c, home, home, env...)
		var dl bytes.Buffer
		cmd.Stdout, cmd.Stderr = &dl, &dl
		if err := cmd.Run(); err != nil {
			return &BuildError{Package: s.g.Package, Output: "go mod download: " + dl.String(), Err: err}
		}
	}
	for _, d := range []string{out, sb.caches.Build} {
		if err := sandbox.Own(d); err != nil {
			return err
		}
	}
	// Without a seed the build fills its cache itself, only slower; a toolchain that
	// cannot build its standard library fails the build below, which says why.
	// Written by root under the daemon's umask (077): the sandbox's user reads them.
	// The build cache is written by that user alone, but for a seed just copied in.
	owned := []string{sb.caches.Mod}
	if seeded, _ := s.seedCache(ctx, tc, sb.caches.Build); seeded {
		owned = append(owned, sb.caches.Build)
	}
	for _, d := range owned {
		if err := sandbox.OwnTree(d); err != nil {
			return fmt.Errorf("the Go caches: %w", err)
		}
	}
	// The caches and out at paths of their own: the sources may hold the state directory
	// (a local bake's), whose private directories the sandbox's user cannot traverse.
	const modIn, buildIn, outIn = "/sandbox/gomod", "/sandbox/gocache", "/sandbox/out"
	mounts := []sandbox.Mount{
		{Source: tc.Root},
		{Source: sb.caches.Mod, Target: modIn},
		{Source: sb.caches.Build, Target: buildIn, Writable: true},
		{Source: out, Target: outIn, Writable: true},
	}
	dirs := sb.dirs
	if len(dirs) == 0 {
		dirs = append([]string{s.g.Dir}, s.roots()...)
	}
	for _, d := range dirs {
		mounts = append(mounts, sandbox.Mount{Source: d})
	}
	if s.g.CGO { // the C toolchain
		for _, d := range []string{"/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/etc/ld.so.cache", "/etc/alternatives"} {
			if _, err := os.Lstat(d); err == nil {
				mounts = append(mounts, sandbox.Mount{Source: d})
			}
		}
	}
	c := goCaches{Mod: modIn, Build: buildIn, Path: "/tmp/go"}
	err := sandbox.Run(ctx, &sandbox.Command{
		Path:   goBin,
		Args:   append([]string{"go"}, s.args(path.Join(outIn, filepath.Base(bin)))...),
		Env:    s.env(tc, c, "/tmp", "/tmp", "GOPROXY=off"),
		Dir:    s.g.Dir,
		Mounts: mounts,
		Stdout: output, Stderr: output,
	})
	if errors.Is(err, sandbox.ErrUnavailable) {
		return fmt.Errorf("this bake builds Go only in a sandbox, and none can be made here: %w", err)
	}
	return err
}
