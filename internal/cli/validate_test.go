package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateShowsRouteConflicts: kiln validate prints a conflict between two services
// at the later one, with the file and line of both.
func TestValidateShowsRouteConflicts(t *testing.T) {
	file := filepath.Join(t.TempDir(), "kiln.hcl")
	src := `service "web" {
  image  = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  port   = 8080
  listen = "127.0.0.1:8090"
  hosts  = ["example.com"]
}

service "admin" {
  image  = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  port   = 8080
  listen = "127.0.0.1:8090"
  hosts  = ["Example.com"]
}
`
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, "validate", "--file", file)
	for _, want := range []string{
		"Error: Duplicate route",
		"on " + file + " line 12, in service \"admin\":",
		`Services "web" (` + file + `:1) and "admin" (` + file + `:8) both take the host "example.com"`,
		"is not valid: 1 error.",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("kiln validate printed no %q:\n%s", want, stderr)
		}
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	// With a path of its own, admin shares the address.
	if err := os.WriteFile(file, []byte(strings.Replace(src, `hosts  = ["Example.com"]`, `hosts  = ["Example.com"]
  path   = "/admin"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := run(t, "validate", "--file", file); code != 0 || !strings.Contains(stdout, "Success!") {
		t.Errorf("exit %d: %s%s", code, stdout, stderr)
	}
}
