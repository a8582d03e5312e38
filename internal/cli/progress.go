package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/kiln-build/kiln/internal/bake"
	"github.com/kiln-build/kiln/internal/spec"
)

// progress shows a bake as it happens.
type progress interface {
	event(bake.Event)
	// stop waits for the display to finish; no event may follow.
	stop()
}

// newProgress picks the display: JSON lines for machines, bars on a terminal, plain
// lines otherwise.
func newProgress(w io.Writer, asJSON bool, images []*spec.Image) progress {
	switch {
	case asJSON:
		return &jsonProgress{enc: json.NewEncoder(w)}
	case isTerminal(w):
		return newBarProgress(w, images)
	default:
		return &lineProgress{w: w}
	}
}

type jsonProgress struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (p *jsonProgress) event(e bake.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.enc.Encode(struct {
		Type string `json:"type"`
		bake.Event
	}{"progress", e})
}

func (p *jsonProgress) stop() {}

type lineProgress struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *lineProgress) event(e bake.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case e.State == bake.StateFailed && e.Step == "":
		fmt.Fprintf(p.w, "%s: failed\n", e.Image)
	case e.State == bake.StateFailed:
		fmt.Fprintf(p.w, "%s: %s: failed\n", e.Image, e.Step)
	case e.State == bake.StateDone:
		fmt.Fprintf(p.w, "%s: done in %s\n", e.Image, round(e.Elapsed))
	case e.Step != "" && e.State == bake.StateCached:
		fmt.Fprintf(p.w, "%s: %s (cached)\n", e.Image, e.Step)
	case e.Step != "" && e.State == bake.StateBuilt:
		fmt.Fprintf(p.w, "%s: %s (%s)\n", e.Image, e.Step, round(e.Elapsed))
	}
}

func (p *lineProgress) stop() {}

func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}

// barProgress draws a bar per image, advancing as its steps finish, with the step it is
// on beside it.
type barProgress struct {
	p       *mpb.Progress
	mu      sync.Mutex
	bars    map[string]*mpb.Bar
	text    map[string]string   // what the image is doing, shown beside its bar
	running map[string][]string // an image's steps in flight, oldest first
}

func newBarProgress(w io.Writer, images []*spec.Image) *barProgress {
	bp := &barProgress{
		p:       mpb.New(mpb.WithOutput(w), mpb.WithWidth(24), mpb.WithRefreshRate(100*time.Millisecond)),
		bars:    map[string]*mpb.Bar{},
		text:    map[string]string{},
		running: map[string][]string{},
	}
	width := 0
	for _, img := range images {
		width = max(width, len(img.Name))
	}
	for _, img := range images {
		name := img.Name
		bp.text[name] = "waiting"
		steps := len(img.Steps) + 1 // and storing the image
		if img.From.Kind == spec.FromDocker {
			steps++ // exporting the base from the engine is a step of its own
		}
		bp.bars[name] = bp.p.AddBar(int64(steps),
			mpb.PrependDecorators(decor.Name(name, decor.WC{W: width + 1, C: decor.DindentRight})),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
				bp.mu.Lock()
				defer bp.mu.Unlock()
				return bp.text[name]
			})),
		)
	}
	return bp
}

func (bp *barProgress) event(e bake.Event) {
	// The bar is moved after unlocking: mpb calls the text decorator, which locks, from
	// its own goroutine.
	if act := bp.update(e); act != nil {
		act()
	}
}

// update records e and returns what to do to the image's bar, if anything.
func (bp *barProgress) update(e bake.Event) func() {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	bar := bp.bars[e.Image]
	if e.Step != "" {
		run := slices.DeleteFunc(bp.running[e.Image], func(s string) bool { return s == e.Step })
		if e.State == bake.StateStart {
			run = append(run, e.Step)
		}
		bp.running[e.Image] = run
		switch {
		case len(run) == 1:
			bp.text[e.Image] = run[0]
		case len(run) > 1:
			bp.text[e.Image] = fmt.Sprintf("%s (+%d)", run[0], len(run)-1)
		}
		if e.State == bake.StateCached || e.State == bake.StateBuilt {
			return func() { bar.Increment() }
		}
		return nil
	}
	switch e.State {
	case bake.StateStart:
		bp.text[e.Image] = "starting"
	case bake.StateDone:
		bp.text[e.Image] = fmt.Sprintf("%s in %s", short(e.Digest), round(e.Elapsed))
		return func() { bar.SetTotal(-1, true) }
	case bake.StateFailed:
		bp.text[e.Image] = "failed"
		return func() { bar.Abort(false) }
	}
	return nil
}

func (bp *barProgress) stop() {
	for _, bar := range bp.bars {
		if !bar.Completed() {
			bar.Abort(false)
		}
	}
	bp.p.Wait()
}

// short is a digest's first 12 hex digits, as docker shows image IDs.
func short(digest string) string {
	const prefix = "sha256:"
	if len(digest) >= len(prefix)+12 {
		return digest[len(prefix) : len(prefix)+12]
	}
	return digest
}
