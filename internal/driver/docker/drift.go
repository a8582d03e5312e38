package docker

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/kiln-build/kiln/internal/driver"
)

// maxFileDrifts bounds how many changed files one Diff reports.
const maxFileDrifts = 20

// Diff compares the container with the spec recorded on it: labels, image, command,
// environment and security settings as the engine reports them, and the container's
// filesystem changes outside the spec's writable paths.
func (d *Driver) Diff(ctx context.Context, s driver.Server) ([]driver.Drift, error) {
	res, err := d.cli.ContainerInspect(ctx, string(s.ID), client.ContainerInspectOptions{})
	if isNotFound(err) {
		return nil, fmt.Errorf("server %s: %w", s.ID, driver.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("inspecting %s: %w", s.Name, d.check(err))
	}
	c := res.Container
	spec := s.Spec
	drifts := []driver.Drift{}
	config := func(format string, args ...any) {
		drifts = append(drifts, driver.Drift{Kind: driver.DriftConfig, Detail: fmt.Sprintf(format, args...)})
	}
	if c.Config == nil || c.HostConfig == nil {
		return append(drifts, driver.Drift{Kind: driver.DriftConfig, Detail: "the engine reports no configuration"}), nil
	}
	if spec.Hash() != c.Config.Labels[LabelSpecHash] {
		config("the recorded spec does not match the spec-hash label")
	}
	if want, err := imageTag(spec.Image); err != nil || c.Config.Image != want {
		config("image is %s, want the image of digest %s", c.Config.Image, spec.Image)
	}
	if spec.Command != nil && !slices.Equal(c.Config.Entrypoint, spec.Command) {
		config("entrypoint is %q, want %q", c.Config.Entrypoint, spec.Command)
	}
	if spec.Args != nil && !slices.Equal(c.Config.Cmd, spec.Args) {
		config("cmd is %q, want %q", c.Config.Cmd, spec.Args)
	}
	if d.opts.Digest != nil {
		if img, err := d.imageConfig(ctx, spec.Image); err == nil {
			if changed := envDiff(c.Config.Env, img.env, spec.Digests, d.opts.Digest); changed != "" {
				config("env differs: %s", changed)
			}
		}
	}
	// Servers of an older kiln ran on the engine's default bridge, and as root when the
	// image named no user: not what the spec makes now, so they are replaced.
	if c.NetworkSettings != nil {
		want := networkName(spec.Project)
		var got []string
		for n := range c.NetworkSettings.Networks {
			got = append(got, n)
		}
		if len(got) != 1 || got[0] != want {
			slices.Sort(got)
			config("networks are %v, want only the project's %s", got, want)
		}
	}
	if img, err := d.imageConfig(ctx, spec.Image); err == nil {
		if want := user(spec, img.user); c.Config.User != want {
			config("runs as user %q, want %q", c.Config.User, want)
		}
	}
	h := c.HostConfig
	if !h.ReadonlyRootfs {
		config("root filesystem is writable")
	}
	if h.Privileged {
		config("server is privileged")
	}
	if !slices.Contains(h.CapDrop, "ALL") || len(h.CapAdd) > 0 {
		config("capabilities changed (drop %v, add %v)", h.CapDrop, h.CapAdd)
	}
	if h.Memory != spec.Resources.MemoryBytes {
		config("memory limit is %d, want %d", h.Memory, spec.Resources.MemoryBytes)
	}
	if h.PidsLimit == nil || *h.PidsLimit != spec.Resources.PIDs {
		config("pids limit changed")
	}

	changes, err := d.cli.ContainerDiff(ctx, string(s.ID), client.ContainerDiffOptions{})
	if err != nil {
		return drifts, fmt.Errorf("diffing %s: %w", s.Name, d.check(err))
	}
	n := 0
	for _, ch := range changes.Changes {
		if writable(spec.Writable, ch.Path) || secretMount(spec, ch.Path) || initMount(spec, ch.Path) {
			continue
		}
		if n++; n > maxFileDrifts {
			drifts = append(drifts, driver.Drift{Kind: driver.DriftFile, Detail: fmt.Sprintf("and %d more changes", len(changes.Changes)-maxFileDrifts)})
			break
		}
		drifts = append(drifts, driver.Drift{Kind: driver.DriftFile, Detail: changeWord(ch.Kind) + " " + ch.Path})
	}
	return drifts, nil
}

var _ driver.Differ = (*Driver)(nil)

// writable reports whether p is, or is under, one of the writable paths, or is one of
// their parents (created as mount points).
func writable(paths []string, p string) bool {
	for _, w := range paths {
		if p == w || strings.HasPrefix(p, strings.TrimSuffix(w, "/")+"/") || strings.HasPrefix(w, strings.TrimSuffix(p, "/")+"/") {
			return true
		}
	}
	return p == "/etc" || p == "/etc/hostname" || p == "/etc/hosts" || p == "/etc/resolv.conf" || p == "/dev" || path.Dir(p) == "/dev" || p == "/proc" || p == "/sys"
}

// secretMount reports whether p is one of the spec's secret files or one of their
// parents: the engine creates each as the mount point of its read-only bind mount, in
// the container's own layer. Another file beside a secret is drift.
func secretMount(spec driver.ServerSpec, p string) bool {
	for key := range spec.Digests {
		file, ok := strings.CutPrefix(key, "file:")
		if !ok {
			continue
		}
		if p == file || strings.HasPrefix(file, strings.TrimSuffix(p, "/")+"/") {
			return true
		}
	}
	return false
}

// initPaths are where the engine bind-mounts its init (Init): /sbin/docker-init, which
// is /usr/sbin/docker-init in an image whose /sbin is a symlink to usr/sbin (a merged
// /usr, as Debian 12's packages make).
var initPaths = []string{"/sbin/docker-init", "/usr/sbin/docker-init"}

// initMount reports whether p is the mount point of the engine's init, made in the
// container's own layer when the spec asks for an init, or one of its parents. Another
// file beside it is drift.
func initMount(spec driver.ServerSpec, p string) bool {
	if !spec.Init {
		return false
	}
	for _, file := range initPaths {
		if p == file || strings.HasPrefix(file, strings.TrimSuffix(p, "/")+"/") {
			return true
		}
	}
	return false
}

func changeWord(k container.ChangeType) string {
	switch k {
	case container.ChangeAdd:
		return "added"
	case container.ChangeDelete:
		return "deleted"
	}
	return "modified"
}

// imageEnvs caches the environment of each image by tag: images never change.
var imageEnvs sync.Map

// imageConfigs caches what Diff needs of each image's configuration, by tag: images
// never change.
var imageConfigs sync.Map

type imageConfig struct {
	env  []string // NAME=value
	user string   // "" when the image names none
}

// imageConfig is the environment and user the image sets.
func (d *Driver) imageConfig(ctx context.Context, image string) (imageConfig, error) {
	tag, err := imageTag(image)
	if err != nil {
		return imageConfig{}, err
	}
	if c, ok := imageConfigs.Load(tag); ok {
		return c.(imageConfig), nil
	}
	res, err := d.cli.ImageInspect(ctx, tag)
	if err != nil {
		return imageConfig{}, err
	}
	var c imageConfig
	if res.Config != nil {
		c.env, c.user = res.Config.Env, res.Config.User
	}
	imageConfigs.Store(tag, c)
	return c, nil
}

// envDiff names the variables of got (the container's environment) that differ from
// the spec's (by their digests under digest) or, for those the spec does not set,
// from the image's; never their values.
func envDiff(got, image []string, digests map[string]string, digest func([]byte) string) string {
	gm, im := map[string]string{}, map[string]string{}
	for _, kv := range got {
		k, v, _ := strings.Cut(kv, "=")
		gm[k] = v
	}
	for _, kv := range image {
		k, v, _ := strings.Cut(kv, "=")
		im[k] = v
	}
	var parts []string
	for k, v := range gm {
		want, inSpec := digests["env:"+k]
		iv, inImage := im[k]
		switch {
		case inSpec && digest([]byte(v)) != want:
			parts = append(parts, "~"+k)
		case !inSpec && !inImage:
			parts = append(parts, "+"+k)
		case !inSpec && iv != v:
			parts = append(parts, "~"+k)
		}
	}
	for key := range digests {
		if k, ok := strings.CutPrefix(key, "env:"); ok {
			if _, set := gm[k]; !set {
				parts = append(parts, "-"+k)
			}
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}
