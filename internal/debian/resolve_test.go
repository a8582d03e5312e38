package debian

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// indexOf makes an Index of Packages paragraphs, each suite's apart ("Package: ...
// Version: ..." with the other fields as needed; Filename, Size and SHA256 are added).
func indexOf(t *testing.T, suites map[string]string) *Index {
	t.Helper()
	ix := &Index{Arch: "amd64", byName: map[string][]*candidate{}, providers: map[string][]provision{}}
	for _, suite := range []string{"stable", "stable-security"} {
		text, ok := suites[suite]
		if !ok {
			continue
		}
		repo := Repository{URI: "http://deb.example/debian", Suite: suite}
		ix.Repos = append(ix.Repos, repo)
		var paras []string
		for i, p := range strings.Split(strings.TrimSpace(text), "\n\n") {
			paras = append(paras, fmt.Sprintf("%s\nArchitecture: amd64\nFilename: pool/%s/%d.deb\nSize: 1\nSHA256: %064d\n", strings.TrimSpace(p), suite, i, i))
		}
		cs, err := parsePackages(strings.NewReader(strings.Join(paras, "\n")), repo)
		if err != nil {
			t.Fatal(err)
		}
		for _, cd := range cs {
			ix.byName[cd.Name] = append(ix.byName[cd.Name], cd)
			for _, p := range cd.provides {
				v := ""
				if p.Version != nil {
					v = p.Version.Number
				}
				ix.providers[p.Name] = append(ix.providers[p.Name], provision{cand: cd, version: v})
			}
		}
	}
	return ix
}

func names(pkgs []Package) []string {
	var out []string
	for _, p := range pkgs {
		out = append(out, p.Name+"="+p.Version)
	}
	return out
}

func TestResolve(t *testing.T) {
	ix := indexOf(t, map[string]string{
		"stable": `
Package: app
Version: 1.0
Pre-Depends: libc (>= 2.0)
Depends: mta | mail-transport-agent, web-server, libssl (>= 3.0.5), awk | mawk, shell:any

Package: libc
Version: 2.36-9
Essential: yes

Package: libssl
Version: 3.0.2

Package: mta
Version: 2.0
Depends: libc, libdb (<< 5.4)

Package: libdb
Version: 5.3

Package: libdb
Version: 5.5

Package: exim
Version: 4.96
Provides: mail-transport-agent

Package: nginx
Version: 1.22
Priority: optional
Provides: web-server

Package: apache
Version: 2.4
Priority: important
Provides: web-server, httpd (= 2.4)

Package: mawk
Version: 1.3
Provides: awk

Package: dash
Version: 0.5
Provides: shell

Package: bash
Version: 5.2
Essential: yes

Package: coreutils
Version: 9.1
Essential: yes`,
		"stable-security": `
Package: libssl
Version: 3.0.9

Package: libc
Version: 2.36-9+deb12u1`,
	})
	got, err := ix.Resolve([]string{"app"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"apache=2.4",          // web-server is virtual: the provider of higher priority
		"app=1.0",             //
		"dash=0.5",            // shell:any: the provider
		"libc=2.36-9+deb12u1", // the highest version, from the security suite
		"libdb=5.3",           // << 5.4: not the highest
		"libssl=3.0.9",        // >= 3.0.5: only the security suite's fits
		"mawk=1.3",            // awk | mawk: awk is virtual, provided by mawk
		"mta=2.0",             // mta | mail-transport-agent: the first that exists
	}
	if !reflect.DeepEqual(names(got), want) {
		t.Fatalf("Resolve(app) =\n %v\nwant\n %v", names(got), want)
	}
	// bash and coreutils are Essential, but nothing depends on them: not pulled in.
	for _, p := range got {
		if p.Name == "bash" || p.Name == "coreutils" {
			t.Errorf("%s was pulled in", p.Name)
		}
	}
	if got[3].Suite != "stable-security" || got[3].URL != "http://deb.example/debian/pool/stable-security/1.deb" {
		t.Errorf("libc = %+v", got[3])
	}

	// A choice already made is preferred: with exim asked for, it is the MTA.
	got2, err := ix.Resolve([]string{"exim", "app"})
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(names(got2), " "); strings.Contains(s, "mta=") || !strings.Contains(s, "exim=") {
		t.Errorf("with exim asked for: %s", s)
	}
	// The request's order does not matter.
	got3, err := ix.Resolve([]string{"app", "exim", "app"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got2, got3) {
		t.Errorf("the order of the request changed the result:\n %v\n %v", names(got2), names(got3))
	}
	// A pinned version.
	got4, err := ix.Resolve([]string{"libssl=3.0.2"})
	if err != nil || len(got4) != 1 || got4[0].Version != "3.0.2" {
		t.Errorf("libssl=3.0.2: %v %v", names(got4), err)
	}
	// A versioned dependency on a virtual package takes only a versioned Provides.
	ix2 := indexOf(t, map[string]string{"stable": `
Package: tool
Version: 1
Depends: httpd (>= 2.2)

Package: nginx
Version: 1.22
Provides: httpd

Package: apache
Version: 2.4
Provides: httpd (= 2.4)`})
	got5, err := ix2.Resolve([]string{"tool"})
	if err != nil || !reflect.DeepEqual(names(got5), []string{"apache=2.4", "tool=1"}) {
		t.Errorf("tool: %v %v", names(got5), err)
	}
}

func TestResolveErrors(t *testing.T) {
	ix := indexOf(t, map[string]string{
		"stable": `
Package: python3
Version: 3.11

Package: broken
Version: 1
Depends: libgone (>= 2)

Package: libold
Version: 1

Package: needs-new
Version: 1
Depends: libold (>= 2)

Package: a
Version: 1
Conflicts: b

Package: b
Version: 1

Package: virt1
Version: 1
Provides: virt

Package: virt2
Version: 1
Provides: virt`,
		"stable-security": "Package: other\nVersion: 1",
	})
	for _, tc := range []struct {
		req  []string
		says []string
		nf   bool
	}{
		{[]string{"pyhton3"}, []string{`package "pyhton3" is not in stable, stable-security (http://deb.example/debian) for amd64`, `did you mean "python3"`}, true},
		{[]string{"broken"}, []string{`broken 1 depends on package "libgone" (>= 2), which is not in stable, stable-security`}, true},
		{[]string{"needs-new"}, []string{`needs-new 1 depends on package "libold" (>= 2)`, "at a version that fits"}, true},
		{[]string{"libold", "needs-new"}, []string{"needs-new 1 depends on libold (>= 2), but libold 1 is chosen"}, false},
		{[]string{"a", "b"}, []string{"a 1 conflicts with b 1"}, false},
		{[]string{"virt"}, []string{`"virt" is a virtual package that virt1, virt2 provide`}, false},
		{[]string{"python3=3.12"}, []string{`package "python3" (= 3.12) is not in`}, true},
	} {
		_, err := ix.Resolve(tc.req)
		if err == nil {
			t.Errorf("%v: resolved", tc.req)
			continue
		}
		for _, s := range tc.says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%v: error %q does not say %q", tc.req, err, s)
			}
		}
		if errors.Is(err, ErrNotFound) != tc.nf {
			t.Errorf("%v: errors.Is(ErrNotFound) = %v", tc.req, !tc.nf)
		}
	}
}
