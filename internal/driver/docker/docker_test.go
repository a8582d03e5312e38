package docker

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/drivertest"
)

// newTestDriver returns a driver of the engine DOCKER_HOST names. Without an engine the
// test fails (scripts/test starts one), unless -short asks to skip what needs Docker.
func newTestDriver(t *testing.T) *Driver {
	t.Helper()
	d, err := New(Options{StopTimeout: 3 * time.Second, Digest: testDigest})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Ping(t.Context()); errors.Is(err, driver.ErrUnavailable) && testing.Short() {
		t.Skipf("no Docker engine at %s: %v", d.cli.DaemonHost(), err)
	} else if err != nil {
		t.Fatal(err)
	}
	return d
}

// testDigest stands for the daemon's keyed digest (secret.Key.Digest).
func testDigest(b []byte) string {
	m := hmac.New(sha256.New, []byte("test key"))
	m.Write(b)
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

func TestConformance(t *testing.T) {
	d := newTestDriver(t)
	drivertest.Run(t, func(t *testing.T) driver.Driver { return newTestDriver(t) }, drivertest.HelloImage(t), drivertest.Options{
		Inspect: func(t *testing.T, id driver.ServerID, spec driver.ServerSpec) { inspect(t, d.cli, id, spec) },
		RemoveImage: func(t *testing.T, digest string) {
			tag, _ := imageTag(digest)
			if _, err := d.cli.ImageRemove(context.Background(), tag, client.ImageRemoveOptions{}); err != nil {
				t.Errorf("removing %s: %v", tag, err)
			}
		},
		Digest:   testDigest,
		Loopback: true,
		// As an operator would: docker exec <server> /hello (it exits at once: its port
		// is taken).
		Exec: func(t *testing.T, id driver.ServerID) {
			x, err := d.cli.ExecCreate(t.Context(), string(id), client.ExecCreateOptions{Cmd: []string{"/hello"}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.cli.ExecStart(t.Context(), x.ID, client.ExecStartOptions{Detach: true}); err != nil {
				t.Fatal(err)
			}
		},
		Recorded: func(t *testing.T, id driver.ServerID) string {
			res, err := d.cli.ContainerInspect(t.Context(), string(id), client.ContainerInspectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(res.Container.Config.Labels)
			return string(b)
		},
	})
}

// inspect checks the container against spec and kiln's security defaults.
func inspect(t *testing.T, cli *client.Client, id driver.ServerID, spec driver.ServerSpec) {
	res, err := cli.ContainerInspect(t.Context(), string(id), client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, h := res.Container, res.Container.HostConfig
	if !h.ReadonlyRootfs {
		t.Error("the root filesystem is writable")
	}
	if !slices.Equal(h.CapDrop, []string{"ALL"}) || len(h.CapAdd) != 0 {
		t.Errorf("CapDrop %v, CapAdd %v: want ALL dropped and none added", h.CapDrop, h.CapAdd)
	}
	if !slices.Contains(h.SecurityOpt, "no-new-privileges") {
		t.Errorf("SecurityOpt = %v, want no-new-privileges", h.SecurityOpt)
	}
	if h.Privileged {
		t.Error("the container is privileged")
	}
	if h.NetworkMode.IsHost() || h.PidMode.IsHost() || h.IpcMode.IsHost() || h.UTSMode.IsHost() || h.UsernsMode.IsHost() || h.CgroupnsMode.IsHost() {
		t.Errorf("the container shares a host namespace: net %q pid %q ipc %q uts %q userns %q cgroupns %q",
			h.NetworkMode, h.PidMode, h.IpcMode, h.UTSMode, h.UsernsMode, h.CgroupnsMode)
	}
	if len(h.Binds) != 0 || len(h.Mounts) != len(spec.Files) || len(h.VolumesFrom) != 0 {
		t.Errorf("the container mounts host paths: binds %v mounts %v volumes from %v", h.Binds, h.Mounts, h.VolumesFrom)
	}
	for _, m := range h.Mounts { // only its secret files, read-only, from the tmpfs
		if _, ok := spec.Files[m.Target]; !ok || !m.ReadOnly || !strings.HasPrefix(m.Source, "/dev/shm/kiln-secrets/") {
			t.Errorf("mount %+v is not one of the spec's secret files", m)
		}
	}
	if want := "kiln-" + cmp.Or(spec.Project, "default"); len(c.NetworkSettings.Networks) != 1 || c.NetworkSettings.Networks[want] == nil {
		t.Errorf("networks %v, want only the project's own, %q", slices.Collect(maps.Keys(c.NetworkSettings.Networks)), want)
	}
	if want := cmp.Or(spec.User, DefaultUser); c.Config.User != want {
		t.Errorf("user %q, want %q: the image names none", c.Config.User, want)
	}
	if spec.Init && (h.Init == nil || !*h.Init) {
		t.Error("the spec asks for an init, the container has none")
	}
	if c.Config.StopSignal != spec.StopSignal {
		t.Errorf("stop signal %q, want %q", c.Config.StopSignal, spec.StopSignal)
	}
	if spec.StopTimeout > 0 && (c.Config.StopTimeout == nil || time.Duration(*c.Config.StopTimeout)*time.Second != spec.StopTimeout) {
		t.Errorf("stop timeout %v, want %v", c.Config.StopTimeout, spec.StopTimeout)
	}
	labels, _ := json.Marshal(c.Config.Labels)
	for k, v := range spec.Env {
		if len(v) > 2 && strings.Contains(string(labels), v) {
			t.Errorf("the value of %s is in the labels: %s", k, labels)
		}
	}
	for _, m := range c.Mounts {
		if strings.Contains(m.Source, "docker.sock") {
			t.Errorf("the Docker socket is mounted at %s", m.Destination)
		}
	}
	if !h.RestartPolicy.IsNone() {
		t.Errorf("restart policy %q, want none: kiln replaces failed servers", h.RestartPolicy.Name)
	}
	if h.PidsLimit == nil || *h.PidsLimit != spec.Resources.PIDs {
		t.Errorf("PidsLimit = %v, want %d", h.PidsLimit, spec.Resources.PIDs)
	}
	if h.Memory != spec.Resources.MemoryBytes {
		t.Errorf("Memory = %d, want %d", h.Memory, spec.Resources.MemoryBytes)
	}
	if want := int64(spec.Resources.CPUs * 1e9); h.NanoCPUs != want {
		t.Errorf("NanoCPUs = %d, want %d", h.NanoCPUs, want)
	}
	var tmpfs []string
	for p, o := range h.Tmpfs {
		tmpfs = append(tmpfs, p)
		if !strings.Contains(o, "rw") || !strings.Contains(o, "nosuid") || !strings.Contains(o, "size=") {
			t.Errorf("tmpfs %s has options %q, want rw, nosuid and a size", p, o)
		}
	}
	slices.Sort(tmpfs)
	if want := slices.Sorted(slices.Values(spec.Writable)); !slices.Equal(tmpfs, want) {
		t.Errorf("tmpfs at %v, want %v", tmpfs, want)
	}
	port, _ := network.PortFrom(uint16(spec.Port), network.TCP)
	bindings := h.PortBindings[port]
	if len(h.PortBindings) != 1 || len(bindings) != 1 || bindings[0].HostIP.String() != "127.0.0.1" {
		t.Errorf("port bindings %v, want %s on 127.0.0.1 only", h.PortBindings, port)
	}

	// Empty, they leave the image's in place.
	if len(spec.Command) > 0 && !slices.Equal(c.Config.Entrypoint, spec.Command) {
		t.Errorf("entrypoint %q, want %q", c.Config.Entrypoint, spec.Command)
	}
	if len(spec.Args) > 0 && !slices.Equal(c.Config.Cmd, spec.Args) {
		t.Errorf("cmd %q, want %q", c.Config.Cmd, spec.Args)
	}
	for k, v := range spec.Env {
		if !slices.Contains(c.Config.Env, k+"="+v) {
			t.Errorf("env %v lacks %s=%s", c.Config.Env, k, v)
		}
	}
	l := c.Config.Labels
	if l[LabelManaged] != "true" || l[LabelService] != spec.Service || l[LabelRevision] != strconv.FormatInt(spec.Revision, 10) || l[LabelSpecHash] != spec.Hash() ||
		l[LabelImage] != spec.Image || l[LabelPort] != strconv.Itoa(spec.Port) || l[LabelSpec] == "" {
		t.Errorf("labels %v", l)
	}
	name := regexp.MustCompile(`^/kiln-` + regexp.QuoteMeta(spec.Service) + `-` + spec.Hash()[:8] + `-[0-9a-f]{6}$`)
	if !name.MatchString(c.Name) {
		t.Errorf("name %q, want %s", c.Name, name)
	}
}

func TestUnavailable(t *testing.T) {
	d, err := New(Options{Host: "tcp://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := t.Context()
	for what, err := range map[string]error{
		"Ping":    d.Ping(ctx),
		"List":    func() error { _, err := d.List(ctx, driver.Selector{}); return err }(),
		"Destroy": d.Destroy(ctx, "x"),
		"Watch":   func() error { _, err := d.Watch(ctx); return err }(),
	} {
		if !errors.Is(err, driver.ErrUnavailable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
			t.Errorf("%s: got %v, want ErrUnavailable naming the address", what, err)
		}
		t.Logf("%s: %v", what, err)
	}
}

// TestNotManaged checks that Destroy leaves alone containers kiln did not create.
func TestNotManaged(t *testing.T) {
	d := newTestDriver(t)
	img := drivertest.HelloImage(t)
	ctx := t.Context()
	if err := d.EnsureImage(ctx, img.Digest, func() (v1.Image, error) { return img.Image, nil }); err != nil {
		t.Fatal(err)
	}
	tag, _ := imageTag(img.Digest)
	c, err := d.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: &container.Config{Image: tag}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.cli.ContainerRemove(context.Background(), c.ID, client.ContainerRemoveOptions{Force: true})
	})
	if err := d.Destroy(ctx, driver.ServerID(c.ID)); !errors.Is(err, errNotManaged) {
		t.Errorf("Destroy of a container kiln did not create: %v, want errNotManaged", err)
	}
	if _, err := d.cli.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{}); err != nil {
		t.Errorf("the container is gone: %v", err)
	}
}

func TestCreateRejectsUnlimitedSpecs(t *testing.T) {
	d, err := New(Options{Host: "tcp://127.0.0.1:1"}) // never reached
	if err != nil {
		t.Fatal(err)
	}
	ok := driver.ServerSpec{Service: "s", Image: "sha256:" + strings.Repeat("a", 64), Port: 80, Resources: driver.DefaultResources}
	for name, mod := range map[string]func(*driver.ServerSpec){
		"no memory limit": func(s *driver.ServerSpec) { s.Resources.MemoryBytes = 0 },
		"no PIDs limit":   func(s *driver.ServerSpec) { s.Resources.PIDs = 0 },
		"no port":         func(s *driver.ServerSpec) { s.Port = 0 },
		"bad digest":      func(s *driver.ServerSpec) { s.Image = "latest" },
	} {
		spec := ok
		mod(&spec)
		if _, err := d.Create(t.Context(), spec); err == nil || errors.Is(err, driver.ErrUnavailable) {
			t.Errorf("%s: Create = %v, want it refused before reaching the engine", name, err)
		}
	}
}

func TestToEvent(t *testing.T) {
	attrs := map[string]string{LabelService: "web", "exitCode": "137"}
	for _, tc := range []struct {
		action     string
		want       driver.EventType
		wantDetail string
		drop       bool
	}{
		{action: "start", want: driver.EventStart},
		{action: "die", want: driver.EventDie, wantDetail: "exit code 137"},
		{action: "destroy", want: driver.EventDestroy},
		{action: "exec_start: sh -c id", want: driver.EventExec, wantDetail: "exec_start: sh -c id"},
		{action: "exec_create: sh", want: driver.EventExec, wantDetail: "exec_create: sh"},
		{action: "exec_start", want: driver.EventExec, wantDetail: "exec_start"},
		{action: "rename", want: driver.EventChange, wantDetail: "rename"},
		{action: "pause", want: driver.EventChange, wantDetail: "pause"},
		{action: "unpause", want: driver.EventChange, wantDetail: "unpause"},
		{action: "update", want: driver.EventChange, wantDetail: "update"},
		{action: "create", drop: true},
		{action: "kill", drop: true},
		{action: "health_status: healthy", drop: true},
	} {
		ev, ok := toEvent(events.Message{Type: events.ContainerEventType, Action: events.Action(tc.action),
			Actor: events.Actor{ID: "c1", Attributes: attrs}, TimeNano: 1e18})
		if ok == tc.drop {
			t.Errorf("%q: reported %v, want %v", tc.action, ok, !tc.drop)
			continue
		}
		if tc.drop {
			continue
		}
		want := driver.Event{Type: tc.want, ServerID: "c1", Service: "web", Detail: tc.wantDetail, Time: time.Unix(0, 1e18)}
		if ev != want {
			t.Errorf("%q: %+v, want %+v", tc.action, ev, want)
		}
	}
}

// Open takes the driver's options by name and refuses others; an engine that does not
// answer is ErrUnavailable.
func TestOpen(t *testing.T) {
	ctx := t.Context()
	if _, err := Open(ctx, driver.Config{Options: map[string]string{"hots": "x"}}); !errors.Is(err, driver.ErrUnknownOption) {
		t.Errorf("Open with a misspelt option: %v, want ErrUnknownOption", err)
	}
	if _, err := Open(ctx, driver.Config{Options: map[string]string{OptionStopTimeout: "soon"}}); err == nil {
		t.Error("Open accepted a stop timeout that is not a duration")
	}
	_, err := Open(ctx, driver.Config{Options: map[string]string{OptionHost: "tcp://127.0.0.1:1", OptionStopTimeout: "3s", OptionTmpfsSize: "1048576"}})
	if !errors.Is(err, driver.ErrUnavailable) {
		t.Errorf("Open of an engine that does not answer: %v, want ErrUnavailable", err)
	}
}

// TestWatchChange alters a server out of band, as an operator with the docker CLI would.
func TestWatchChange(t *testing.T) {
	d := newTestDriver(t)
	img := drivertest.HelloImage(t)
	ctx := t.Context()
	if err := d.EnsureImage(ctx, img.Digest, func() (v1.Image, error) { return img.Image, nil }); err != nil {
		t.Fatal(err)
	}
	events, err := d.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	spec := driver.ServerSpec{Service: "kt-watchchange-" + strconv.FormatInt(time.Now().UnixNano(), 36), Image: img.Digest, Port: img.Port, Resources: driver.DefaultResources}
	srv, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Destroy(context.Background(), srv.ID) })
	if _, err := d.cli.ContainerRename(ctx, string(srv.ID), client.ContainerRenameOptions{NewName: srv.Name + "-renamed"}); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.ServerID == srv.ID && ev.Type == driver.EventChange {
				if ev.Detail != "rename" || ev.Service != spec.Service {
					t.Errorf("rename reported as %+v", ev)
				}
				return
			}
		case <-timeout:
			t.Fatal("no change event within 10s of a rename")
		}
	}
}

// TestDiffOutOfBand: a container recreated by hand from a server's labels, without the
// read-only root and with a file copied in, shows config and file drift.
func TestDiffOutOfBand(t *testing.T) {
	d := newTestDriver(t)
	img := drivertest.HelloImage(t)
	ctx := t.Context()
	if err := d.EnsureImage(ctx, img.Digest, func() (v1.Image, error) { return img.Image, nil }); err != nil {
		t.Fatal(err)
	}
	spec := driver.ServerSpec{Service: "kt-diff-" + strconv.FormatInt(time.Now().UnixNano(), 36), Image: img.Digest,
		Port: img.Port, Resources: driver.DefaultResources, Writable: []string{"/tmp"}}
	srv, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Destroy(context.Background(), srv.ID) })
	res, err := d.cli.ContainerInspect(ctx, string(srv.ID), client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"create", "-e", "INTRUDER=1"}
	for k, v := range res.Container.Config.Labels {
		args = append(args, "--label", k+"="+v)
	}
	out, err := exec.Command("docker", append(args, res.Container.Config.Image)...).Output()
	if err != nil {
		t.Fatalf("docker create: %v", err)
	}
	impostor := driver.ServerID(strings.TrimSpace(string(out)))
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", string(impostor)).Run() })
	evil := filepath.Join(t.TempDir(), "evil")
	os.WriteFile(evil, []byte("x"), 0o644)
	if out, err := exec.Command("docker", "cp", evil, string(impostor)+":/evil").CombinedOutput(); err != nil {
		t.Fatalf("docker cp: %v: %s", err, out)
	}
	drifts, err := d.Diff(ctx, driver.Server{ID: impostor, Name: "impostor", Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, dr := range drifts {
		got = append(got, string(dr.Kind)+": "+dr.Detail)
	}
	all := strings.Join(got, "\n")
	// Recreated by hand: on the default bridge, as root (as servers of an older kiln
	// were), which kiln's servers no longer are.
	for _, want := range []string{"file: added /evil", "config: root filesystem is writable", "config: env differs: +INTRUDER", "config: memory limit",
		"config: networks are [bridge], want only the project's kiln-default", `config: runs as user "", want "65532:65532"`} {
		if !strings.Contains(all, want) {
			t.Errorf("drift lacks %q; got:\n%s", want, all)
		}
	}
	// The server kiln created is clean, and copying into it is refused: its root is read-only.
	if drifts, _ := d.Diff(ctx, srv); len(drifts) != 0 {
		t.Errorf("the real server drifts: %+v", drifts)
	}
	if err := exec.Command("docker", "cp", evil, string(srv.ID)+":/evil").Run(); err == nil {
		t.Error("docker cp into a read-only server succeeded")
	}
}

// TestLoadSendsOnlyNewLayers loads an image, then a version of it with one more layer:
// the second load leaves out the layers the engine holds, and the image is complete. A
// driver told wrongly that the engine holds an image's layers (a fault forced by hand:
// they were removed behind its back) falls back to sending them all.
func TestLoadSendsOnlyNewLayers(t *testing.T) {
	d := newTestDriver(t)
	ctx := t.Context()
	hello := drivertest.HelloImage(t)
	ensure := func(img v1.Image) string {
		t.Helper()
		h, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if err := d.EnsureImage(ctx, h.String(), func() (v1.Image, error) { return img, nil }); err != nil {
			t.Fatal(err)
		}
		tag, _ := imageTag(h.String())
		t.Cleanup(func() { d.cli.ImageRemove(context.Background(), tag, client.ImageRemoveOptions{}) })
		res, err := d.cli.ImageInspect(ctx, tag)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		if len(res.RootFS.Layers) != len(cf.RootFS.DiffIDs) {
			t.Fatalf("the engine has %d layers of %s, want %d", len(res.RootFS.Layers), tag, len(cf.RootFS.DiffIDs))
		}
		for i, id := range cf.RootFS.DiffIDs {
			if res.RootFS.Layers[i] != id.String() {
				t.Errorf("layer %d: engine has %s, want %s", i, res.RootFS.Layers[i], id)
			}
		}
		return tag
	}
	withFile := func(content string) v1.Image {
		t.Helper()
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "extra.txt", Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
		tw.Write([]byte(content))
		tw.Close()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(hello.Image, l)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}

	ensure(hello.Image)
	next := withFile("next " + t.Name() + time.Now().String())
	skip, err := d.presentLayers(next)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := hello.Image.Layers()
	if len(skip) != len(base) {
		t.Errorf("%d layers left out of the load of the next version, want the %d it shares", len(skip), len(base))
	}
	var sent bytes.Buffer
	if err := writeSaveTar(&sent, "t:t", next, skip); err != nil {
		t.Fatal(err)
	}
	var full bytes.Buffer
	writeSaveTar(&full, "t:t", next, nil)
	t.Logf("tarball of the next version: %d bytes, %d without the shared layers", full.Len(), sent.Len())
	if sent.Len() >= full.Len()/2 {
		t.Errorf("the slim tarball is %d bytes of %d", sent.Len(), full.Len())
	}
	ensure(next)

	stale := withFile("stale " + t.Name() + time.Now().String())
	cf, _ := stale.ConfigFile()
	var ids []string
	for _, h := range cf.RootFS.DiffIDs {
		ids = append(ids, h.String())
	}
	d.noteLayers(ids) // the fault: the engine does not hold the last layer
	ensure(stale)
}

// TestServersAreIsolated: a server reaches neither another project's servers nor the
// other servers of its own project directly (only front doors, on the host), while the
// host reaches them all. Today's default bridge let every server reach every other.
func TestServersAreIsolated(t *testing.T) {
	d := newTestDriver(t)
	ctx := t.Context()
	img := drivertest.HelloImage(t)
	if err := d.EnsureImage(ctx, img.Digest, func() (v1.Image, error) { return img.Image, nil }); err != nil {
		t.Fatal(err)
	}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	create := func(project string) (driver.Server, string) {
		t.Helper()
		srv, err := d.Create(ctx, driver.ServerSpec{Project: "iso" + project + run, Service: "iso", Image: img.Digest, Port: img.Port, Resources: driver.DefaultResources})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Destroy(context.Background(), srv.ID) })
		res, err := d.cli.ContainerInspect(ctx, string(srv.ID), client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range res.Container.NetworkSettings.Networks {
			return srv, net.JoinHostPort(n.IPAddress.String(), strconv.Itoa(img.Port))
		}
		t.Fatal("the server has no network")
		return srv, ""
	}
	t.Cleanup(func() {
		for _, p := range []string{"a", "b"} {
			d.cli.NetworkRemove(context.Background(), networkName("iso"+p+run), client.NetworkRemoveOptions{})
		}
	})
	_, a1 := create("a")
	_, a2 := create("a")
	_, b := create("b")

	// A prober: a static program that dials each address and prints what happened.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module probe\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(`package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	for _, a := range os.Args[1:] {
		c, err := net.DialTimeout("tcp", a, 2*time.Second)
		if err == nil {
			c.Close()
			fmt.Println(a, "reached")
		} else {
			fmt.Println(a, "unreachable")
		}
	}
}
`), 0o644)
	build := exec.Command("go", "build", "-o", "probe", ".")
	build.Dir, build.Env = dir, append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the prober: %v\n%s", err, out)
	}
	bin, _ := os.ReadFile(filepath.Join(dir, "probe"))
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "probe", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg})
	tw.Write(bin)
	tw.Close()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	probeImg, _ := mutate.AppendLayers(img.Image, l)
	h, _ := probeImg.Digest()
	if err := d.EnsureImage(ctx, h.String(), func() (v1.Image, error) { return probeImg, nil }); err != nil {
		t.Fatal(err)
	}
	tag, _ := imageTag(h.String())
	t.Cleanup(func() { d.cli.ImageRemove(context.Background(), tag, client.ImageRemoveOptions{Force: true}) })

	out, err := exec.Command("docker", "run", "--rm", "--network", networkName("isoa"+run), "--entrypoint", "/probe", tag, a2, b).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run the prober: %v\n%s", err, out)
	}
	t.Logf("from a server's network:\n%s", out)
	for _, addr := range []string{a2, b} {
		if !strings.Contains(string(out), addr+" unreachable") {
			t.Errorf("a server of project a reached %s directly:\n%s", addr, out)
		}
	}
	for _, addr := range []string{a1, a2, b} { // the host reaches them: they are up
		if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err != nil {
			t.Errorf("the host cannot reach %s: %v", addr, err)
		} else {
			c.Close()
		}
	}
}

// TestNetworkLivesWithItsServers: the project's network goes with its last server, and
// the next server of the project makes it again.
func TestNetworkLivesWithItsServers(t *testing.T) {
	d := newTestDriver(t)
	ctx := t.Context()
	img := drivertest.HelloImage(t)
	if err := d.EnsureImage(ctx, img.Digest, func() (v1.Image, error) { return img.Image, nil }); err != nil {
		t.Fatal(err)
	}
	project := "net" + strconv.FormatInt(time.Now().UnixNano(), 36)
	spec := driver.ServerSpec{Project: project, Service: "net", Image: img.Digest, Port: img.Port, Resources: driver.DefaultResources}
	exists := func() bool {
		id, err := d.findNetwork(ctx, networkName(project))
		if err != nil {
			t.Fatal(err)
		}
		return id != ""
	}
	for round := range 2 {
		a, err := d.Create(ctx, spec)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		b, err := d.Create(ctx, spec)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := d.Destroy(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		if !exists() {
			t.Fatalf("round %d: the network went while a server still uses it", round)
		}
		if err := d.Destroy(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		if exists() {
			t.Fatalf("round %d: the network outlived the project's last server", round)
		}
	}
}

// TestPingSweepsSecretFiles: the secret files of containers that are gone (removed
// behind kiln's back) are removed when the driver starts; a live server's stay.
func TestPingSweepsSecretFiles(t *testing.T) {
	d := newTestDriver(t)
	d.opts.SecretsDir = t.TempDir()
	ctx := t.Context()
	img := drivertest.HelloImage(t)
	if err := d.EnsureImage(ctx, img.Digest, func() (v1.Image, error) { return img.Image, nil }); err != nil {
		t.Fatal(err)
	}
	srv, err := d.Create(ctx, driver.ServerSpec{Service: "sweep", Image: img.Digest, Port: img.Port, Resources: driver.DefaultResources,
		Files: map[string][]byte{"/run/secrets/x": []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Destroy(context.Background(), srv.ID) })
	stale := filepath.Join(d.opts.SecretsDir, "kiln-gone-12345678-abcdef")
	os.MkdirAll(stale, 0o700)
	os.WriteFile(filepath.Join(stale, "1"), []byte("old secret"), 0o400)
	if err := d.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the secret files of a container that is gone are still there")
	}
	if _, err := os.Stat(filepath.Join(d.opts.SecretsDir, srv.Name)); err != nil {
		t.Errorf("the live server's secret files went: %v", err)
	}
}

// A secret file's mount point and its parents are the engine's, not drift; another
// file beside it is.
// TestInitMountIsNotDrift: the mount point the engine makes for its init (init = true)
// is no drift, through a merged /usr too; a file beside it is.
func TestInitMountIsNotDrift(t *testing.T) {
	for p, want := range map[string]bool{
		"/sbin": true, "/sbin/docker-init": true, "/usr": true, "/usr/sbin": true, "/usr/sbin/docker-init": true,
		"/usr/sbin/other": false, "/sbin/other": false, "/usr/bin/python3": false, "/etc/passwd": false,
	} {
		if got := initMount(driver.ServerSpec{Init: true}, p); got != want {
			t.Errorf("initMount(%q) = %v, want %v", p, got, want)
		}
		if initMount(driver.ServerSpec{}, p) {
			t.Errorf("initMount(%q) without init = true", p)
		}
	}
}

func TestSecretMountIsNotDrift(t *testing.T) {
	spec := driver.ServerSpec{Digests: map[string]string{"file:/run/secrets/greeting": "d", "env:TOKEN": "e"}}
	for p, want := range map[string]bool{
		"/run": true, "/run/secrets": true, "/run/secrets/greeting": true,
		"/run/secrets/other": false, "/run/secrets/greeting/x": false, "/etc/passwd": false, "/TOKEN": false,
	} {
		if got := secretMount(spec, p); got != want {
			t.Errorf("secretMount(%q) = %v, want %v", p, got, want)
		}
	}
}
