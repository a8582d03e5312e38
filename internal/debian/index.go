package debian

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sync/errgroup"
	"pault.ag/go/debian/control"
	"pault.ag/go/debian/deb"
	"pault.ag/go/debian/dependency"
	"pault.ag/go/debian/version"
)

// Index is the packages of one or more suites for one architecture, as their signed
// indexes list them. It is immutable once read.
type Index struct {
	Arch  string
	Repos []Repository
	// byName holds each name's candidates, across suites; providers, the packages
	// that Provide a name.
	byName    map[string][]*candidate
	providers map[string][]provision
}

// candidate is one package of one suite's index.
type candidate struct {
	Package
	essential bool
	priority  string
	depends   string // Pre-Depends and Depends, joined (parsed when chosen)
	conflicts string
	provides  []dependency.Possibility
	ver       version.Version
}

// provision is one Provides entry: cand provides a name, at a version when given.
type provision struct {
	cand    *candidate
	version string
}

// Index reads the Packages index of each repository for arch ("amd64"...), verifying
// each InRelease and each index's SHA-256, and keeps the indexes in the cache (a
// second read downloads the InRelease files only).
func (c *Client) Index(ctx context.Context, repos []Repository, arch string) (*Index, error) {
	if len(repos) == 0 {
		return nil, errors.New("no repository to read packages from")
	}
	parts := make([][]*candidate, len(repos))
	g, gctx := errgroup.WithContext(ctx)
	for i, r := range repos {
		g.Go(func() error {
			rel, err := c.fetchRelease(gctx, r)
			if err != nil {
				return err
			}
			for _, comp := range r.components() {
				cs, err := c.readPackages(gctx, rel, comp, arch)
				if err != nil {
					return err
				}
				parts[i] = append(parts[i], cs...)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	ix := &Index{Arch: arch, Repos: repos, byName: map[string][]*candidate{}, providers: map[string][]provision{}}
	for _, cs := range parts {
		for _, cd := range cs {
			ix.byName[cd.Name] = append(ix.byName[cd.Name], cd)
			for _, p := range cd.provides {
				v := ""
				if p.Version != nil && p.Version.Operator == "=" {
					v = p.Version.Number
				}
				ix.providers[p.Name] = append(ix.providers[p.Name], provision{cand: cd, version: v})
			}
		}
	}
	return ix, nil
}

// Len is the number of package versions the index holds.
func (ix *Index) Len() int {
	n := 0
	for _, cs := range ix.byName {
		n += len(cs)
	}
	return n
}

// readPackages returns the packages of COMP/binary-ARCH/Packages in rel: the
// uncompressed index from the cache if it is there, else the .xz (or .gz) index,
// downloaded and checked against rel, then decompressed into the cache and checked
// against the uncompressed sum rel lists.
func (c *Client) readPackages(ctx context.Context, rel *release, comp, arch string) ([]*candidate, error) {
	name := comp + "/binary-" + arch + "/Packages"
	plain, hasPlain := rel.files[name]
	path, ext := "", ""
	if hasPlain {
		p, ok, err := c.cached(plain.sha256, plain.size)
		if err != nil {
			return nil, fmt.Errorf("the index %s of %s: %w", name, rel.repo, err)
		}
		if ok {
			path = p
		}
	}
	if path == "" {
		var err error
		if path, ext, err = c.downloadIndex(ctx, rel, name, plain, hasPlain); err != nil {
			return nil, err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := deb.DecompressorFor(ext)(f)
	if err != nil {
		return nil, fmt.Errorf("decompressing %s: %w", path, err)
	}
	defer r.Close()
	cs, err := parsePackages(r, rel.repo)
	if err != nil {
		return nil, fmt.Errorf("reading %s of %s: %w", name, rel.repo, err)
	}
	return cs, nil
}

// downloadIndex fetches the compressed index and leaves the uncompressed one in the
// cache, returning its path. When rel lists no uncompressed sum (Debian's always do),
// the verified compressed file is kept instead and ext says how it is compressed.
func (c *Client) downloadIndex(ctx context.Context, rel *release, name string, plain fileSum, hasPlain bool) (path, ext string, err error) {
	for _, ext := range []string{".xz", ".gz"} {
		sum, ok := rel.files[name+ext]
		if !ok {
			continue
		}
		u := rel.repo.distURL(name + ext)
		p, err := c.fetch(ctx, u, sum.sha256, sum.size)
		if err != nil {
			return "", "", err
		}
		if !hasPlain {
			return p, ext, nil
		}
		f, err := os.Open(p)
		if err != nil {
			return "", "", err
		}
		zr, err := deb.DecompressorFor(ext)(f)
		if err != nil {
			f.Close()
			return "", "", fmt.Errorf("decompressing %s: %w", u, err)
		}
		out, err := c.store(zr, plain.sha256, plain.size, u+" decompressed")
		zr.Close()
		f.Close()
		os.Remove(p) // the uncompressed copy is kept instead
		return out, "", err
	}
	if hasPlain {
		p, err := c.fetch(ctx, rel.repo.distURL(name), plain.sha256, plain.size)
		return p, "", err
	}
	return "", "", fmt.Errorf("the Release file of %s lists no %s index: is the component or architecture right?", rel.repo, name)
}

// parsePackages reads a Packages index, keeping what resolution and download need.
func parsePackages(r io.Reader, repo Repository) ([]*candidate, error) {
	pr, err := control.NewParagraphReader(r, nil)
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(repo.URI, "/") + "/"
	var out []*candidate
	for {
		p, err := pr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		v := p.Values
		name, ver, file, sum := v["Package"], v["Version"], v["Filename"], v["SHA256"]
		if name == "" || ver == "" || file == "" {
			continue
		}
		size, err := strconv.ParseInt(v["Size"], 10, 64)
		if err != nil || len(sum) != 64 {
			return nil, fmt.Errorf("package %s %s has no valid Size and SHA256: kiln verifies every .deb by its SHA-256", name, ver)
		}
		pv, err := version.Parse(ver)
		if err != nil {
			return nil, fmt.Errorf("package %s: version %q: %w", name, ver, err)
		}
		cd := &candidate{
			Package: Package{
				Name: name, Version: ver, Arch: v["Architecture"], Suite: repo.Suite,
				URL: base + file, Size: size, SHA256: strings.ToLower(sum),
			},
			essential: v["Essential"] == "yes",
			priority:  v["Priority"],
			conflicts: v["Conflicts"],
			ver:       pv,
		}
		cd.depends = joinRelations(v["Pre-Depends"], v["Depends"])
		if s := v["Provides"]; s != "" {
			d, err := dependency.Parse(s)
			if err != nil {
				return nil, fmt.Errorf("package %s %s: Provides %q: %w", name, ver, s, err)
			}
			cd.provides = d.GetAllPossibilities()
		}
		out = append(out, cd)
	}
}

func joinRelations(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + ", " + b
}
