package harness

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseLdd(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd)\n" +
		"\tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f02)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f03)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007f04)\n"
	got := parseLdd(out)
	want := []string{"/lib/x86_64-linux-gnu/libssl.so.3", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}
	if !slices.Equal(got, want) {
		t.Errorf("parseLdd = %q, want %q", got, want)
	}
}

// The root filesystem holds each file at its own path, through symbolic links, with
// its parent directories, and the empty directories asked for.
func TestWriteRootfs(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "usr", "sbin", "haproxy")
	lib := filepath.Join(dir, "lib", "libx.so.1.2")
	for p, c := range map[string]string{bin: "binary", lib: "library"} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "lib", "libx.so.1")
	if err := os.Symlink("libx.so.1.2", link); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := writeRootfs(&b, []string{bin, link}, []string{"/tmp", "/etc"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	modes := map[string]int64{}
	tr := tar.NewReader(&b)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		c, _ := io.ReadAll(tr)
		got[h.Name], modes[h.Name] = string(c), h.Mode
		if h.Typeflag == tar.TypeDir {
			got[h.Name] = "dir"
		}
	}
	rel := func(p string) string { return strings.TrimPrefix(p, "/") }
	if got[rel(bin)] != "binary" || got[rel(link)] != "library" {
		t.Errorf("files: %v", got)
	}
	if got["tmp/"] != "dir" || modes["tmp/"] != 0o1777 || got["etc/"] != "dir" {
		t.Errorf("empty directories: %v %o", got, modes["tmp/"])
	}
	for d := filepath.Dir(rel(bin)); d != "."; d = filepath.Dir(d) {
		if got[d+"/"] != "dir" {
			t.Errorf("no directory %s/ before %s: %v", d, rel(bin), got)
		}
	}
}

func TestHAProxyConfig(t *testing.T) {
	cfg := haproxyConfig("bench-1-swarm-10", 10)
	for _, want := range []string{
		"server-template task 22 tasks.bench-1-swarm-10:8080\n", // both versions run during start-first
		"nameserver dns 127.0.0.11:53",                          // Swarm's DNS
		"option httpchk GET /healthz",
		"check inter 1s fall 1 rise 1 resolvers docker",
		"retry-on all-retryable-errors",
		"bind :8080",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("the configuration lacks %q:\n%s", want, cfg)
		}
	}
}

func TestRolloutFleets(t *testing.T) {
	if got, err := rolloutFleets(nil); err != nil || !slices.Equal(got, []int{4, 10}) {
		t.Errorf("default fleets = %v, %v", got, err)
	}
	if got, err := rolloutFleets([]string{"10", "6", "10"}); err != nil || !slices.Equal(got, []int{10, 6}) {
		t.Errorf("fleets 10 6 10 = %v, %v", got, err)
	}
	for _, bad := range []string{"1", "four", "cold"} {
		if _, err := rolloutFleets([]string{bad}); err == nil {
			t.Errorf("fleet %q was taken", bad)
		}
	}
	if rolloutName("kiln", 4) != "kiln" || rolloutName("swarm-hc", 10) != "swarm-hc/10" {
		t.Error("rolloutName")
	}
}
