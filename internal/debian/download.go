package debian

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
)

// Download makes sure the .deb of every package is in the cache, downloading those
// that are not (Options.Parallel at a time), and returns their paths, in the order
// of pkgs. Every file, downloaded or cached, is checked against the package's size
// and SHA-256: a file that does not match is refused (ErrHashMismatch). With every
// file cached, it reads no network.
func (c *Client) Download(ctx context.Context, pkgs []Package) ([]string, error) {
	paths := make([]string, len(pkgs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Parallel)
	for i, p := range pkgs {
		g.Go(func() error {
			if len(p.SHA256) != 64 || p.URL == "" {
				return fmt.Errorf("package %s %s has no URL or SHA-256 to fetch it by", p.Name, p.Version)
			}
			path, err := c.fetch(gctx, p.URL, p.SHA256, p.Size)
			if err != nil {
				return fmt.Errorf("package %s %s: %w", p.Name, p.Version, err)
			}
			paths[i] = path
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return paths, nil
}
