package bake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/hashicorp/hcl/v2"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/spec"
)

// Standard OCI annotations kiln sets on every image it bakes.
const (
	AnnotationCreated    = "org.opencontainers.image.created"
	AnnotationSource     = "org.opencontainers.image.source"
	AnnotationRevision   = "org.opencontainers.image.revision"
	AnnotationBaseDigest = "org.opencontainers.image.base.digest"
	AnnotationBaseName   = "org.opencontainers.image.base.name"
	AnnotationTitle      = "org.opencontainers.image.title"
)

// Options configure a Baker.
type Options struct {
	// Source gives the epoch and revision recorded in images (see ReadSource).
	Source SourceInfo
	// Progress, if set, is called as steps start and finish; from several goroutines.
	Progress func(Event)
	// Confine treats the spec as untrusted (a pipeline's commit): every file a bake reads
	// for it (copy sources, layout and tarball bases, go.dir, the Go step's inputs) is
	// opened through an os.Root at Root, so absolute paths elsewhere, ".." and symlinks
	// leading out of Root are errors; and Go builds run sandboxed, as with Sandbox.
	Confine bool
	// Root is the one directory a confined bake reads: the checkout. Required with Confine.
	Root string
	// Sandbox runs go build in a sandbox (internal/sandbox): an unprivileged user in its
	// own namespaces that sees only the toolchain, the sources and the module cache, with
	// no network. Where no sandbox can be made, such a build fails.
	Sandbox bool
	// BuildCache, if set, is the sandboxed Go builds' cache directory instead of the
	// store's: a pipeline's own, so that what one pipeline's commits write into it (a
	// build can write its cache) never reaches another's builds.
	BuildCache string
	// PackageCache is where the .debs of debian steps are kept, by SHA-256; the state
	// directory's cache/debian when "".
	PackageCache string
	// LockFile is the lock of the debian steps' packages (see internal/debian); when "",
	// kiln.lock.hcl beside the spec file each image is declared in. A bake uses the
	// lock's packages exactly, adds what it lacks, and writes it (not a dry run's or a
	// confined bake's); a lock made for other packages is an error: run kiln lock.
	LockFile string
	// RunCache, if set, holds the run steps' cache directories instead of the store's
	// cache/run: a pipeline's own, for the same reason as BuildCache.
	RunCache string
	// DryRun bakes without recording: the images' blobs and the step cache are written
	// (a later bake finds them), but the index, and so which image of a name is
	// current, is left as it was. For kiln plan, which must change nothing.
	DryRun bool
}

// Event reports progress of a bake.
type Event struct {
	Image   string        `json:"image"`
	Step    string        `json:"step,omitempty"`
	State   State         `json:"state"`
	Digest  string        `json:"digest,omitempty"`
	Elapsed time.Duration `json:"elapsed_ns,omitempty"`
	Error   string        `json:"error,omitempty"`
}

// State is where an image or step is in a bake.
type State string

const (
	StateStart  State = "start"  // an image or step began
	StateCached State = "cached" // a step's layer came from the cache
	StateBuilt  State = "built"  // a step's layer was built
	StateDone   State = "done"   // an image is stored (Digest set)
	StateFailed State = "failed" // an image or step failed (Error set)
)

// Result is one baked image.
type Result struct {
	Name   string
	Digest v1.Hash
	Image  v1.Image
	SBOM   v1.Hash
	// Revision is the source revision the image records: the commit, "-dirty" when
	// the files it was baked from are not all the commit's; "" outside git.
	Revision string
	// Cached is true when every step's layer came from the cache.
	Cached bool
}

// Ref is NAME@DIGEST.
func (r *Result) Ref() string { return r.Name + "@" + r.Digest.String() }

// StepError is a failure of one step, with the place in the spec it was declared.
type StepError struct {
	Image string
	Step  string
	Range hcl.Range
	Err   error
}

func (e *StepError) Error() string {
	where := ""
	if e.Range.Filename != "" {
		where = fmt.Sprintf("%s:%d:%d: ", e.Range.Filename, e.Range.Start.Line, e.Range.Start.Column)
	}
	if e.Step == "" {
		return fmt.Sprintf("%simage %q: %v", where, e.Image, e.Err)
	}
	return fmt.Sprintf("%simage %q: %s: %v", where, e.Image, e.Step, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// Baker bakes images into a store.
type Baker struct {
	store *imagestore.Store
	cache *cache
	tmp   string
	opts  Options
	mu    sync.Mutex // serializes index updates
	deb   debState
	// rootfsMu serializes writing out builders' filesystems (rootfs.go).
	rootfsMu sync.Mutex
}

// NewBaker returns a Baker that writes into store, keeping its step cache (and the Go
// caches of sandboxed builds) in the store's state directory. The caller holds the
// store's lock while it bakes.
func NewBaker(store *imagestore.Store, opts Options) (*Baker, error) {
	c, err := newCache(store.StateDir())
	if err != nil {
		return nil, fmt.Errorf("creating build cache: %w", err)
	}
	tmp := store.TempDir()
	if err := os.MkdirAll(tmp, dirPerm); err != nil {
		return nil, err
	}
	if opts.Progress == nil {
		opts.Progress = func(Event) {}
	}
	if opts.Confine && opts.Root == "" {
		return nil, errors.New("a confined bake needs Options.Root, the directory it may read")
	}
	if opts.Confine || opts.Sandbox {
		if err := makeGoCaches(store.StateDir()); err != nil {
			return nil, err
		}
		if opts.BuildCache != "" {
			if err := os.MkdirAll(opts.BuildCache, dirPerm); err != nil {
				return nil, fmt.Errorf("creating the Go build cache: %w", err)
			}
		}
	}
	for _, t := range []*time.Time{&opts.Source.Epoch, &opts.Source.FileTime} {
		if t.IsZero() {
			*t = time.Unix(0, 0).UTC()
		}
	}
	return &Baker{store: store, cache: c, tmp: tmp, opts: opts}, nil
}

// Bake bakes images, each as soon as the images it needs (its base, those it copies
// from) are ready, and stores them; those must be among images. Results are in
// the order of images. The caller holds the store's lock. On error, images that were
// completed are stored; nothing partial is.
func (b *Baker) Bake(ctx context.Context, images []*spec.Image) ([]*Result, error) {
	h, err := openHostFiles(b.opts.Root, b.opts.Confine)
	if err != nil {
		return nil, err
	}
	defer h.close()
	ready := map[string]chan struct{}{}
	for _, img := range images {
		ready[img.Name] = make(chan struct{})
	}
	for _, img := range images {
		for _, need := range img.Needs() {
			if ready[need] == nil {
				return nil, &StepError{Image: img.Name, Range: img.DeclRange, Err: fmt.Errorf("it needs image %q, which this bake does not bake (bake.Select adds it)", need)}
			}
		}
	}
	var mu sync.Mutex
	done := map[string]*Result{}
	g, gctx := errgroup.WithContext(ctx)
	for _, img := range images {
		g.Go(func() error {
			for _, need := range img.Needs() {
				select {
				case <-ready[need]:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			mu.Lock()
			bases := maps.Clone(done)
			mu.Unlock()
			r, err := b.bakeImage(gctx, h, img, bases)
			if err != nil {
				b.opts.Progress(Event{Image: img.Name, State: StateFailed, Error: err.Error()})
				return err
			}
			mu.Lock()
			done[img.Name] = r
			mu.Unlock()
			close(ready[img.Name])
			return nil
		})
	}
	err = g.Wait()
	if lerr := b.writeLocks(); err == nil {
		err = lerr
	}
	var out []*Result
	for _, img := range images {
		if r := done[img.Name]; r != nil {
			out = append(out, r)
		}
	}
	return out, err
}

func (b *Baker) bakeImage(ctx context.Context, h *hostFiles, img *spec.Image, done map[string]*Result) (*Result, error) {
	start := time.Now()
	b.opts.Progress(Event{Image: img.Name, State: StateStart})
	epoch, fileTime := b.opts.Source.Epoch, b.opts.Source.FileTime
	h, reads := h.recording()
	bs, err := b.resolveBase(ctx, h, img, done, fileTime.Unix())
	if err != nil {
		return nil, &StepError{Image: img.Name, Step: "from", Range: img.From.Range, Err: err}
	}

	steps := make([]*built, len(img.Steps))
	cached := make([]bool, len(img.Steps))
	g, gctx := errgroup.WithContext(ctx)
	for i, st := range img.Steps {
		g.Go(func() error {
			t := time.Now()
			b.opts.Progress(Event{Image: img.Name, Step: st.Describe(), State: StateStart})
			bl, hit, err := b.runStep(gctx, h, img, st, fileTime.Unix(), stepInputs{base: bs, images: done})
			if err != nil {
				err = &StepError{Image: img.Name, Step: st.Describe(), Range: st.Where(), Err: err}
				b.opts.Progress(Event{Image: img.Name, Step: st.Describe(), State: StateFailed, Error: err.Error()})
				return err
			}
			state := StateBuilt
			if hit {
				state = StateCached
			}
			b.opts.Progress(Event{Image: img.Name, Step: st.Describe(), State: state, Elapsed: time.Since(t)})
			steps[i], cached[i] = bl, hit
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	// Every input has been read now (a cached step's too: its key hashes its files).
	rev := b.opts.Source.RevisionFor(reads.list())
	oimg, err := b.assemble(h, img, bs, steps, rev)
	if err != nil {
		return nil, &StepError{Image: img.Name, Range: img.DeclRange, Err: err}
	}
	desc, err := b.store.PutImage(oimg)
	if err != nil {
		return nil, &StepError{Image: img.Name, Range: img.DeclRange, Err: fmt.Errorf("storing image: %w", err)}
	}
	inv, err := b.inventory(desc.Digest, bs)
	if err != nil {
		return nil, &StepError{Image: img.Name, Step: "from", Range: img.From.Range, Err: fmt.Errorf("reading the OS packages of the base: %w", err)}
	}
	sbom, err := buildSBOM(sbomInput{
		Name: img.Name, Digest: desc.Digest, Epoch: epoch,
		Base: bs, OS: inv, Steps: append(slices.Clone(bs.layers), steps...),
		Revision: rev, SourceURL: b.opts.Source.URL,
	})
	if err != nil {
		return nil, &StepError{Image: img.Name, Range: img.DeclRange, Err: err}
	}
	sbomDigest, err := b.store.WriteBytes(sbom)
	if err != nil {
		return nil, &StepError{Image: img.Name, Range: img.DeclRange, Err: fmt.Errorf("storing SBOM: %w", err)}
	}
	if !b.opts.DryRun {
		b.mu.Lock()
		err = b.store.Record(img.Name, desc, sbomDigest, time.Now())
		b.mu.Unlock()
	} else {
		err = b.store.RecordSBOM(desc.Digest, sbomDigest) // for plan's package changes
	}
	if err != nil {
		return nil, &StepError{Image: img.Name, Range: img.DeclRange, Err: fmt.Errorf("recording image in the store: %w", err)}
	}
	stored, err := b.store.Image(desc.Digest)
	if err != nil {
		return nil, err
	}
	r := &Result{Name: img.Name, Digest: desc.Digest, Image: stored, SBOM: sbomDigest, Revision: rev, Cached: !slices.Contains(cached, false)}
	b.opts.Progress(Event{Image: img.Name, State: StateDone, Digest: desc.Digest.String(), Elapsed: time.Since(start)})
	return r, nil
}

// inventory reads the OS packages of bs from the stored image h, whose first layers are
// the base's: stored, they are read from the store, not again from a registry.
func (b *Baker) inventory(h v1.Hash, bs base) (osInventory, error) {
	if bs.kind == spec.FromScratch {
		return osInventory{}, nil
	}
	baseLayers, err := bs.img.Layers()
	if err != nil {
		return osInventory{}, err
	}
	stored, err := b.store.Image(h)
	if err != nil {
		return osInventory{}, err
	}
	layers, err := stored.Layers()
	if err != nil {
		return osInventory{}, err
	}
	n := len(baseLayers) + len(bs.layers)
	if n > len(layers) {
		return osInventory{}, fmt.Errorf("the image has %d layers, fewer than its base's %d", len(layers), n)
	}
	ids, err := diffIDs(stored)
	if err != nil {
		return osInventory{}, err
	}
	for i := range layers[:n] {
		layers[i] = knownDiffID{layers[i], ids[i]}
	}
	return b.baseInventory(layers[:n])
}

// runStep returns the layer of one step, from the cache when its inputs are unchanged.
// epoch is the modification time of the layer's files.
func (b *Baker) runStep(ctx context.Context, h *hostFiles, img *spec.Image, st spec.Step, epoch int64, in stepInputs) (*built, bool, error) {
	var (
		k     string
		build func() ([]entry, *goRecord, error)
		done  func() // removes what build's entries read from, once the layer is written
	)
	defer func() {
		if done != nil {
			done()
		}
	}()
	switch st := st.(type) {
	case *spec.Debian:
		return b.debianStep(ctx, img, st, epoch)
	case *spec.GoBuild:
		gs, err := newGoStep(st, img.Platform, h)
		if err != nil {
			return nil, false, err
		}
		if k, err = gs.key(epoch); err != nil {
			return nil, false, err
		}
		build = func() ([]entry, *goRecord, error) { return gs.build(ctx, b.tmp, b.goSandbox(h)) }
	case *spec.Copy:
		entries, err := copyEntries(st, h)
		if err != nil {
			return nil, false, err
		}
		k = entriesKey("copy", epoch, entries)
		build = func() ([]entry, *goRecord, error) { return entries, nil, nil }
	case *spec.File:
		entries := fileStepEntries(st)
		k = entriesKey("file", epoch, entries)
		build = func() ([]entry, *goRecord, error) { return entries, nil, nil }
	case *spec.Run, *spec.CopyFrom:
		var err error
		if k, build, err = b.imagesStep(ctx, h, img, st, epoch, in, &done); err != nil {
			return nil, false, err
		}
	default:
		return nil, false, fmt.Errorf("unknown step %T", st)
	}
	if bl, ok := b.cache.get(b.store, k); ok {
		return bl, true, nil
	}
	entries, rec, err := build()
	if err != nil {
		return nil, false, err
	}
	layer, err := writeLayer(b.store, entries, time.Unix(epoch, 0).UTC())
	if err != nil {
		return nil, false, fmt.Errorf("writing layer: %w", err)
	}
	bl := &built{Key: k, Layer: layer, Files: fileRecords(entries), Go: rec}
	if err := b.cache.put(bl); err != nil {
		return nil, false, fmt.Errorf("writing build cache: %w", err)
	}
	return bl, false, nil
}

// goSandbox is how this bake runs go build: nil for unsandboxed.
func (b *Baker) goSandbox(h *hostFiles) *goSandbox {
	if !b.opts.Confine && !b.opts.Sandbox {
		return nil
	}
	sb := &goSandbox{caches: goCacheDirs(b.store.StateDir())}
	if b.opts.BuildCache != "" {
		sb.caches.Build = b.opts.BuildCache
	}
	if h.confined() {
		sb.dirs = []string{h.dir}
	}
	return sb
}

// assemble stacks the step layers on the base and writes the image configuration.
// rev is the revision to record (see SourceInfo.RevisionFor).
func (b *Baker) assemble(h *hostFiles, img *spec.Image, bs base, steps []*built, rev string) (v1.Image, error) {
	epoch := v1.Time{Time: b.opts.Source.Epoch}
	comment := ""
	if rev != "" {
		comment = "revision " + rev
	}
	out := bs.img
	var adds []mutate.Addendum
	for _, bl := range bs.layers {
		adds = append(adds, mutate.Addendum{
			Layer:   &storedLayer{s: b.store, d: bl.Layer},
			History: v1.History{Created: epoch, CreatedBy: "kiln: from " + bs.describe(), Comment: comment},
		})
	}
	for i, bl := range steps {
		adds = append(adds, mutate.Addendum{
			Layer:   &storedLayer{s: b.store, d: bl.Layer},
			History: v1.History{Created: epoch, CreatedBy: "kiln: " + img.Steps[i].Describe(), Comment: comment},
		})
	}
	out, err := mutate.Append(out, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := out.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = epoch
	cf.OS, cf.Architecture, cf.Variant = img.Platform.OS, img.Platform.Arch, img.Platform.Variant
	c := &cf.Config

	c.Env = mergeEnv(c.Env, img.Env)
	entrypointSet := false
	switch {
	case img.Entrypoint != nil:
		c.Entrypoint, entrypointSet = img.Entrypoint, true
	default:
		for _, st := range img.Steps {
			if g, ok := st.(*spec.GoBuild); ok {
				gs, err := newGoStep(g, img.Platform, h)
				if err != nil {
					return nil, err
				}
				c.Entrypoint, entrypointSet = []string{gs.target()}, true
				break
			}
		}
	}
	if img.Cmd != nil {
		c.Cmd = img.Cmd
	} else if entrypointSet {
		c.Cmd = nil
	}
	if img.Workdir != "" {
		c.WorkingDir = img.Workdir
	}
	if img.User != "" {
		c.User = img.User
	}
	for _, p := range img.Expose {
		if c.ExposedPorts == nil {
			c.ExposedPorts = map[string]struct{}{}
		}
		c.ExposedPorts[p] = struct{}{}
	}

	anns := map[string]string{
		AnnotationCreated: b.opts.Source.Epoch.UTC().Format(time.RFC3339),
		AnnotationTitle:   img.Name,
	}
	if rev != "" {
		anns[AnnotationRevision] = rev
	}
	if u := b.opts.Source.URL; u != "" {
		anns[AnnotationSource] = u
	}
	if bs.digest != (v1.Hash{}) {
		anns[AnnotationBaseDigest] = bs.digest.String()
	}
	if bs.name != "" {
		anns[AnnotationBaseName] = bs.name
	}
	// Mirror the annotations into labels: `docker load` keeps labels, not annotations.
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	maps.Copy(c.Labels, anns)
	maps.Copy(c.Labels, img.Labels)

	out, err = mutate.ConfigFile(out, cf)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(out, anns).(v1.Image), nil
}

// mergeEnv overrides base's KEY=VALUE entries with env's, adding new keys in sorted order.
func mergeEnv(base []string, env map[string]string) []string {
	out := slices.Clone(base)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		kv := k + "=" + env[k]
		i := slices.IndexFunc(out, func(e string) bool { return strings.HasPrefix(e, k+"=") })
		if i >= 0 {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	return out
}
