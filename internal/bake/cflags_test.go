package bake

import (
	"testing"

	"github.com/kiln-build/kiln/internal/spec"
)

// Flags that made the C toolchain write files or load a commit's program (each was
// used to run code as the daemon) are refused; ordinary flags pass.
func TestCFlagsAndLdflags(t *testing.T) {
	for _, c := range []struct {
		env     map[string]string
		ldflags []string
		ok      bool
	}{
		{env: map[string]string{"CGO_CFLAGS": "-O2 -g -Wall -Wno-unused -DFOO=1 -UBAR -I./include -std=c11 -march=x86-64-v2 -fPIC -fno-strict-aliasing"}, ok: true},
		{env: map[string]string{"CGO_LDFLAGS": "-L./lib -lsqlite3 -pthread -static"}, ok: true},
		{ldflags: []string{"-s", "-w", "-X main.version=1.2", "-extldflags=-static"}, ok: true},
		{ldflags: []string{"-linkmode", "external", "-extldflags", "'-static -lm'"}, ok: true},
		{env: map[string]string{"CGO_CFLAGS": "-MD -MF/tmp/kiln-pwned -MT'id>/tmp/x;#'"}},
		{env: map[string]string{"CGO_LDFLAGS": "-Wl,-O1,-plugin=./evil.so"}},
		{env: map[string]string{"CGO_CFLAGS": "--prefix=/tmp/evil"}},
		{env: map[string]string{"CGO_CFLAGS": "@rsp"}},
		{env: map[string]string{"CGO_CFLAGS": "-include/etc/shadow"}},
		{env: map[string]string{"CGO_CFLAGS": "-fdump-tree-all"}},
		{env: map[string]string{"CGO_CFLAGS": "-fplugin=./x.so"}},
		{env: map[string]string{"CGO_CFLAGS": "-B/tmp"}},
		{ldflags: []string{"-extldflags=-Wl,-plugin=./evil.so"}},
		{ldflags: []string{"-extldflags", "'-static -B/tmp'"}},
		{ldflags: []string{"-extld=/tmp/evil"}},
		{ldflags: []string{"-tmpdir=/tmp"}},
		{ldflags: []string{"-linkmode=evil"}},
	} {
		err := checkGoStep(&spec.GoBuild{Package: ".", CGO: true, Env: c.env, Ldflags: c.ldflags})
		if (err == nil) != c.ok {
			t.Errorf("env %v ldflags %q: %v, want ok = %v", c.env, c.ldflags, err, c.ok)
		}
	}
}
