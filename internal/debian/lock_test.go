package debian

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func testLock() *Lock {
	l := &Lock{}
	l.Put(&Set{
		Key: "web", Arch: "amd64", Request: []string{"ca-certificates", "python3"},
		Repositories: []string{"http://deb.debian.org/debian bookworm main", "http://deb.debian.org/debian-security bookworm-security main"},
		Packages: []Package{
			{Name: "ca-certificates", Version: "20230311", Arch: "all", Suite: "bookworm", URL: "http://deb.debian.org/debian/pool/main/c/ca-certificates/ca-certificates_20230311_all.deb", Size: 153476, SHA256: strings.Repeat("ab", 32)},
			{Name: "libc6", Version: "2.36-9+deb12u10", Arch: "amd64", Suite: "bookworm-security", URL: "http://deb.debian.org/debian-security/pool/updates/main/g/glibc/libc6_2.36-9+deb12u10_amd64.deb", Size: 2757936, SHA256: strings.Repeat("cd", 32)},
		},
	})
	l.Put(&Set{Key: "api", Arch: "arm64", Request: []string{"tzdata"}, Repositories: []string{"http://deb.debian.org/debian bookworm main"},
		Packages: []Package{{Name: "tzdata", Version: "2025b-0+deb12u1", Arch: "all", Suite: "bookworm", URL: "http://deb.debian.org/debian/pool/main/t/tzdata/tzdata_2025b-0+deb12u1_all.deb", Size: 255000, SHA256: strings.Repeat("ef", 32)}}})
	return l
}

func TestLockEncoding(t *testing.T) {
	l := testLock()
	got := l.Encode()
	golden := filepath.Join("testdata", "kiln.lock.hcl")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("Encode differs from %s (run with -update after checking):\n%s", golden, got)
	}
	back, err := ParseLock(got, "kiln.lock.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, l) {
		t.Errorf("the lock read back differs:\n got %+v\nwant %+v", back, l)
	}
	p := filepath.Join(t.TempDir(), LockFile)
	if err := l.Write(p); err != nil {
		t.Fatal(err)
	}
	read, err := ReadLock(p)
	if err != nil || !reflect.DeepEqual(read, l) {
		t.Errorf("ReadLock: %v", err)
	}
	if none, err := ReadLock(filepath.Join(t.TempDir(), LockFile)); err != nil || len(none.Sets) != 0 {
		t.Errorf("ReadLock of no file: %v %v", none, err)
	}
}

func TestLockParseErrors(t *testing.T) {
	for _, src := range []string{
		`debian "web" {`,
		`debian "web" { arch = "amd64" }`,
		"debian \"web\" {\n arch = \"amd64\"\n packages = []\n repositories = []\n package \"x\" {\n version = \"1\"\n arch = \"all\"\n suite = \"s\"\n url = \"u\"\n size = 1\n sha256 = \"short\"\n }\n}\n",
	} {
		if _, err := ParseLock([]byte(src), "kiln.lock.hcl"); err == nil || !strings.Contains(err.Error(), "kiln.lock.hcl") {
			t.Errorf("%q: %v", src, err)
		}
	}
}

func TestDiff(t *testing.T) {
	old := testLock().Set("web")
	next := testLock().Set("web")
	next.Packages[1].Version = "2.36-9+deb12u11"
	next.Packages = append(next.Packages, Package{Name: "zlib1g", Version: "1:1.2.13"})
	next.Packages[0].SHA256 = strings.Repeat("00", 32)
	got := Diff(old, next)
	want := []Change{
		{Name: "ca-certificates", Old: "20230311 (sha256:abababababab)", New: "20230311 (sha256:000000000000)"},
		{Name: "libc6", Old: "2.36-9+deb12u10", New: "2.36-9+deb12u11"},
		{Name: "zlib1g", New: "1:1.2.13"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Diff = %+v", got)
	}
	if s := got[1].String(); s != "~ libc6 2.36-9+deb12u10 -> 2.36-9+deb12u11" {
		t.Errorf("String = %q", s)
	}
	if d := Diff(old, nil); len(d) != 2 || d[0].New != "" {
		t.Errorf("all removed: %+v", d)
	}
}
