package cli

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/internal/bake"
	"github.com/kiln-build/kiln/internal/imagestore"
)

type lockOptions struct {
	update bool
}

func newLockCmd(g *globals) *cobra.Command {
	var o lockOptions
	cmd := &cobra.Command{
		Use:   "lock [IMAGE...]",
		Short: "Pin the images' OS packages in kiln.lock.hcl",
		Long: `Lock resolves the packages blocks of the spec's images (all of them, or those named)
against their Debian repositories and pins every package, with its dependencies, to a
version and the SHA-256 of its .deb in kiln.lock.hcl beside the spec. A bake with the
lock installs exactly those files, and needs no network once they are in the state
directory's cache; the first bake writes the lock when there is none.

A set the lock already has for the same packages and repositories is kept; -update
resolves every set anew, moving each package to the newest version the repositories
have, and prints what moved. Commit kiln.lock.hcl with the spec.`,
		Example: `  kiln lock           # pin what is not pinned yet
  kiln lock -update   # move every package forward: ~ libssl3 3.0.15-1~deb12u1 -> 3.0.16-1~deb12u1`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLock(cmd, g, o, args)
		},
	}
	cmd.Flags().BoolVar(&o.update, "update", false, "resolve every set anew and print the packages that changed")
	addVarFlag(g, cmd.Flags())
	return cmd
}

func runLock(cmd *cobra.Command, g *globals, o lockOptions, names []string) error {
	ctx := cmd.Context()
	cfg, err := g.loadSpec()
	if err != nil {
		return err
	}
	images, err := bake.Select(cfg, names)
	if err != nil {
		return err
	}
	stateDir, err := g.state(cfg)
	if err != nil {
		return err
	}
	store, err := imagestore.Open(stateDir)
	if err != nil {
		return err
	}
	unlock, err := store.Lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	opts := g.bakeOptions(cfg, bake.SourceInfo{}, nil)
	opts.LockFile = filepath.Join(cfg.Dir, bake.LockFileName)
	baker, err := bake.NewBaker(store, opts)
	if err != nil {
		return err
	}
	changes, err := baker.LockPackages(ctx, images, o.update)
	if err != nil {
		return g.bakeError(cfg, err)
	}
	if len(changes) == 0 {
		fmt.Fprintf(g.stdout, "%s: no package changed\n", opts.LockFile)
		return nil
	}
	for _, img := range slices.Sorted(maps.Keys(changes)) {
		fmt.Fprintf(g.stdout, "image %q:\n", img)
		for _, ch := range changes[img] {
			fmt.Fprintf(g.stdout, "  %s\n", ch)
		}
	}
	fmt.Fprintf(g.stdout, "wrote %s\n", opts.LockFile)
	return nil
}
