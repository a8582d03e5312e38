package bake

import (
	"fmt"
	"strings"

	"github.com/kiln-build/kiln/internal/spec"
)

// Select returns the named images of cfg and every image they are built on or copy
// from, in declaration order; all images when names is empty.
func Select(cfg *spec.Config, names []string) ([]*spec.Image, error) {
	if len(names) == 0 {
		return cfg.Images, nil
	}
	want := map[string]bool{}
	var add func(string) error
	add = func(n string) error {
		img := cfg.Image(n)
		if img == nil {
			var all []string
			for _, i := range cfg.Images {
				all = append(all, i.Name)
			}
			return fmt.Errorf("no image %q in %s (it has: %s)", n, cfg.Filename, strings.Join(all, ", "))
		}
		if want[n] {
			return nil
		}
		want[n] = true
		for _, need := range img.Needs() {
			if err := add(need); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range names {
		if err := add(n); err != nil {
			return nil, err
		}
	}
	var out []*spec.Image
	for _, img := range cfg.Images {
		if want[img.Name] {
			out = append(out, img)
		}
	}
	return out, nil
}
