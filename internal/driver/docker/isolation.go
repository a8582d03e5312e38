package docker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/kiln-build/kiln/internal/driver"
)

// DefaultUser is who a server runs as when neither its spec nor its image names a
// user: the "nonroot" user of distroless images.
const DefaultUser = "65532:65532"

// networkName is the project's network. Servers of one project share it, and servers
// of other projects are on theirs: a server cannot reach another project's servers.
func networkName(project string) string {
	if project == "" {
		project = "default"
	}
	return "kiln-" + project
}

// ensureNetwork returns the ID of the project's network, creating it if it does not
// exist: a bridge on which containers cannot talk to each other (inter-container
// communication off), so a server reaches other services only through their front
// doors, on the host. Older engines allow two networks of one name, so creations are
// serialized and, should there be several, the oldest is used.
func (d *Driver) ensureNetwork(ctx context.Context, project string) (string, error) {
	name := networkName(project)
	d.netMu.Lock()
	defer d.netMu.Unlock()
	if id := d.networks[name]; id != "" {
		return id, nil
	}
	id, err := d.findNetwork(ctx, name)
	if err == nil && id == "" {
		var res client.NetworkCreateResult
		res, err = d.cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{
			Driver:  "bridge",
			Options: map[string]string{"com.docker.network.bridge.enable_icc": "false"},
			Labels:  map[string]string{LabelManaged: "true", LabelProject: project},
		})
		id = res.ID
	}
	if err != nil {
		return "", fmt.Errorf("network %s: %w", name, d.check(err))
	}
	d.networks[name] = id
	return id, nil
}

// removeEmptyNetworks removes the kiln networks c was on that no container uses any
// more (the engine refuses to remove one in use): a project's network lives as long as
// its servers, and the engine's address pools are not used up by old projects.
func (d *Driver) removeEmptyNetworks(ctx context.Context, c container.InspectResponse) {
	if c.NetworkSettings == nil {
		return
	}
	for name, ep := range c.NetworkSettings.Networks {
		if !strings.HasPrefix(name, "kiln-") || ep == nil {
			continue
		}
		d.netMu.Lock()
		if _, err := d.cli.NetworkRemove(ctx, ep.NetworkID, client.NetworkRemoveOptions{}); err == nil {
			for n, id := range d.networks {
				if id == ep.NetworkID {
					delete(d.networks, n)
				}
			}
		}
		d.netMu.Unlock()
	}
}

// forgetNetwork drops the project's network from what the driver knows exists.
func (d *Driver) forgetNetwork(project string) {
	d.netMu.Lock()
	delete(d.networks, networkName(project))
	d.netMu.Unlock()
}

// findNetwork returns the ID of the oldest network called name, "" if there is none.
func (d *Driver) findNetwork(ctx context.Context, name string) (string, error) {
	res, err := d.cli.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("name", name)})
	if err != nil {
		return "", err
	}
	var found *network.Summary
	for i, n := range res.Items {
		if n.Name == name && (found == nil || n.Created.Before(found.Created)) {
			found = &res.Items[i]
		}
	}
	if found == nil {
		return "", nil
	}
	return found.ID, nil
}

// user is who the server runs as: the spec's user, else the image's, else DefaultUser.
func user(spec driver.ServerSpec, imageUser string) string {
	switch {
	case spec.User != "":
		return spec.User
	case imageUser != "":
		return imageUser
	}
	return DefaultUser
}

// writeSecretFiles writes spec.Files under the secrets directory, in a directory of
// the container's name (0700, root's), each file readable only by the server's user,
// and returns the read-only bind mounts that put them in the server. The directory is
// on a tmpfs: secrets never reach a disk.
func (d *Driver) writeSecretFiles(name, runAs string, files map[string][]byte) ([]mount.Mount, error) {
	if len(files) == 0 {
		return nil, nil
	}
	dir := filepath.Join(d.opts.SecretsDir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("secret files: %w", err)
	}
	uid, gid := -1, -1
	u, g, _ := strings.Cut(runAs, ":")
	if n, err := strconv.Atoi(u); err == nil {
		uid, gid = n, n
	}
	if n, err := strconv.Atoi(g); err == nil {
		gid = n
	}
	var mounts []mount.Mount
	i := 0
	for target, value := range files {
		i++
		p := filepath.Join(dir, strconv.Itoa(i))
		mode := os.FileMode(0o400)
		if uid < 0 {
			mode = 0o444 // a user by name: its uid is the image's to know
		}
		if err := os.WriteFile(p, value, mode); err != nil {
			d.removeSecretFiles(name)
			return nil, fmt.Errorf("secret files: %w", err)
		}
		if uid >= 0 {
			if err := os.Chown(p, uid, gid); err != nil {
				d.removeSecretFiles(name)
				return nil, fmt.Errorf("secret files: %w", err)
			}
		}
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: p, Target: target, ReadOnly: true})
	}
	return mounts, nil
}

// sweepSecretFiles removes the secret files of every container that no longer exists.
func (d *Driver) sweepSecretFiles(ctx context.Context) {
	entries, err := os.ReadDir(d.opts.SecretsDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if _, err := d.cli.ContainerInspect(ctx, e.Name(), client.ContainerInspectOptions{}); isNotFound(err) {
			d.removeSecretFiles(e.Name())
		}
	}
}

// removeSecretFiles removes the secret files of the container called name.
func (d *Driver) removeSecretFiles(name string) {
	if name = strings.TrimPrefix(name, "/"); name != "" && name != "." && name != ".." && !strings.Contains(name, "/") {
		os.RemoveAll(filepath.Join(d.opts.SecretsDir, name))
	}
}
