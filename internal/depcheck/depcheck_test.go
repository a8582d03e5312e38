package depcheck

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/kiln-build/kiln"

// allowed lists, for each kiln package, the kiln packages it may import. A package not
// listed may import none. spec, driver, api, store, health and httpguard are leaves;
// proxy imports only httpguard; drivers import only driver; the CLI is the one place that
// names a concrete driver; plan does no I/O and imports only driver; nothing imports the
// CLI.
var allowed = map[string][]string{
	"cmd/kiln": {"internal/cli", "internal/sandbox"},
	// The CLI's tests run a daemon's engine and pipelines on the simulated driver.
	"internal/cli":    {"internal/spec", "internal/bake", "internal/imagestore", "internal/atomicfile", "internal/api", "internal/engine", "internal/pipeline", "internal/resolve", "internal/server", "internal/store", "internal/statedir", "internal/secret", "internal/driver/docker", "internal/driver/simdriver"},
	"internal/server": {"internal/api", "internal/dashboard", "internal/engine", "internal/pipeline", "internal/httpguard", "internal/plan", "internal/spec", "internal/store", "internal/driver/simdriver"},
	// The dashboard's tests run it behind the real server (which imports it), on the
	// simulated driver.
	"internal/dashboard": {"internal/api", "internal/engine", "internal/pipeline", "internal/store", "internal/server", "internal/driver/simdriver", "internal/bake", "internal/imagestore", "internal/spec"},
	// The simulated driver passes the conformance suite in its tests.
	"internal/driver/simdriver": {"internal/driver", "internal/driver/drivertest"},
	// The one list of the concrete drivers.
	"internal/driver/registry": {"internal/driver", "internal/driver/docker", "internal/driver/simdriver"},
	// The engine's tests run it on the simulated driver.
	"internal/engine": {"internal/api", "internal/secret", "internal/bake", "internal/imagestore", "internal/driver", "internal/health", "internal/plan", "internal/frontdoor", "internal/monitor", "internal/reconcile", "internal/resolve", "internal/rollout", "internal/spec", "internal/store", "internal/driver/simdriver", "internal/driver/faultdriver"},
	// The fault injector's tests wrap the simulated driver.
	"internal/driver/faultdriver": {"internal/driver", "internal/driver/simdriver"},
	"internal/frontdoor":          {"internal/api", "internal/proxy", "internal/spec"},
	"internal/monitor":            {"internal/health", "internal/spec"},
	"internal/reconcile":          {},
	// pipeline reaches the engine only through its Engine interface; its tests run the
	// two together on the simulated driver.
	"internal/pipeline":  {"internal/api", "internal/bake", "internal/imagestore", "internal/driver", "internal/gitsource", "internal/health", "internal/resolve", "internal/sandbox", "internal/secret", "internal/spec", "internal/store", "internal/engine", "internal/driver/simdriver"},
	"internal/gitsource": {},
	"internal/resolve":   {"internal/api", "internal/bake", "internal/imagestore", "internal/spec"},
	// The rollout's tests run it on the simulated driver through the fault injector.
	"internal/rollout": {"internal/driver", "internal/plan", "internal/spec", "internal/driver/simdriver", "internal/driver/faultdriver", "internal/health"},
	// bake reads docker:// bases through dockerimage, so that the Docker client stays out
	// of it, and writes the images it bakes into imagestore.
	"internal/bake":        {"internal/spec", "internal/atomicfile", "internal/sandbox", "internal/dockerimage", "internal/imagestore"},
	"internal/dockerimage": {},
	// The image store imports no driver and no engine: everything reads it, bake writes it.
	"internal/imagestore":        {"internal/atomicfile"},
	"internal/plan":              {"internal/driver"},
	"internal/driver/docker":     {"internal/driver", "internal/driver/drivertest"},
	"internal/driver/drivertest": {"internal/driver"},
	"internal/driver":            {},
	"internal/spec":              {},
	"internal/api":               {},
	"internal/store":             {},
	"internal/health":            {},
	"internal/proxy":             {"internal/httpguard"},
	"internal/httpguard":         {},
	"internal/atomicfile":        {},
	"internal/statedir":          {},
	"internal/secret":            {"internal/atomicfile"},
	"internal/sandbox":           {},
	"internal/depcheck":          {},
	"test/e2e":                   {},
}

// dockerClient is the Docker Engine client, and dockerClients the packages whose code
// (tests aside) may import it: the driver (which alone loads images into the engine),
// and dockerimage, which reads images out of the engine for bake.
const dockerClient = "github.com/moby/moby/client"

var dockerClients = map[string]bool{"internal/driver/docker": true, "internal/dockerimage": true}

// dockerimageUsers are the packages that may import dockerimage, tests included: bake,
// for docker:// bases, and the Docker driver. Whatever allowed says, no other may.
var dockerimageUsers = map[string]bool{"internal/bake": true, "internal/driver/docker": true}

// goGit is go-git, and gitSource the one package that may import it (its packages),
// tests included: a pipeline's git source.
const (
	goGit     = "github.com/go-git/go-git/v5"
	gitSource = "internal/gitsource"
)

func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "-test", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath string
			Imports    []string
			ForTest    string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkg := strings.TrimPrefix(p.ImportPath, module+"/")
		test := p.ForTest != "" || strings.HasSuffix(p.ImportPath, ".test")
		if i := strings.IndexAny(pkg, " ."); i >= 0 { // "x [x.test]" and "x.test" variants
			pkg = pkg[:i]
		}
		pkg = strings.TrimSuffix(pkg, "_test")
		ok := map[string]bool{pkg: true, pkg + "_test": true}
		for _, a := range allowed[pkg] {
			ok[a] = true
		}
		for _, imp := range p.Imports {
			if imp == dockerClient && !test && !dockerClients[pkg] {
				t.Errorf("%s imports the Docker client, which only %v may", pkg, dockerClients)
			}
			if (imp == goGit || strings.HasPrefix(imp, goGit+"/")) && pkg != gitSource {
				t.Errorf("%s imports %s, which only %s may", pkg, imp, gitSource)
			}
			dep, isKiln := strings.CutPrefix(imp, module+"/")
			if !isKiln {
				continue
			}
			if i := strings.IndexAny(dep, " "); i >= 0 {
				dep = dep[:i]
			}
			if !ok[dep] {
				t.Errorf("%s imports %s, which it may not (see allowed in depcheck_test.go)", pkg, dep)
			}
			if dep == "internal/dockerimage" && !dockerimageUsers[pkg] {
				t.Errorf("%s imports dockerimage, which only %v may", pkg, dockerimageUsers)
			}
		}
	}
}

// storeWriters are the methods of imagestore.Store that change the store, and
// writersOf the packages whose code (tests aside) may call each: bake bakes into the
// store, and the CLI's `kiln images prune` prunes it. Everything else only reads it
// (Find, Entries, Image, Blob, HasBlob).
var storeWriters = map[string][]string{
	"PutImage":      {"internal/bake"},
	"Record":        {"internal/bake"},
	"WriteBlob":     {"internal/bake"},
	"WriteBytes":    {"internal/bake"},
	"NewBlobWriter": {"internal/bake"},
	"Prune":         {"internal/cli"},
}

// TestOnlyBakeWritesImages enforces storeWriters by name, not by type: no package
// outside imagestore calls a method of one of those names unless it may write. A
// package that needs such a name for a method of its own is told so here, and the
// check can be made finer then.
func TestOnlyBakeWritesImages(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	fset := token.NewFileSet()
	for {
		var p struct {
			ImportPath string
			Dir        string
			GoFiles    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkg := strings.TrimPrefix(p.ImportPath, module+"/")
		if pkg == "internal/imagestore" {
			continue
		}
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if may, writes := storeWriters[sel.Sel.Name]; writes && !slices.Contains(may, pkg) {
					t.Errorf("%s: %s calls %s, which writes the image store: only %v may", fset.Position(sel.Pos()), pkg, sel.Sel.Name, may)
				}
				return true
			})
		}
	}
}
