package debian

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultKeyring is the keyring a repository's InRelease is verified with when its
// source names none (Signed-By): Debian's archive keys, as debian-archive-keyring
// installs them.
const DefaultKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// Repository is one suite of a Debian repository: where its dists/ and pool/ are, and
// the key its InRelease must be signed with.
type Repository struct {
	URI        string   // the archive's root, e.g. http://deb.debian.org/debian
	Suite      string   // bookworm, bookworm-updates, bookworm-security...
	Components []string // main when empty
	Keyring    string   // an OpenPGP keyring file (binary or armored); DefaultKeyring when ""
}

func (r Repository) components() []string {
	if len(r.Components) == 0 {
		return []string{"main"}
	}
	return r.Components
}

func (r Repository) keyring() string {
	if r.Keyring == "" {
		return DefaultKeyring
	}
	return r.Keyring
}

func (r Repository) String() string {
	return strings.TrimSuffix(r.URI, "/") + " " + r.Suite
}

// SystemRepositories reads the deb sources of the apt configuration under root ("/"
// for this machine's): etc/apt/sources.list and sources.list.d/*.list (one-line
// format), sources.list.d/*.sources (deb822), each file in name order, sources.list
// first, as apt reads them. Only "deb" sources are returned (not deb-src), one
// Repository per suite, in the order they are written. Files of other names (apt
// ignores them too) are skipped.
func SystemRepositories(root string) ([]Repository, error) {
	dir := filepath.Join(root, "etc/apt")
	var out []Repository
	if b, err := os.ReadFile(filepath.Join(dir, "sources.list")); err == nil {
		rs, err := parseSourcesList(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "sources.list"), err)
		}
		out = append(out, rs...)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(dir, "sources.list.d"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		p := filepath.Join(dir, "sources.list.d", e.Name())
		var parse func([]byte) ([]Repository, error)
		switch filepath.Ext(e.Name()) {
		case ".list":
			parse = parseSourcesList
		case ".sources":
			parse = parseDeb822Sources
		default:
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		rs, err := parse(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}

// RepositoriesFor returns the repositories of all that serve suite or one of its
// companions (suite-updates, suite-security, suite-backports are not included: a
// backport is never wanted by default), in order: for "bookworm" on a stock Debian 12
// machine, bookworm and bookworm-updates from deb.debian.org/debian and
// bookworm-security from deb.debian.org/debian-security.
func RepositoriesFor(all []Repository, suite string) []Repository {
	var out []Repository
	for _, r := range all {
		rest, ok := strings.CutPrefix(r.Suite, suite)
		if ok && (rest == "" || rest == "-updates" || rest == "-security") {
			out = append(out, r)
		}
	}
	return out
}

// parseSourcesList reads the one-line format: "deb [opt=val ...] URI SUITE COMP...".
func parseSourcesList(b []byte) ([]Repository, error) {
	var out []Repository
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		n++
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		opts := map[string]string{}
		if len(f) > 0 && strings.HasPrefix(f[0], "[") {
			// Options may be written "[a=b c=d]" or "[ a=b ]".
			var inner []string
			for len(f) > 0 {
				w := f[0]
				f = f[1:]
				inner = append(inner, w)
				if strings.HasSuffix(w, "]") {
					break
				}
			}
			s := strings.TrimSuffix(strings.TrimPrefix(strings.Join(inner, " "), "["), "]")
			for _, kv := range strings.Fields(s) {
				k, v, _ := strings.Cut(kv, "=")
				opts[strings.ToLower(k)] = v
			}
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("line %d: a deb line needs a URI and a suite", n)
		}
		out = append(out, Repository{URI: f[0], Suite: f[1], Components: slices.Clone(f[2:]), Keyring: opts["signed-by"]})
	}
	return out, sc.Err()
}

// parseDeb822Sources reads the deb822 format: paragraphs of Types, URIs, Suites,
// Components, Signed-By (a path; an inline key block is not supported and said so),
// Enabled.
func parseDeb822Sources(b []byte) ([]Repository, error) {
	var out []Repository
	for i, para := range splitParagraphs(b) {
		if strings.EqualFold(para["enabled"], "no") || !slices.Contains(strings.Fields(para["types"]), "deb") {
			continue
		}
		keyring := strings.TrimSpace(para["signed-by"])
		if strings.Contains(keyring, "\n") || strings.Contains(keyring, "BEGIN PGP") {
			return nil, fmt.Errorf("source %d: Signed-By holds a key block; kiln reads a keyring file: put the key in a file and name it", i+1)
		}
		uris, suites := strings.Fields(para["uris"]), strings.Fields(para["suites"])
		if len(uris) == 0 || len(suites) == 0 {
			return nil, fmt.Errorf("source %d: it needs URIs and Suites", i+1)
		}
		for _, u := range uris {
			for _, s := range suites {
				out = append(out, Repository{URI: u, Suite: s, Components: strings.Fields(para["components"]), Keyring: keyring})
			}
		}
	}
	return out, nil
}

// splitParagraphs splits deb822 text into paragraphs of lower-cased keys; comment
// lines are dropped and continuation lines joined with newlines.
func splitParagraphs(b []byte) []map[string]string {
	var out []map[string]string
	cur := map[string]string{}
	last := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case strings.TrimSpace(line) == "":
			if len(cur) > 0 {
				out = append(out, cur)
				cur, last = map[string]string{}, ""
			}
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				cur[last] += "\n" + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			cur[last] = strings.TrimSpace(v)
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}
