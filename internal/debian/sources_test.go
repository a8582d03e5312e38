package debian

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestSystemRepositories(t *testing.T) {
	root := t.TempDir()
	d := filepath.Join(root, "etc/apt/sources.list.d")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, s string) {
		if err := os.WriteFile(filepath.Join(root, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/apt/sources.list", `# a comment
deb [arch=amd64 signed-by=/k/one.gpg] http://mirror.example/debian bookworm main contrib
deb-src http://mirror.example/debian bookworm main
deb http://mirror.example/debian bookworm-backports main # trailing comment
`)
	write("etc/apt/sources.list.d/debian.sources", `Types: deb deb-src
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
Enabled: no
URIs: http://off.example/debian
Suites: bookworm
`)
	write("etc/apt/sources.list.d/other.list.disabled", "deb http://never.example/ x main\n")
	got, err := SystemRepositories(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []Repository{
		{URI: "http://mirror.example/debian", Suite: "bookworm", Components: []string{"main", "contrib"}, Keyring: "/k/one.gpg"},
		{URI: "http://mirror.example/debian", Suite: "bookworm-backports", Components: []string{"main"}},
		{URI: "http://deb.debian.org/debian", Suite: "bookworm", Components: []string{"main"}, Keyring: DefaultKeyring},
		{URI: "http://deb.debian.org/debian", Suite: "bookworm-updates", Components: []string{"main"}, Keyring: DefaultKeyring},
		{URI: "http://deb.debian.org/debian-security", Suite: "bookworm-security", Components: []string{"main"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("SystemRepositories:\n got %+v\nwant %+v", got, want)
	}
	// bookworm's companions, the backports left out.
	for_ := RepositoriesFor(got, "bookworm")
	var suites []string
	for _, r := range for_ {
		suites = append(suites, r.URI+" "+r.Suite)
	}
	wantSuites := []string{"http://mirror.example/debian bookworm", "http://deb.debian.org/debian bookworm", "http://deb.debian.org/debian bookworm-updates", "http://deb.debian.org/debian-security bookworm-security"}
	if !reflect.DeepEqual(suites, wantSuites) {
		t.Fatalf("RepositoriesFor(bookworm) = %v, want %v", suites, wantSuites)
	}
}

func TestSourcesInlineKeyRefused(t *testing.T) {
	_, err := parseDeb822Sources([]byte("Types: deb\nURIs: http://x/\nSuites: s\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n abc\n"))
	if err == nil {
		t.Fatal("an inline key block was taken")
	}
}
