package bake

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-build/kiln/internal/sandbox"
)

// TestMain lets the test binary be a sandbox's first process, as the kiln binary is.
func TestMain(m *testing.M) {
	sandbox.Init()
	if filepath.Base(os.Args[0]) == "go" { // TestSandboxedBuildIsIsolated's go command
		os.Exit(probeBuild())
	}
	os.Exit(m.Run())
}
