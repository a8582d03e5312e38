package spec

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// checkout is a spec directory with a file inside, a secret beside it, and symlinks
// leading inside and out.
func checkout(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "checkout")
	for _, d := range []string{dir, filepath.Join(dir, "sub"), filepath.Join(dir, "oci")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "inside.txt"), "inside")
	write(filepath.Join(dir, "oci", "oci-layout"), "{}")
	write(filepath.Join(base, "secret.txt"), "secret")
	for name, target := range map[string]string{"in-link": "inside.txt", "out-link": "../secret.txt", "abs-link": filepath.Join(base, "secret.txt")} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestConfinedFileFunctions(t *testing.T) {
	dir := checkout(t)
	secret := filepath.Join(filepath.Dir(dir), "secret.txt")
	tests := []struct {
		expr    string
		want    string // the label's value, or
		wantErr string // part of the error when confined
	}{
		{expr: `file("inside.txt")`, want: "inside"},
		{expr: `file("./sub/../inside.txt")`, want: "inside"},
		{expr: `file("in-link")`, want: "inside"},
		{expr: `tostring(fileexists("inside.txt"))`, want: "true"},
		{expr: `tostring(fileexists("nope.txt"))`, want: "false"},
		{expr: `file("../secret.txt")`, wantErr: "a pipeline's spec may only name files inside its checkout"},
		{expr: `file("` + secret + `")`, wantErr: "a pipeline's spec may only name files inside its checkout"},
		{expr: `file("out-link")`, wantErr: "a pipeline's spec may only name files inside its checkout"},
		{expr: `file("abs-link")`, wantErr: "a pipeline's spec may only name files inside its checkout"},
		{expr: `tostring(fileexists("../secret.txt"))`, wantErr: "a pipeline's spec may only name files inside its checkout"},
		{expr: `tostring(fileexists("out-link"))`, wantErr: "a pipeline's spec may only name files inside its checkout"},
		{expr: `file("sub")`, wantErr: "sub is a directory, not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			src := "image \"a\" {\n  from   = \"scratch\"\n  labels = { v = " + tt.expr + " }\n}\n"
			opts := testOpts
			opts.Confine = true
			cfg, diags := Parse(filepath.Join(dir, "kiln.hcl"), []byte(src), opts)
			if tt.wantErr != "" {
				if !strings.Contains(diags.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", diags, tt.wantErr)
				}
				if s := diags[0].Subject; s == nil || s.Start.Line != 3 {
					t.Errorf("error not at the call: %v", s)
				}
				// Without Confine, local specs read anywhere, as before.
				if strings.Contains(tt.expr, "secret") || strings.Contains(tt.expr, "link") {
					cfg, diags := Parse(filepath.Join(dir, "kiln.hcl"), []byte(src), testOpts)
					if diags.HasErrors() {
						t.Fatalf("unconfined: %v", diags)
					}
					if v := cfg.Images[0].Labels["v"]; v != "secret" && v != "true" {
						t.Errorf("unconfined: got %q", v)
					}
				}
				return
			}
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			if got := cfg.Images[0].Labels["v"]; got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestFileReadsOnlyRegularFiles checks file() refuses what is not a regular file, or is
// too large, in both modes; today file("/dev/zero") reads until memory runs out.
func TestFileReadsOnlyRegularFiles(t *testing.T) {
	dir := checkout(t)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, MaxFileBytes+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "zero")); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, wantErr string }{
		{"/dev/zero", "is a device, not a regular file"},
		{"zero", "is a device, not a regular file"},
		{"fifo", "is a named pipe, not a regular file"},
		{".", "is a directory, not a regular file"},
		{"big", "is larger than 1048576 bytes"},
	}
	for _, confine := range []bool{false, true} {
		for _, tt := range tests {
			if confine && strings.HasPrefix(tt.path, "/") {
				continue
			}
			wantErr := tt.wantErr
			if confine && tt.path == "zero" {
				wantErr = outsideCheckout // the link leads out before it leads to a device
			}
			src := "image \"a\" {\n  from   = \"scratch\"\n  labels = { v = file(\"" + tt.path + "\") }\n}\n"
			opts := testOpts
			opts.Confine = confine
			start := time.Now()
			_, diags := Parse(filepath.Join(dir, "kiln.hcl"), []byte(src), opts)
			if !strings.Contains(diags.Error(), wantErr) {
				t.Errorf("confine=%v file(%q): got %v, want %q", confine, tt.path, diags, wantErr)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("file(%q) took %v", tt.path, time.Since(start))
			}
		}
	}
}

func TestConfinedImagePaths(t *testing.T) {
	dir := checkout(t)
	outside := filepath.Dir(dir)
	tests := []struct{ name, block, attrLine string }{
		{"copy absolute", "copy \"" + outside + "\" {\n    to = \"/x\"\n  }", "3"},
		{"copy dotdot", "copy \"../secret.txt\" {\n    to = \"/x\"\n  }", "3"},
		{"go dir", "go {\n    package = \".\"\n    dir     = \"..\"\n  }", "5"},
		{"go package", "go {\n    package = \"../..\"\n  }", "4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "image \"a\" {\n  from = \"scratch\"\n  " + tt.block + "\n}\n"
			opts := testOpts
			opts.Confine = true
			_, diags := Parse(filepath.Join(dir, "kiln.hcl"), []byte(src), opts)
			if len(diags) != 1 || diags[0].Summary != "Path outside the checkout" || !strings.Contains(diags[0].Detail, outsideCheckout) {
				t.Fatalf("got %v", diags)
			}
			if got := diags[0].Subject.Start.Line; tt.attrLine != "" && got != int(tt.attrLine[0]-'0') {
				t.Errorf("at line %d, want %s", got, tt.attrLine)
			}
		})
	}
	for _, from := range []string{"../", outside, "./oci/../../checkout"} {
		src := "image \"a\" {\n  from = \"" + from + "\"\n}\n"
		opts := testOpts
		opts.Confine = true
		_, diags := Parse(filepath.Join(dir, "kiln.hcl"), []byte(src), opts)
		if len(diags) != 1 || diags[0].Summary != "Path outside the checkout" || diags[0].Subject.Start.Line != 2 {
			t.Errorf("from %q: got %v", from, diags)
		}
		if _, diags := Parse(filepath.Join(dir, "kiln.hcl"), []byte(src), testOpts); diags.HasErrors() && strings.Contains(diags.Error(), "outside") {
			t.Errorf("from %q unconfined: %v", from, diags)
		}
	}
	ok := "image \"a\" {\n  from = \"./oci\"\n  copy \"inside.txt\" {\n    to = \"/x\"\n  }\n}\n"
	opts := testOpts
	opts.Confine = true
	if _, diags := Parse(filepath.Join(dir, "kiln.hcl"), []byte(ok), opts); diags.HasErrors() {
		t.Errorf("paths inside: %v", diags)
	}
}

// TestBoundedEvaluation checks that expressions which multiply their work are stopped:
// nested for expressions and doubling functions.
func TestBoundedEvaluation(t *testing.T) {
	x := `split("", "` + strings.Repeat("x", 400) + `")`
	tests := []struct{ expr, wantErr string }{
		{`length([for a in ` + x + ` : [for b in ` + x + ` : [for c in ` + x + ` : 1]]])`, "For expressions do too much work"},
		{`"%{for a in ` + x + `}%{for b in ` + x + `}%{for c in ` + x + `}x%{endfor}%{endfor}%{endfor}"`, "For expressions do too much work"},
		{strings.Repeat("replace(", 40) + `"a"` + strings.Repeat(`, "a", "aa")`, 40), "more than the 1048576 (1 MiB) a function may return"},
		{`length(` + strings.Repeat("concat(", 40) + `["a"]` + strings.Repeat(`, ["a"])`, 40) + `)`, ""},
		{`jsonencode(jsondecode("` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000) + `"))`, "nests more than 64 levels"},
		{`join(",", [for a in ["a", "b"] : upper(a)])`, ""},
	}
	for _, tt := range tests {
		start := time.Now()
		_, diags := Parse("kiln.hcl", []byte(attr(tt.expr)), testOpts)
		if elapsed := time.Since(start); elapsed > 10*time.Second { // unbounded, these run for hours
			t.Errorf("%.60s: took %v", tt.expr, elapsed)
		}
		switch {
		case tt.wantErr == "" && diags.HasErrors() && !strings.Contains(diags.Error(), "string required"):
			t.Errorf("%.60s: %v", tt.expr, diags)
		case tt.wantErr != "" && !strings.Contains(diags.Error(), tt.wantErr):
			t.Errorf("%.60s: got %v, want %q", tt.expr, diags, tt.wantErr)
		}
	}
}

// TestConfinedJSONHasNoFor checks that a confined JSON spec may not use for
// expressions, whose templates HCL parses only as it evaluates them.
func TestConfinedJSONHasNoFor(t *testing.T) {
	for _, user := range []string{`${join(\",\", [for a in [\"a\"] : a])}`, `%{for a in [\"a\"]}${a}%{endfor}`} {
		src := `{"image": {"a": {"from": "scratch", "user": "` + user + `"}}}`
		if _, diags := Parse("kiln.hcl.json", []byte(src), testOpts); diags.HasErrors() {
			t.Errorf("unconfined %s: %v", user, diags)
		}
		opts := testOpts
		opts.Confine = true
		_, diags := Parse("kiln.hcl.json", []byte(src), opts)
		if len(diags) != 1 || diags[0].Summary != "For expression not allowed" || diags[0].Subject == nil {
			t.Errorf("confined %s: %v", user, diags)
		}
	}
}
