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

// allowed lists, for each kiln package, the kiln packages its code may import (tests
// aside: see testAllowed). A package not listed may import none. spec, driver, api,
// store, health and httpguard are leaves; proxy imports only httpguard; drivers import
// only driver; plan does no I/O and imports only driver; the engine names no concrete
// driver; nothing imports the CLI.
var allowed = map[string][]string{
	"cmd/kiln": {"internal/cli", "internal/sandbox"},
	// The CLI names the Docker driver only for `kiln bake --load`.
	"internal/cli": {"internal/api", "internal/atomicfile", "internal/bake", "internal/daemon", "internal/door", "internal/driver/docker", "internal/engine", "internal/imagestore", "internal/resolve", "internal/server", "internal/spec", "internal/statedir", "internal/store", "internal/systemdunit"},
	// The daemon's wiring: it opens the runtime's driver through the registry.
	"internal/daemon":    {"internal/api", "internal/atomicfile", "internal/door", "internal/driver", "internal/driver/registry", "internal/engine", "internal/imagestore", "internal/pipeline", "internal/secret", "internal/server", "internal/store"},
	"internal/server":    {"internal/api", "internal/dashboard", "internal/engine", "internal/httpguard", "internal/pipeline", "internal/plan", "internal/spec", "internal/store"},
	"internal/dashboard": {"internal/api", "internal/engine", "internal/pipeline", "internal/store"},
	// The engine keeps the use cases; its parts (front doors, health monitor,
	// reconcile loop, rollouts) are packages of their own, and it reads the image store.
	"internal/engine":    {"internal/api", "internal/canary", "internal/door", "internal/driver", "internal/frontdoor", "internal/health", "internal/imagestore", "internal/monitor", "internal/plan", "internal/reconcile", "internal/resolve", "internal/rollout", "internal/secret", "internal/spec", "internal/store"},
	"internal/frontdoor": {"internal/api", "internal/door", "internal/proxy", "internal/spec"},
	// The door process's core: what the doors serve and its control socket.
	"internal/door": {"internal/api", "internal/atomicfile", "internal/doortls", "internal/health", "internal/proxy"},
	// canary judges a canary's step from the door's counters (and a Prometheus).
	"internal/canary":    {"internal/door", "internal/spec"},
	"internal/monitor":   {"internal/health", "internal/spec"},
	"internal/reconcile": {},
	"internal/rollout":   {"internal/driver", "internal/plan", "internal/spec"},
	// pipeline reaches the engine only through its Engine interface.
	"internal/pipeline":  {"internal/api", "internal/bake", "internal/driver", "internal/gitsource", "internal/health", "internal/imagestore", "internal/resolve", "internal/sandbox", "internal/secret", "internal/spec", "internal/store"},
	"internal/gitsource": {},
	"internal/resolve":   {"internal/api", "internal/bake", "internal/imagestore", "internal/spec"},
	// bake reads docker:// bases through the Docker driver's dockerimage, so that the
	// Docker client stays out of it, and writes the images it bakes into imagestore.
	"internal/bake": {"internal/atomicfile", "internal/debian", "internal/driver/docker/dockerimage", "internal/imagestore", "internal/sandbox", "internal/spec"},
	// debian resolves, downloads and unpacks Debian packages: a library of bake's.
	"internal/debian": {"internal/atomicfile"},
	// The image store imports no driver and no engine: everything reads it, bake writes it.
	"internal/imagestore":                {"internal/atomicfile"},
	"internal/plan":                      {"internal/driver"},
	"internal/driver":                    {},
	"internal/driver/docker":             {"internal/driver"},
	"internal/driver/docker/dockerimage": {},
	"internal/driver/simdriver":          {"internal/driver"},
	"internal/driver/kubernetes":         {"internal/atomicfile", "internal/driver"},
	"internal/driver/faultdriver":        {"internal/driver"},
	"internal/driver/drivertest":         {"internal/driver"},
	// The one list of the concrete drivers.
	"internal/driver/registry": {"internal/driver", "internal/driver/docker", "internal/driver/kubernetes", "internal/driver/simdriver"},
	"internal/spec":            {},
	"internal/api":             {},
	"internal/store":           {},
	"internal/health":          {},
	"internal/proxy":           {"internal/httpguard"},
	"internal/httpguard":       {},
	"internal/atomicfile":      {},
	"internal/statedir":        {},
	"internal/systemdunit":     {},
	"internal/secret":          {"internal/atomicfile"},
	"internal/sandbox":         {},
	"internal/depcheck":        {},
	// The door's TLS: certificates by server name, redirects, the listener split.
	"internal/doortls": {},
	// Test support: other programs' servers run for a test (Pebble, the ACME server; a
	// Kubernetes control plane).
	"internal/testenv/proc":                {},
	"internal/testenv/pebble":              {"internal/testenv/proc"},
	"internal/testenv/kube":                {"internal/testenv/proc"},
	"internal/testenv/prometheus":          {"internal/testenv/proc"},
	"internal/testenv/kube/cmd/kube-build": {"internal/testenv/kube"},
	"test/e2e":                             {"internal/testenv/kube", "internal/testenv/pebble", "internal/testenv/prometheus"},
	// The benchmarks drive kiln through its API, as a user's tools would.
	"bench/harness":        {"internal/api", "internal/testenv/kube"},
	"bench/cmd/kiln-bench": {"bench/harness"},
	"bench/loadgen":        {},
	"bench/probe":          {},
}

// testAllowed lists what a package's tests may import besides what its code may: the
// simulated driver (and the fault injector over it) to run the core without Docker,
// the conformance suite, and the parts a test assembles around the package.
var testAllowed = map[string][]string{
	"internal/cli":                {"internal/driver/simdriver", "internal/pipeline"},
	"internal/daemon":             {"internal/bake", "internal/driver/simdriver", "internal/spec"},
	"internal/server":             {"internal/driver/simdriver"},
	"internal/dashboard":          {"internal/bake", "internal/driver/simdriver", "internal/imagestore", "internal/server", "internal/spec"},
	"internal/engine":             {"internal/bake", "internal/driver/faultdriver", "internal/driver/simdriver"},
	"internal/pipeline":           {"internal/driver/simdriver", "internal/engine"},
	"internal/rollout":            {"internal/driver/faultdriver", "internal/driver/simdriver", "internal/health"},
	"internal/plan":               {},
	"internal/driver/docker":      {"internal/driver/drivertest"},
	"internal/driver/simdriver":   {"internal/driver/drivertest"},
	"internal/driver/kubernetes":  {"internal/driver/drivertest", "internal/testenv/kube"},
	"internal/driver/registry":    {"internal/spec"},
	"internal/driver/faultdriver": {"internal/driver/simdriver"},
	"internal/doortls":            {"internal/testenv/pebble"},
	"internal/door":               {"internal/testenv/pebble"},
	"internal/canary":             {"internal/testenv/prometheus"},
}

// dockerClient is the Docker Engine client: only the Docker driver's packages import
// it (internal/driver/docker, and its dockerimage, which reads images out of the engine
// for bake's docker:// bases), and the end-to-end tests; loading images into the
// engine is the driver's alone.
const (
	dockerClient = "github.com/moby/moby/client"
	dockerDriver = "internal/driver/docker"
	dockerimage  = "internal/driver/docker/dockerimage"
	goGit        = "github.com/go-git/go-git/v5"
	gitSource    = "internal/gitsource"
	// The Kubernetes API's client and types: only the Kubernetes driver talks to a
	// cluster. (The reconcile loop takes client-go's work queue, which talks to none.)
	kubeAPI    = "k8s.io/api"
	kubeClient = "k8s.io/client-go"
	kubeDriver = "internal/driver/kubernetes"
	workqueue  = "k8s.io/client-go/util/workqueue"
)

// dockerimageUsers are the packages that may import dockerimage, tests included: bake,
// for docker:// bases, and the Docker driver.
var dockerimageUsers = map[string]bool{"internal/bake": true, dockerDriver: true}

// TestImports checks each package's imports against allowed, and its tests' against
// allowed and testAllowed together; and that only the Docker driver imports the
// Docker client, only the Kubernetes driver the Kubernetes client, and only the git
// source imports go-git, tests included (the end-to-end tests drive Docker and a
// cluster as their users' tools do).
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for {
		var p struct {
			ImportPath                         string
			Imports, TestImports, XTestImports []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		seen++
		pkg := strings.TrimPrefix(p.ImportPath, module+"/")
		if _, listed := allowed[pkg]; !listed {
			t.Errorf("%s is not in allowed: say what it may import", pkg)
		}
		check := func(imports []string, test bool) {
			ok := map[string]bool{pkg: true}
			for _, a := range allowed[pkg] {
				ok[a] = true
			}
			if test {
				for _, a := range testAllowed[pkg] {
					ok[a] = true
				}
			}
			what := "code imports"
			if test {
				what = "tests import"
			}
			for _, imp := range imports {
				if imp == dockerClient || strings.HasPrefix(imp, dockerClient+"/") {
					// End-to-end tests drive the real engine as a user would.
					if pkg != dockerDriver && !strings.HasPrefix(pkg, dockerDriver+"/") && pkg != "test/e2e" {
						t.Errorf("%s's %s the Docker client, which only %s may", pkg, what, dockerDriver)
					}
				}
				if (imp == goGit || strings.HasPrefix(imp, goGit+"/")) && pkg != gitSource {
					t.Errorf("%s's %s %s, which only %s may", pkg, what, imp, gitSource)
				}
				for _, k := range []string{kubeAPI, kubeClient} {
					// End-to-end tests exec into pods as kubectl does (client-go's
					// remotecommand), to show what kiln's admission policy refuses.
					e2eExec := pkg == "test/e2e" && k == kubeClient
					if (imp == k || strings.HasPrefix(imp, k+"/")) && imp != workqueue && pkg != kubeDriver && !e2eExec {
						t.Errorf("%s's %s %s, which only %s may", pkg, what, imp, kubeDriver)
					}
				}
				dep, isKiln := strings.CutPrefix(imp, module+"/")
				if !isKiln {
					continue
				}
				if !ok[dep] {
					t.Errorf("%s's %s %s, which is not allowed (see allowed and testAllowed in depcheck_test.go)", pkg, what, dep)
				}
				if dep == dockerimage && !dockerimageUsers[pkg] {
					t.Errorf("%s imports dockerimage, which only %v may", pkg, dockerimageUsers)
				}
			}
		}
		check(p.Imports, false)
		check(append(p.TestImports, p.XTestImports...), true)
	}
	if seen < 20 {
		t.Fatalf("go list listed %d packages: the check saw too little to mean anything", seen)
	}
}

// storeWriters are the methods of imagestore.Store that change the store, and
// writersOf the packages whose code (tests aside) may call each: bake bakes into the
// store, and the CLI's `kiln images prune` prunes it. Everything else only reads it
// (Find, Entries, Image, Blob, HasBlob).
var storeWriters = map[string][]string{
	"PutImage":      {"internal/bake"},
	"Record":        {"internal/bake"},
	"RecordSBOM":    {"internal/bake"},
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
