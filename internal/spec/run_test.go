package spec

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRunAndCopyFrom decodes a multi-stage spec: a run step over a builder image and
// copies out of the image it makes.
func TestRunAndCopyFrom(t *testing.T) {
	cfg, diags := Load("testdata/steps/kiln.hcl", testOpts)
	if len(diags) > 0 {
		t.Fatalf("unexpected diagnostics: %v", diags)
	}
	golden(t, "steps/kiln.hcl.golden", dump(t, cfg))
	r := cfg.Image("build").Steps[0].(*Run)
	if want := []string{"/out", "/work/src/hello.o"}; !slices.Equal(r.Outputs, want) {
		t.Errorf("outputs %v, want %v (relative ones in the work directory)", r.Outputs, want)
	}
	if dir, _ := filepath.Abs("testdata/steps/src"); len(r.Inputs) != 1 || r.Inputs[0].Path != dir {
		t.Errorf("inputs %+v, want the spec's src directory", r.Inputs)
	}
	for name, want := range map[string][]string{"gcc": nil, "build": {"gcc"}, "app": {"build"}} {
		if got := cfg.Image(name).Needs(); !slices.Equal(got, want) {
			t.Errorf("image %s needs %v, want %v", name, got, want)
		}
	}
}

// TestRunDefaults: the work directory is /src when not given, outputs are absolute.
func TestRunDefaults(t *testing.T) {
	cfg, diags := Parse("kiln.hcl", []byte(`
image "b" {
  from = "debian:bookworm-slim"
  run "x" {
    command = ["/bin/true"]
    outputs = ["out", "/dist"]
  }
}
`), testOpts)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	r := cfg.Images[0].Steps[0].(*Run)
	if r.Workdir != DefaultWorkdir || !slices.Equal(r.Outputs, []string{"/src/out", "/dist"}) || r.Network {
		t.Errorf("got workdir %s, outputs %v, network %v", r.Workdir, r.Outputs, r.Network)
	}
	if r.Describe() != "run x" {
		t.Errorf("Describe: %q", r.Describe())
	}
}

// TestRunProblems checks each rule of run steps and copies from images, one spec each:
// the summary and the text it is reported at.
func TestRunProblems(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello.c"), []byte("int main;"), 0o644)
	for _, tc := range []struct {
		name, body string
		confine    bool
		summary    string
		at         string // the source text of the problem's range
	}{
		{"missing input", `run "x" {
  command = ["cc"]
  inputs = ["hello.c", "nope.c"]
  outputs = ["/out"]
}`, false, "Missing input", `"nope.c"`},
		{"input outside", `run "x" {
  command = ["cc"]
  inputs = ["/etc/passwd"]
  outputs = ["/out"]
}`, false, "Input outside the spec's directory", `"/etc/passwd"`},
		{"output is root", `run "x" {
  command = ["cc"]
  outputs = ["/"]
}`, false, "Output outside the sandbox", `"/"`},
		{"output in /dev", `run "x" {
  command = ["cc"]
  outputs = ["/dev/shm/x"]
}`, false, "Output outside the sandbox", `"/dev/shm/x"`},
		{"output leaves the work directory", `run "x" {
  command = ["cc"]
  workdir = "/w"
  outputs = ["../x"]
}`, false, "Output outside the sandbox", `"../x"`},
		{"output holds the work directory", `run "x" {
  command = ["cc"]
  workdir = "/w/src"
  outputs = ["/w"]
}`, false, "Overlapping directories", `"/w"`},
		{"work directory in /proc", `run "x" {
  command = ["cc"]
  workdir = "/proc/1"
  outputs = ["/out"]
}`, false, "Output outside the sandbox", `"/proc/1"`},
		{"cache in an output", `run "x" {
  command = ["cc"]
  outputs = ["/out"]
  cache = ["/out/c"]
}`, false, "Overlapping directories", `"/out/c"`},
		{"no command", `run "x" {
  command = []
  outputs = ["/out"]
}`, false, "Invalid command", `[]`},
		{"no outputs attribute", `run "x" {
  command = ["cc"]
}`, false, "Missing required argument", ""}, // HCL's, at the end of the block
		{"bad env name", `run "x" {
  command = ["cc"]
  outputs = ["/out"]
  env = { "A B" = "1" }
}`, false, "Invalid environment variable name", `{ "A B" = "1" }`},
		{"network in a pipeline", `run "x" {
  command = ["cc"]
  outputs = ["/out"]
  network = true
}`, true, "Network not allowed here", `true`},
		{"bad step name", `run "X" {
  command = ["cc"]
  outputs = ["/out"]
}`, false, "Invalid run step name", `"X"`},
		{"run on scratch", `}

image "s" {
  from = "scratch"
  run "x" {
    command = ["cc"]
    outputs = ["/out"]
  }`, false, "Run step on scratch", `run "x"`},
		{"copy from a string", `copy "/out" {
  from = "other"
  to = "/out"
}`, false, "Invalid image reference", `"other"`},
		{"copy from a relative path", `copy "out" {
  from = image.other
  to = "/out"
}`, false, "Path must be absolute", `"out"`},
		{"copy from an unknown image", `copy "/out" {
  from = image.othr
  to = "/out"
}`, false, "Reference to undeclared image", `image.othr`},
		{"copy from itself", `copy "/out" {
  from = image.b
  to = "/out"
}`, false, "Cycle between images", `image.b`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "image \"other\" {\n  from = \"scratch\"\n}\n\nimage \"b\" {\n  from = image.other\n" + tc.body + "\n}\n"
			opts := testOpts
			opts.Confine = tc.confine
			_, diags := Parse(filepath.Join(dir, "kiln.hcl"), []byte(src), opts)
			var found bool
			for _, d := range diags {
				if d.Summary != tc.summary {
					continue
				}
				found = true
				if d.Subject == nil {
					t.Fatalf("%s: no range", d.Summary)
				}
				if got := src[d.Subject.Start.Byte:d.Subject.End.Byte]; got != tc.at {
					t.Errorf("%s at %q, want at %q", d.Summary, got, tc.at)
				}
			}
			if !found {
				t.Errorf("no %q among %v", tc.summary, diags)
			}
		})
	}
}

// TestCycleThroughCopies: a cycle of bases and copies is reported once, at the copy,
// naming every need on the way.
func TestCycleThroughCopies(t *testing.T) {
	_, diags := Parse("kiln.hcl", []byte(`
image "a" {
  from = image.b
}
image "b" {
  from = image.c
}
image "c" {
  from = "scratch"
  copy "/x" {
    from = image.a
    to   = "/x"
  }
}
`), testOpts)
	var msgs []string
	for _, d := range diags {
		msgs = append(msgs, d.Summary+": "+d.Detail)
	}
	want := "Cycle between images: The images form a cycle: c copies from a, a is built on b, b is built on c. An image cannot need itself to be baked first."
	if !slices.Equal(msgs, []string{want}) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(msgs, "\n"), want)
	}
}

// TestFormatSteps: kiln fmt aligns a run step and a copy from an image like any block.
func TestFormatSteps(t *testing.T) {
	src := []byte("image \"b\" {\n  from = image.a\n  run \"cc\" {\n    command = [\"cc\"]\n    outputs = [\"/out\"]\n    network = false\n  }\n  copy \"/out\" {\n    from = image.a\n    to = \"/out\"\n  }\n}\n")
	got, diags := Format("kiln.hcl", src)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	want := "image \"b\" {\n  from = image.a\n  run \"cc\" {\n    command = [\"cc\"]\n    outputs = [\"/out\"]\n    network = false\n  }\n  copy \"/out\" {\n    from = image.a\n    to   = \"/out\"\n  }\n}\n"
	if string(got) != want {
		t.Errorf("formatted:\n%s\nwant:\n%s", got, want)
	}
}
