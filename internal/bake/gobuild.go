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
	"slices"
	"sort"
	"strings"
	"sync"

	"golang.org/x/mod/modfile"

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

// goToolchain is the identity of the go command: its version and the settings that
// change what it builds. Read once per process.
var goToolchain = sync.OnceValues(func() (map[string]string, error) {
	out, err := exec.Command("go", "env", "-json", "GOVERSION", "GOFLAGS", "GOAMD64", "GOARM64", "GOEXPERIMENT", "GOWORK").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return nil, fmt.Errorf("running `go env` (is Go installed and on PATH?): %w", err)
	}
	env := map[string]string{}
	return env, json.Unmarshal(out, &env)
})

// goStep builds a Go main package into a static binary.
type goStep struct {
	g        *spec.GoBuild
	platform spec.Platform
	modRoot  string
	modPath  string
	pkgDir   string // absolute, when Package is a relative path
}

func newGoStep(g *spec.GoBuild, platform spec.Platform) (*goStep, error) {
	s := &goStep{g: g, platform: platform}
	start := g.Dir
	if isRelPackage(g.Package) {
		s.pkgDir = filepath.Join(g.Dir, g.Package)
		start = s.pkgDir
	}
	root, err := findModuleRoot(start)
	if err != nil {
		return nil, err
	}
	s.modRoot = root
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
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

func findModuleRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod in %s or any parent: the Go package must be in a module", dir)
		}
	}
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

func (s *goStep) env() []string {
	env := os.Environ()
	cgo := "0"
	if s.g.CGO {
		cgo = "1"
	}
	env = append(env, "CGO_ENABLED="+cgo, "GOOS="+s.platform.OS, "GOARCH="+s.platform.Arch)
	if s.platform.Arch == "arm" && s.platform.Variant != "" {
		env = append(env, "GOARM="+strings.TrimPrefix(s.platform.Variant, "v"))
	}
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

// key hashes everything the binary depends on: the toolchain, the flags, and every file
// of the module (and of modules it replaces with local directories). Dependencies from
// the module cache are pinned by go.sum, which is part of the module.
func (s *goStep) key(epoch int64) (string, error) {
	tc, err := goToolchain()
	if err != nil {
		return "", err
	}
	trees := map[string]string{}
	roots := []string{s.modRoot}
	if b, err := os.ReadFile(filepath.Join(s.modRoot, "go.mod")); err == nil {
		if mf, err := modfile.ParseLax("go.mod", b, nil); err == nil {
			for _, r := range mf.Replace {
				if r.New.Version == "" && (isRelPackage(r.New.Path) || filepath.IsAbs(r.New.Path)) {
					roots = append(roots, resolveDir(s.modRoot, r.New.Path))
				}
			}
		}
	}
	for _, root := range roots {
		h, err := hashGoTree(root)
		if err != nil {
			return "", fmt.Errorf("hashing Go sources in %s: %w", root, err)
		}
		rel, _ := filepath.Rel(s.modRoot, root)
		trees[filepath.ToSlash(rel)] = h
	}
	wd, _ := filepath.Rel(s.modRoot, s.g.Dir)
	return key(map[string]any{
		"kind":      "go",
		"epoch":     epoch,
		"toolchain": tc,
		"args":      s.args("OUT"),
		"env":       s.g.Env,
		"cgo":       s.g.CGO,
		"platform":  s.platform.String(),
		"target":    s.target(),
		"import":    s.importPath(),
		"wd":        filepath.ToSlash(wd),
		"trees":     trees,
		"goflags":   os.Getenv("GOFLAGS"),
	}), nil
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
func hashGoTree(root string) (string, error) {
	files := map[string]bool{}
	var embeds []string // patterns, joined to the directory of the file naming them
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root {
				if name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
					return filepath.SkipDir
				}
				if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		switch {
		case goInputExt[filepath.Ext(name)]:
			files[p] = true
		case name == "go.mod" || name == "go.sum" || name == "go.work" || name == "go.work.sum" || name == "modules.txt":
			files[p] = true
		}
		if filepath.Ext(name) == ".go" {
			pats, err := embedPatterns(p)
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
		matches, _ := filepath.Glob(pat)
		for _, m := range matches {
			filepath.WalkDir(m, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					files[p] = true
				}
				return nil
			})
		}
	}
	h := sha256.New()
	for _, p := range slices.Sorted(maps.Keys(files)) {
		sum, err := fileSHA256(p)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(h, "%s %s\n", filepath.ToSlash(rel), sum)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// embedPatterns returns the patterns of the //go:embed directives in a Go file, without
// the "all:" prefix. Quoted patterns are unquoted.
func embedPatterns(path string) ([]string, error) {
	b, err := os.ReadFile(path)
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

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
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

// build runs go build into tmpDir and returns the binary as a layer entry.
func (s *goStep) build(ctx context.Context, tmpDir string) ([]entry, *goRecord, error) {
	out, err := os.CreateTemp(tmpDir, "go-build-*")
	if err != nil {
		return nil, nil, err
	}
	out.Close()
	bin, err := filepath.Abs(out.Name()) // go build runs in the package's directory
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.CommandContext(ctx, "go", s.args(bin)...)
	cmd.Dir = s.g.Dir
	cmd.Env = s.env()
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		os.Remove(bin)
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, &BuildError{Package: s.g.Package, Output: output.String(), Err: err}
	}
	data, err := os.ReadFile(bin)
	os.Remove(bin)
	if err != nil {
		return nil, nil, err
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
