package bake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/kiln-build/kiln/internal/debian"
	"github.com/kiln-build/kiln/internal/spec"
)

// LockFileName is the lock file of a spec's OS packages, beside the spec.
const LockFileName = debian.LockFile

// debRecord is what the SBOM needs of a debian step: the packages its layer holds.
type debRecord struct {
	Suite    string             `json:"suite"`
	Packages []debian.Installed `json:"packages"`
}

// debState is a bake's view of the lock files its debian steps use: read once each,
// written at the end of the bake when a step resolved packages the lock had not.
type debState struct {
	mu     sync.Mutex
	client *debian.Client
	locks  map[string]*debian.Lock // by path
	dirty  map[string]bool
}

func (b *Baker) debianClient() (*debian.Client, error) {
	b.deb.mu.Lock()
	defer b.deb.mu.Unlock()
	if b.deb.client == nil {
		dir := b.opts.PackageCache
		if dir == "" {
			dir = filepath.Join(b.store.StateDir(), "cache", "debian")
		}
		c, err := debian.New(debian.Options{Cache: dir})
		if err != nil {
			return nil, err
		}
		b.deb.client = c
	}
	return b.deb.client, nil
}

// lockPath is the lock file of img's packages: Options.LockFile, else beside the spec
// file img was declared in.
func (b *Baker) lockPath(img *spec.Image) string {
	if b.opts.LockFile != "" {
		return b.opts.LockFile
	}
	return filepath.Join(filepath.Dir(img.DeclRange.Filename), LockFileName)
}

func (b *Baker) readLock(p string) (*debian.Lock, error) {
	b.deb.mu.Lock()
	defer b.deb.mu.Unlock()
	if l, ok := b.deb.locks[p]; ok {
		return l, nil
	}
	l, err := debian.ReadLock(p)
	if err != nil {
		return nil, err
	}
	if b.deb.locks == nil {
		b.deb.locks, b.deb.dirty = map[string]*debian.Lock{}, map[string]bool{}
	}
	b.deb.locks[p] = l
	return l, nil
}

// debianRequest is what a debian step asks of which repositories: the spec's
// repository, else the machine's apt sources for the suite (with its -updates and
// -security), else the first deb source's archive.
func debianRequest(st *spec.Debian, pl spec.Platform) (debian.Request, error) {
	arch, err := debianArch(pl)
	if err != nil {
		return debian.Request{}, err
	}
	req := debian.Request{Arch: arch, Packages: st.Packages}
	if st.Repository != "" {
		req.Repositories = []debian.Repository{{URI: st.Repository, Suite: st.Suite}}
		return req, nil
	}
	all, err := debian.SystemRepositories("/")
	if err != nil {
		return req, fmt.Errorf("reading this machine's apt sources: %w", err)
	}
	req.Repositories = debian.RepositoriesFor(all, st.Suite)
	if len(req.Repositories) == 0 {
		if len(all) == 0 {
			return req, fmt.Errorf("this machine's apt sources name no Debian repository: name one with repository = \"http://deb.debian.org/debian\"")
		}
		req.Repositories = []debian.Repository{{URI: all[0].URI, Suite: st.Suite, Keyring: all[0].Keyring}}
	}
	return req, nil
}

// debianArch is Debian's name for a platform's architecture.
func debianArch(pl spec.Platform) (string, error) {
	switch pl.Arch {
	case "amd64", "arm64", "s390x", "riscv64", "mips64le":
		if pl.Arch == "mips64le" {
			return "mips64el", nil
		}
		return pl.Arch, nil
	case "386":
		return "i386", nil
	case "ppc64le":
		return "ppc64el", nil
	case "arm":
		if pl.Variant == "v7" || pl.Variant == "" {
			return "armhf", nil
		}
		return "armel", nil
	}
	return "", fmt.Errorf("Debian has no architecture for the platform %s", pl)
}

// debianSet is the pinned set of img's debian step: the lock's when it was made for
// this request, else resolved now and recorded in the lock (written at the bake's end).
func (b *Baker) debianSet(ctx context.Context, img *spec.Image, st *spec.Debian) (*debian.Set, error) {
	req, err := debianRequest(st, img.Platform)
	if err != nil {
		return nil, err
	}
	c, err := b.debianClient()
	if err != nil {
		return nil, err
	}
	p := b.lockPath(img)
	l, err := b.readLock(p)
	if err != nil {
		return nil, err
	}
	b.deb.mu.Lock()
	prev := l.Set(img.Name)
	b.deb.mu.Unlock()
	set, err := c.Resolve(ctx, img.Name, req, prev)
	if err != nil {
		if errors.Is(err, debian.ErrLockStale) {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return nil, err
	}
	if prev == nil {
		b.deb.mu.Lock()
		l.Put(set)
		b.deb.dirty[p] = true
		b.deb.mu.Unlock()
	}
	return set, nil
}

// writeLocks writes the lock files that this bake added sets to; not for a dry run or
// a confined bake (a pipeline's checkout is not kept).
func (b *Baker) writeLocks() error {
	b.deb.mu.Lock()
	defer b.deb.mu.Unlock()
	if b.opts.DryRun || b.opts.Confine {
		return nil
	}
	for _, p := range slices.Sorted(maps.Keys(b.deb.dirty)) {
		if err := b.deb.locks[p].Write(p); err != nil {
			return fmt.Errorf("writing the lock %s: %w", p, err)
		}
		delete(b.deb.dirty, p)
	}
	return nil
}

// debianStep returns the layer of a debian step: from the step cache when the locked
// packages are the same (no network, no .deb read), else the .debs are fetched (from
// the package cache when there) and unpacked.
func (b *Baker) debianStep(ctx context.Context, img *spec.Image, st *spec.Debian, epoch int64) (*built, bool, error) {
	set, err := b.debianSet(ctx, img, st)
	if err != nil {
		return nil, false, err
	}
	var sums []string
	for _, p := range set.Packages {
		sums = append(sums, p.Name+"="+p.SHA256)
	}
	k := key(map[string]any{"kind": "debian-v1", "epoch": epoch, "docs": st.Docs, "packages": sums})
	if bl, ok := b.cache.get(b.store, k); ok {
		return bl, true, nil
	}
	c, err := b.debianClient()
	if err != nil {
		return nil, false, err
	}
	paths, err := c.Download(ctx, set.Packages)
	if err != nil {
		return nil, false, err
	}
	var inst []debian.Installed
	layer, err := writeTarLayer(b.store, func(w io.Writer) error {
		var err error
		inst, err = debian.WriteLayer(w, paths, debian.LayerOptions{ModTime: time.Unix(epoch, 0).UTC(), NoDocs: !st.Docs, TempDir: b.tmp})
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("writing the packages' layer: %w", err)
	}
	bl := &built{Key: k, Layer: layer, Debian: &debRecord{Suite: st.Suite, Packages: inst}}
	if err := b.cache.put(bl); err != nil {
		return nil, false, fmt.Errorf("writing build cache: %w", err)
	}
	return bl, false, nil
}

// LockPackages resolves the debian steps of images and writes their lock files: a set
// the lock has for the same request is kept as is, unless update, which resolves every
// set anew. It returns what changed, by image, for each image whose packages moved.
func (b *Baker) LockPackages(ctx context.Context, images []*spec.Image, update bool) (map[string][]debian.Change, error) {
	out := map[string][]debian.Change{}
	for _, img := range images {
		for _, s := range img.Steps {
			st, ok := s.(*spec.Debian)
			if !ok {
				continue
			}
			req, err := debianRequest(st, img.Platform)
			if err != nil {
				return nil, &StepError{Image: img.Name, Step: st.Describe(), Range: st.Range, Err: err}
			}
			c, err := b.debianClient()
			if err != nil {
				return nil, err
			}
			p := b.lockPath(img)
			l, err := b.readLock(p)
			if err != nil {
				return nil, err
			}
			prev := l.Set(img.Name)
			if !update && prev != nil && prev.Matches(req) {
				continue
			}
			next, changes, err := c.Update(ctx, img.Name, req, prev)
			if err != nil {
				return nil, &StepError{Image: img.Name, Step: st.Describe(), Range: st.Range, Err: err}
			}
			b.deb.mu.Lock()
			l.Put(next)
			b.deb.dirty[p] = true
			b.deb.mu.Unlock()
			if len(changes) > 0 {
				out[img.Name] = changes
			}
		}
	}
	return out, b.writeLocks()
}
