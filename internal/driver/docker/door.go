package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/kiln-build/kiln/internal/driver"
)

// Labels of a door container.
const (
	LabelDoor      = "dev.kiln.door"       // the project
	LabelDoorBuild = "dev.kiln.door.build" // the build of kiln it runs
)

var _ driver.DoorHost = (*Driver)(nil)

// doorName is the container of the project's door.
func doorName(project, build string) string {
	return fmt.Sprintf("kiln-door-%s-%s", project, build[:min(12, len(build))])
}

// EnsureDoor runs the project's door as a container of kiln's own binary, on the
// host's network (a door listens on the host's addresses and reaches servers on their
// loopback ports), restarted by the engine when it exits and when the engine starts
// (restart policy unless-stopped), with its directory mounted at the same path.
func (d *Driver) EnsureDoor(ctx context.Context, spec driver.DoorSpec) error {
	existing, err := d.doors(ctx, spec.Project)
	if err != nil {
		return err
	}
	takeover := false
	for _, c := range existing {
		if c.Labels[LabelDoorBuild] == spec.Build && c.State == container.StateRunning {
			return nil
		}
	}
	for _, c := range existing {
		if c.State == container.StateRunning {
			takeover = true // it serves: the new door takes its listeners
			continue
		}
		if _, err := d.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			return fmt.Errorf("removing the old front door %s: %w", strings.TrimPrefix(c.Names[0], "/"), d.check(err))
		}
	}
	tag := "kiln/door:" + spec.Build[:min(12, len(spec.Build))]
	if _, err := d.cli.ImageInspect(ctx, tag); err != nil {
		if !isNotFound(err) {
			return fmt.Errorf("inspecting the front door's image: %w", d.check(err))
		}
		if err := d.importDoorImage(ctx, spec.Binary, tag); err != nil {
			return err
		}
	}
	created, err := d.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: doorName(spec.Project, spec.Build),
		Config: &container.Config{
			Image:      tag,
			User:       spec.User,
			Entrypoint: doorCommand(spec, takeover),
			WorkingDir: spec.Dir,
			StopSignal: "SIGTERM",
			Labels:     map[string]string{LabelDoor: spec.Project, LabelDoorBuild: spec.Build, LabelProject: spec.Project},
		},
		HostConfig: &container.HostConfig{
			NetworkMode:    "host",
			RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
			ReadonlyRootfs: true,
			CapDrop:        []string{"ALL"},
			CapAdd:         []string{"NET_BIND_SERVICE"},
			SecurityOpt:    []string{"no-new-privileges"},
			Binds:          []string{spec.Dir + ":" + spec.Dir},
			Init:           initFlag(false),
			LogConfig:      container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "3"}},
		},
	})
	if err != nil {
		return fmt.Errorf("creating the front door's container: %w", d.check(err))
	}
	if _, err := d.cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		d.cli.ContainerRemove(context.WithoutCancel(ctx), created.ID, client.ContainerRemoveOptions{Force: true})
		return fmt.Errorf("starting the front door's container: %w", d.check(err))
	}
	return nil
}

// doorCommand is the door's command line: its directory, build and creation time, and
// --takeover when it replaces a running door.
func doorCommand(spec driver.DoorSpec, takeover bool) []string {
	cmd := []string{"/kiln", "door", "--dir", spec.Dir, "--build", spec.Build, "--created", strconv.FormatInt(time.Now().UnixNano(), 10)}
	if takeover {
		cmd = append(cmd, "--takeover")
	}
	return cmd
}

// doorStopTimeout bounds a retired door's drain: the proxy's shutdown bound, and a
// margin.
const doorStopTimeout = 40

// RetireDoors stops (SIGTERM: requests in flight finish) and removes the project's
// doors of builds other than build.
func (d *Driver) RetireDoors(ctx context.Context, project, build string) error {
	existing, err := d.doors(ctx, project)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range existing {
		if c.Labels[LabelDoorBuild] == build {
			continue
		}
		timeout := doorStopTimeout
		if _, err := d.cli.ContainerStop(ctx, c.ID, client.ContainerStopOptions{Timeout: &timeout}); err != nil && !isNotFound(err) {
			errs = append(errs, d.check(err))
		}
		if _, err := d.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			errs = append(errs, d.check(err))
		}
	}
	return errors.Join(errs...)
}

// RemoveDoor removes every door container of project.
func (d *Driver) RemoveDoor(ctx context.Context, project string) error {
	existing, err := d.doors(ctx, project)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range existing {
		if _, err := d.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !isNotFound(err) {
			errs = append(errs, d.check(err))
		}
	}
	return errors.Join(errs...)
}

func (d *Driver) doors(ctx context.Context, project string) ([]container.Summary, error) {
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true,
		Filters: make(client.Filters).Add("label", LabelDoor+"="+project)})
	if err != nil {
		return nil, fmt.Errorf("listing the front door's containers: %w", d.check(err))
	}
	return res.Items, nil
}

// importDoorImage makes the image tag of kiln's binary at bin: the binary as /kiln,
// with the dynamic loader and libraries it needs when it is not static, copied from
// the host.
func (d *Driver) importDoorImage(ctx context.Context, bin, tag string) error {
	files, err := doorFiles(bin)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for dst, src := range files {
		for dir := filepath.Dir(dst); dir != "/" && !dirs[dir]; dir = filepath.Dir(dir) {
			dirs[dir] = true
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(dir, "/") + "/", Mode: 0o755})
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("the front door's image: %w", err)
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dst, "/"), Mode: 0o755, Size: int64(len(b))}); err != nil {
			return err
		}
		tw.Write(b)
	}
	// Where the door's temporary files go on a read-only root: none are written, but
	// some libraries look for /tmp.
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777})
	if err := tw.Close(); err != nil {
		return err
	}
	res, err := d.cli.ImageImport(ctx, client.ImageImportSource{Source: &buf, SourceName: "-"}, tag, client.ImageImportOptions{})
	if err != nil {
		return fmt.Errorf("importing the front door's image: %w", d.check(err))
	}
	defer res.Close()
	out, _ := io.ReadAll(res)
	if bytes.Contains(out, []byte(`"error"`)) {
		return fmt.Errorf("importing the front door's image: %s", strings.TrimSpace(string(out)))
	}
	return nil
}

// doorFiles maps the paths of the door's image to the host files they are: the binary
// at /kiln, and for a dynamic one its interpreter and libraries at their host paths.
func doorFiles(bin string) (map[string]string, error) {
	files := map[string]string{"/kiln": bin}
	f, err := elf.Open(bin)
	if err != nil {
		return nil, fmt.Errorf("the front door runs kiln's own binary, and %s is not one this host can run: %w", bin, err)
	}
	defer f.Close()
	var interp string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, _ := io.ReadAll(p.Open())
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if interp == "" {
		return files, nil // static
	}
	files[interp] = interp
	libs, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("reading the libraries %s needs: %w", bin, err)
	}
	dirs := []string{filepath.Dir(interp), "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu",
		"/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}
	for _, lib := range libs {
		found := ""
		for _, dir := range dirs {
			if p := filepath.Join(dir, lib); fileExists(p) {
				found = p
				break
			}
		}
		if found == "" {
			return nil, fmt.Errorf("%s needs %s, which is in none of %s: build kiln static (CGO_ENABLED=0 go build ./cmd/kiln) for its front door", bin, lib, strings.Join(dirs, ", "))
		}
		real, err := filepath.EvalSymlinks(found)
		if err != nil {
			return nil, err
		}
		files[found] = real
	}
	return files, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
