package depcheck

import (
	"encoding/json"
	"io"
	"os/exec"
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
	"cmd/kiln":        {"internal/cli", "internal/sandbox"},
	"internal/cli":    {"internal/spec", "internal/bake", "internal/atomicfile", "internal/api", "internal/engine", "internal/server", "internal/store", "internal/statedir", "internal/secret", "internal/driver/docker"},
	"internal/server": {"internal/api", "internal/dashboard", "internal/engine", "internal/httpguard", "internal/plan", "internal/spec", "internal/store", "internal/driver/simdriver"},
	// The dashboard's tests run it behind the real server (which imports it), on the
	// simulated driver.
	"internal/dashboard":        {"internal/api", "internal/engine", "internal/store", "internal/server", "internal/driver/simdriver", "internal/bake", "internal/spec"},
	"internal/driver/simdriver": {"internal/driver"},
	// The engine's tests run it on the simulated driver.
	"internal/engine": {"internal/api", "internal/secret", "internal/sandbox", "internal/bake", "internal/driver", "internal/health", "internal/plan", "internal/proxy", "internal/rollout", "internal/spec", "internal/store", "internal/driver/simdriver"},
	// The rollout's benchmark runs it on the simulated driver.
	"internal/rollout": {"internal/driver", "internal/plan", "internal/spec", "internal/driver/simdriver"},
	// bake reads docker:// bases and loads images (--load) through dockerimage, so that
	// the Docker client stays out of it.
	"internal/bake":              {"internal/spec", "internal/atomicfile", "internal/sandbox", "internal/dockerimage"},
	"internal/dockerimage":       {},
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
	// The benchmark harness drives a daemon through its API client, like the CLI.
	"bench/harness":        {"internal/api"},
	"bench/cmd/kiln-bench": {"bench/harness"},
}

// dockerClient is the Docker Engine client, and dockerClients the packages whose code
// (tests aside) may import it: the driver, and dockerimage, which moves images between
// the store and the engine for bake.
const dockerClient = "github.com/moby/moby/client"

var dockerClients = map[string]bool{"internal/driver/docker": true, "internal/dockerimage": true}

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
		}
	}
}
