package debian

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/kiln-build/kiln/internal/atomicfile"
)

// LockFile is the name of the lock file kept beside a spec, in the spirit of
// Terraform's .terraform.lock.hcl.
const LockFile = "kiln.lock.hcl"

// ErrLockStale is wrapped by the error of a Set that was made for another request
// than the one it is used for (a package added to the spec, another suite).
var ErrLockStale = errors.New("the lock does not match the spec")

// Request is what a packages step asks for. It is recorded in the lock, so that a
// lock made for another request is known as such.
type Request struct {
	Repositories []Repository
	Arch         string
	Packages     []string
}

// Lock is a lock file: the pinned packages of each packages step, by key.
type Lock struct {
	Sets []*Set // sorted by Key
}

// Set pins the packages of one step: the request it was resolved for, and every
// package that resolution chose, with the SHA-256 of its .deb.
type Set struct {
	Key          string   // the step's name in the lock: the image's name
	Arch         string   // amd64...
	Request      []string // the package names asked for, sorted
	Repositories []string // "URI SUITE COMPONENT..." of each repository, in order
	Packages     []Package
}

// Set returns the set of key, nil if the lock has none.
func (l *Lock) Set(key string) *Set {
	if l == nil {
		return nil
	}
	for _, s := range l.Sets {
		if s.Key == key {
			return s
		}
	}
	return nil
}

// Put adds s to the lock, replacing the set of the same key.
func (l *Lock) Put(s *Set) {
	l.Sets = slices.DeleteFunc(l.Sets, func(o *Set) bool { return o.Key == s.Key })
	l.Sets = append(l.Sets, s)
	slices.SortFunc(l.Sets, func(a, b *Set) int { return strings.Compare(a.Key, b.Key) })
}

func repoLine(r Repository) string {
	return strings.Join(append([]string{strings.TrimSuffix(r.URI, "/"), r.Suite}, r.components()...), " ")
}

// newSet records req (under key) with the packages resolved for it.
func newSet(key string, req Request, pkgs []Package) *Set {
	s := &Set{Key: key, Arch: req.Arch, Packages: pkgs}
	s.Request = slices.Compact(slices.Sorted(slices.Values(req.Packages)))
	for _, r := range req.Repositories {
		s.Repositories = append(s.Repositories, repoLine(r))
	}
	return s
}

// Matches says whether s was made for req: the same architecture, packages and
// repositories (their URI, suite and components; not the keyring, a path of the
// machine).
func (s *Set) Matches(req Request) bool {
	o := newSet(s.Key, req, nil)
	return s.Arch == o.Arch && slices.Equal(s.Request, o.Request) && slices.Equal(s.Repositories, o.Repositories)
}

// mismatch says how s differs from req, for ErrLockStale's error.
func (s *Set) mismatch(req Request) string {
	o := newSet(s.Key, req, nil)
	switch {
	case s.Arch != o.Arch:
		return fmt.Sprintf("it was made for %s, the spec asks for %s", s.Arch, o.Arch)
	case !slices.Equal(s.Request, o.Request):
		return fmt.Sprintf("it was made for the packages %s, the spec asks for %s", strings.Join(s.Request, ", "), strings.Join(o.Request, ", "))
	}
	return fmt.Sprintf("it was made for the repositories %s, the spec names %s", strings.Join(s.Repositories, "; "), strings.Join(o.Repositories, "; "))
}

// Resolve returns the set of req: prev itself when it was made for req (the same
// files, no resolution, no network), else a new resolution when prev is nil. A prev
// made for another request is an error wrapping ErrLockStale that says what changed:
// only Update moves a lock.
func (c *Client) Resolve(ctx context.Context, key string, req Request, prev *Set) (*Set, error) {
	if prev != nil {
		if !prev.Matches(req) {
			return nil, fmt.Errorf("%w: the lock's packages of %q: %s: run kiln lock to resolve them again", ErrLockStale, key, prev.mismatch(req))
		}
		return prev, nil
	}
	return c.resolve(ctx, key, req)
}

func (c *Client) resolve(ctx context.Context, key string, req Request) (*Set, error) {
	if len(req.Packages) == 0 {
		return nil, errors.New("no package asked for")
	}
	ix, err := c.Index(ctx, req.Repositories, req.Arch)
	if err != nil {
		return nil, err
	}
	pkgs, err := ix.Resolve(req.Packages)
	if err != nil {
		return nil, err
	}
	return newSet(key, req, pkgs), nil
}

// Change is one package that an update moved: Old is "" for a package added, New ""
// for one removed.
type Change struct {
	Name     string
	Old, New string
}

func (ch Change) String() string {
	switch {
	case ch.Old == "":
		return fmt.Sprintf("+ %s %s", ch.Name, ch.New)
	case ch.New == "":
		return fmt.Sprintf("- %s %s", ch.Name, ch.Old)
	}
	return fmt.Sprintf("~ %s %s -> %s", ch.Name, ch.Old, ch.New)
}

// Update resolves req anew, whatever prev holds, and returns the new set with the
// packages that changed from prev (nil prev: all added), sorted by name.
func (c *Client) Update(ctx context.Context, key string, req Request, prev *Set) (*Set, []Change, error) {
	next, err := c.resolve(ctx, key, req)
	if err != nil {
		return nil, nil, err
	}
	return next, Diff(prev, next), nil
}

// Diff lists the packages whose version (or file) differs between two sets, sorted by
// name. A package rebuilt at the same version with another SHA-256 shows as a change
// of "VERSION (sha256:...)".
func Diff(prev, next *Set) []Change {
	old := map[string]Package{}
	if prev != nil {
		for _, p := range prev.Packages {
			old[p.Name] = p
		}
	}
	cur := map[string]Package{}
	if next != nil {
		for _, p := range next.Packages {
			cur[p.Name] = p
		}
	}
	var out []Change
	for _, n := range slices.Compact(slices.Sorted(slices.Values(append(keys(old), keys(cur)...)))) {
		o, hadOld := old[n]
		c, hasNew := cur[n]
		switch {
		case !hadOld:
			out = append(out, Change{Name: n, New: c.Version})
		case !hasNew:
			out = append(out, Change{Name: n, Old: o.Version})
		case o.Version != c.Version:
			out = append(out, Change{Name: n, Old: o.Version, New: c.Version})
		case o.SHA256 != c.SHA256 || o.URL != c.URL:
			out = append(out, Change{Name: n, Old: o.Version + " (sha256:" + o.SHA256[:min(12, len(o.SHA256))] + ")", New: c.Version + " (sha256:" + c.SHA256[:min(12, len(c.SHA256))] + ")"})
		}
	}
	return out
}

func keys(m map[string]Package) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The lock file's HCL, decoded with gohcl.
type lockHCL struct {
	Sets []setHCL `hcl:"debian,block"`
}

type setHCL struct {
	Key          string       `hcl:"key,label"`
	Arch         string       `hcl:"arch"`
	Packages     []string     `hcl:"packages"`
	Repositories []string     `hcl:"repositories"`
	Locked       []packageHCL `hcl:"package,block"`
}

type packageHCL struct {
	Name    string `hcl:"name,label"`
	Version string `hcl:"version"`
	Arch    string `hcl:"arch"`
	Suite   string `hcl:"suite"`
	URL     string `hcl:"url"`
	Size    int64  `hcl:"size"`
	SHA256  string `hcl:"sha256"`
}

// lockHeader opens every lock file kiln writes.
const lockHeader = `# This file is maintained by kiln: "kiln lock" writes it, and so does the first bake.
# It pins every OS package of the images to a version and the SHA-256 of its file;
# "kiln lock -update" moves it forward. Commit it with the spec.
`

// Encode renders the lock as HCL: the same lock gives the same bytes.
func (l *Lock) Encode() []byte {
	f := hclwrite.NewEmptyFile()
	body := f.Body()
	for i, s := range l.Sets {
		if i > 0 {
			body.AppendNewline()
		}
		b := body.AppendNewBlock("debian", []string{s.Key}).Body()
		b.SetAttributeValue("arch", cty.StringVal(s.Arch))
		b.SetAttributeValue("packages", stringList(s.Request))
		b.SetAttributeValue("repositories", stringList(s.Repositories))
		for _, p := range s.Packages {
			b.AppendNewline()
			pb := b.AppendNewBlock("package", []string{p.Name}).Body()
			pb.SetAttributeValue("version", cty.StringVal(p.Version))
			pb.SetAttributeValue("arch", cty.StringVal(p.Arch))
			pb.SetAttributeValue("suite", cty.StringVal(p.Suite))
			pb.SetAttributeValue("url", cty.StringVal(p.URL))
			pb.SetAttributeValue("size", cty.NumberIntVal(p.Size))
			pb.SetAttributeValue("sha256", cty.StringVal(p.SHA256))
		}
	}
	return append([]byte(lockHeader+"\n"), hclwrite.Format(f.Bytes())...)
}

func stringList(ss []string) cty.Value {
	if len(ss) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	vs := make([]cty.Value, len(ss))
	for i, s := range ss {
		vs[i] = cty.StringVal(s)
	}
	return cty.ListVal(vs)
}

// ParseLock reads a lock file's content; filename is for the diagnostics.
func ParseLock(src []byte, filename string) (*Lock, error) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	var raw lockHCL
	if diags := gohcl.DecodeBody(f.Body, nil, &raw); diags.HasErrors() {
		return nil, diags
	}
	l := &Lock{}
	for _, s := range raw.Sets {
		if l.Set(s.Key) != nil {
			return nil, fmt.Errorf("%s: two debian blocks for %q", filename, s.Key)
		}
		set := &Set{Key: s.Key, Arch: s.Arch, Request: s.Packages, Repositories: s.Repositories}
		for _, p := range s.Locked {
			if len(p.SHA256) != 64 || p.URL == "" {
				return nil, fmt.Errorf("%s: package %q of %q has no url or sha256 of 64 hex digits", filename, p.Name, s.Key)
			}
			set.Packages = append(set.Packages, Package{Name: p.Name, Version: p.Version, Arch: p.Arch, Suite: p.Suite, URL: p.URL, Size: p.Size, SHA256: p.SHA256})
		}
		slices.SortFunc(set.Packages, func(a, b Package) int { return strings.Compare(a.Name, b.Name) })
		l.Put(set)
	}
	return l, nil
}

// Write replaces the lock file at path with l (temp file and rename), readable by
// all: it is committed beside the spec.
func (l *Lock) Write(path string) error {
	return atomicfile.Write(path, l.Encode(), 0o644)
}

// ReadLock reads the lock file at path; an empty lock when there is none.
func ReadLock(path string) (*Lock, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Lock{}, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseLock(b, path)
}
