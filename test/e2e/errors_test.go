package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every bad input gets a clear error naming the cause and the place, a non-zero exit,
// and leaves the store as it was.

func TestMalformedSpec(t *testing.T) {
	dir := example(t)
	good := digestOf(t, ok(t, dir, nil, "bake").stdout, "hello")
	spec, _ := os.ReadFile(filepath.Join(dir, "kiln.hcl"))
	os.WriteFile(filepath.Join(dir, "kiln.hcl"), []byte(strings.Replace(string(spec), "expose = [8080]", "expose = [8080\n  colour = ", 1)), 0o644)
	fails(t, dir, nil, 1, []string{"Error:", "on kiln.hcl line"}, "bake")
	fails(t, dir, nil, 1, []string{"kiln.hcl is not valid"}, "validate")
	assertStoreHas(t, dir, good)
}

func TestValidateReportsEveryProblemAsJSON(t *testing.T) {
	dir := example(t)
	os.WriteFile(filepath.Join(dir, "kiln.hcl"), []byte(`image "hello" {
  from   = "scratch"
  colour = "blue"
  env    = { V = var.nope }
  copy "no-such-dir" {
    to = "/srv"
  }
}
image "hello" {
  from = "scratch"
}
`), 0o644)
	r := run(t, dir, nil, "validate", "-json")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	var res struct {
		Valid       bool
		ErrorCount  int `json:"error_count"`
		Diagnostics []struct {
			Summary string
			Range   struct {
				Filename string
				Start    struct{ Line, Column int }
			}
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("validate -json printed no JSON: %v\n%s", err, r.stdout)
	}
	var got []string
	for _, d := range res.Diagnostics {
		got = append(got, d.Summary)
		if d.Range.Filename != "kiln.hcl" || d.Range.Start.Line == 0 || d.Range.Start.Column == 0 {
			t.Errorf("%q has no file:line:column: %+v", d.Summary, d.Range)
		}
	}
	for _, want := range []string{"Unsupported argument", "Reference to undeclared variable", "Missing source file", "Duplicate image"} {
		if !strings.Contains(strings.Join(got, "|"), want) {
			t.Errorf("validate -json lacks %q; got %v", want, got)
		}
	}
	if res.Valid || res.ErrorCount != 4 {
		t.Errorf("valid=%v error_count=%d, want false and 4", res.Valid, res.ErrorCount)
	}
}

func TestMissingSourceFile(t *testing.T) {
	dir := example(t)
	os.RemoveAll(filepath.Join(dir, "static"))
	fails(t, dir, nil, 1, []string{"Missing source file", "on kiln.hcl line 22", "There is no file or directory at static"}, "bake")
}

func TestGoPackageThatDoesNotCompile(t *testing.T) {
	dir := example(t)
	good := digestOf(t, ok(t, dir, nil, "bake").stdout, "hello")
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { notDefined() }\n"), 0o644)
	fails(t, dir, nil, 1, []string{`Baking image "hello" failed`, "on kiln.hcl line 17", "go build . failed", "undefined: notDefined"}, "bake")
	assertStoreHas(t, dir, good)
}

func TestUnreachableRegistry(t *testing.T) {
	dir := example(t)
	fails(t, dir, nil, 1, []string{"cannot reach the registry at 127.0.0.1:1"}, "bake", "--push", "127.0.0.1:1/team")
	// The bake itself succeeded and is kept: only the push failed.
	if r := ok(t, dir, nil, "images"); !strings.Contains(r.stdout, "hello") {
		t.Errorf("images after a failed push:\n%s", r.stdout)
	}
}

func TestUnreachableDockerEngine(t *testing.T) {
	dir := example(t)
	fails(t, dir, []string{"DOCKER_HOST=unix:///nonexistent/docker.sock"}, 1,
		[]string{"cannot reach the Docker engine at unix:///nonexistent/docker.sock", "is it running?"}, "bake", "--load")
}

func TestNoSpec(t *testing.T) {
	fails(t, t.TempDir(), nil, 1, []string{"no kiln.hcl", "-C DIR"}, "bake")
}

func TestUnknownImage(t *testing.T) {
	fails(t, example(t), nil, 1, []string{`no image "nope"`, "it has: hello"}, "bake", "nope")
}

func TestFmtCheck(t *testing.T) {
	dir := example(t)
	ok(t, dir, nil, "fmt", "-check")
	os.WriteFile(filepath.Join(dir, "kiln.hcl"), []byte("image \"hello\" {\nfrom=\"scratch\"\n}\n"), 0o644)
	r := fails(t, dir, nil, 3, []string{"need formatting"}, "fmt", "-check")
	if strings.TrimSpace(r.stdout) != "kiln.hcl" {
		t.Errorf("fmt -check listed %q", r.stdout)
	}
	ok(t, dir, nil, "fmt")
	got, _ := os.ReadFile(filepath.Join(dir, "kiln.hcl"))
	if string(got) != "image \"hello\" {\n  from = \"scratch\"\n}\n" {
		t.Errorf("fmt wrote %q", got)
	}
}

func TestImagesSBOMAndPrune(t *testing.T) {
	dir := example(t)
	first := digestOf(t, ok(t, dir, nil, "bake", "-var", "version=1.0").stdout, "hello")
	second := digestOf(t, ok(t, dir, []string{"KILN_VAR_version=2.0"}, "bake").stdout, "hello")
	if first == second {
		t.Fatal("changing the version variable did not change the image")
	}
	r := ok(t, dir, nil, "images")
	if !strings.Contains(r.stdout, "NAME") || strings.Count(r.stdout, "hello") != 2 {
		t.Errorf("images:\n%s", r.stdout)
	}
	sbom := ok(t, dir, nil, "sbom", "hello").stdout
	if !strings.Contains(sbom, `"bomFormat": "CycloneDX"`) || !strings.Contains(sbom, second) {
		t.Errorf("sbom hello is not the current image's CycloneDX document:\n%.400s", sbom)
	}
	ok(t, dir, nil, "sbom", "hello@"+first)
	r = ok(t, dir, nil, "images", "prune")
	if !strings.Contains(r.stdout, "removed hello@"+first) {
		t.Errorf("prune:\n%s%s", r.stdout, r.stderr)
	}
	fails(t, dir, nil, 1, []string{"not found"}, "sbom", "hello@"+first)
	checkStore(t, filepath.Join(dir, ".kiln", "images"))
}

func TestBakeJSON(t *testing.T) {
	dir := example(t)
	r := ok(t, dir, nil, "bake", "-json")
	var sawResult bool
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bake -json printed a non-JSON line %q", line)
		}
		if m["type"] == "result" && m["image"] == "hello" && strings.HasPrefix(m["digest"].(string), "sha256:") {
			sawResult = true
		}
	}
	if !sawResult {
		t.Errorf("no result line:\n%s", r.stdout)
	}
}

func TestVersionAndHelp(t *testing.T) {
	if r := ok(t, ".", nil, "version"); !strings.HasPrefix(r.stdout, "kiln ") {
		t.Errorf("version: %q", r.stdout)
	}
	for _, verb := range []string{"bake", "validate", "fmt", "images", "sbom", "version", "serve", "up", "plan",
		"apply", "status", "history", "rollback", "destroy", "events", "logs"} {
		if r := ok(t, ".", nil, verb, "--help"); !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("kiln %s --help has no examples:\n%s", verb, r.stdout)
		}
	}
}

func assertStoreHas(t *testing.T, dir, digest string) {
	t.Helper()
	r := ok(t, dir, nil, "images", "-json")
	if !strings.Contains(r.stdout, digest) {
		t.Errorf("store lost %s:\n%s", digest, r.stdout)
	}
	checkStore(t, filepath.Join(dir, ".kiln", "images"))
}
