package engine

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/store"
)

// What the dashboard reads besides status, history and runs.

// Image is an image of the store with the revisions that run it.
type Image struct {
	Name     string
	Digest   string
	Size     int64
	Created  time.Time
	Baked    time.Time
	Revision string // the commit it was baked from
	Source   string
	HasSBOM  bool
	Current  bool // the newest bake of its name
	Kept     bool // a revision keeps it from `kiln images prune`
	Uses     []store.ImageUse
}

// Images returns the image store's images, newest bake first, with the revisions that
// run each.
func (e *Engine) Images(ctx context.Context) ([]Image, error) {
	entries, err := e.opts.Images.Entries()
	if err != nil {
		return nil, err
	}
	uses, err := e.opts.State.ImageUses(ctx)
	if err != nil {
		return nil, err
	}
	kept, err := e.opts.State.KeptImages(ctx, 10)
	if err != nil {
		return nil, err
	}
	byImage := map[string][]store.ImageUse{}
	for _, u := range uses {
		byImage[u.Image] = append(byImage[u.Image], u)
	}
	var out []Image
	for i := len(entries) - 1; i >= 0; i-- {
		en := entries[i]
		d := en.Digest.String()
		out = append(out, Image{Name: en.Name, Digest: d, Size: en.Size, Created: en.Created, Baked: en.Baked,
			Revision: en.Revision, Source: en.Source, HasSBOM: en.SBOM != (v1.Hash{}), Current: en.Current,
			Kept: kept[d], Uses: byImage[d]})
	}
	return out, nil
}

// SBOM writes the CycloneDX SBOM of the stored image with digest to w.
func (e *Engine) SBOM(digest string, w io.Writer) error {
	entries, err := e.opts.Images.Entries()
	if err != nil {
		return err
	}
	for _, en := range entries {
		if en.Digest.String() != digest {
			continue
		}
		if en.SBOM == (v1.Hash{}) {
			return fmt.Errorf("image %s has no SBOM: %w", digest, store.ErrNotFound)
		}
		r, err := e.opts.Images.Blob(en.SBOM)
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = io.Copy(w, r)
		return err
	}
	return fmt.Errorf("no image %s in the store: %w", digest, store.ErrNotFound)
}

// Rollouts returns a service's rollouts, newest first.
func (e *Engine) Rollouts(ctx context.Context, service string) ([]store.Rollout, error) {
	return e.opts.State.Rollouts(ctx, service)
}

// QueryEvents returns the events q selects, newest first.
func (e *Engine) QueryEvents(ctx context.Context, q store.EventQuery) ([]api.Event, error) {
	evs, err := e.opts.State.QueryEvents(ctx, q)
	if err != nil {
		return nil, err
	}
	out := make([]api.Event, 0, len(evs))
	for _, ev := range evs {
		out = append(out, apiEvent(ev))
	}
	return out, nil
}

// EventTypes returns the types of the events recorded so far.
func (e *Engine) EventTypes(ctx context.Context) ([]string, error) {
	return e.opts.State.EventTypes(ctx)
}

// RecentLogs returns the last lines (at most n) that the service's servers printed.
func (e *Engine) RecentLogs(ctx context.Context, service string, n int) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	t := &tail{n: n}
	if err := e.Logs(ctx, service, false, t); err != nil {
		return nil, err
	}
	return t.lines, nil
}

// tail keeps the last n lines written to it; each Write is one line (see Logs).
type tail struct {
	n     int
	lines []string
}

func (t *tail) Write(p []byte) (int, error) {
	t.lines = append(t.lines, strings.TrimRight(string(p), "\n"))
	if len(t.lines) > t.n {
		t.lines = t.lines[1:]
	}
	return len(p), nil
}
