package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/kiln-build/kiln/internal/driver"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// Create creates and starts a container for spec from the image EnsureImage loaded,
// and returns it as inspected right after the start. A process that has already
// exited by then is not an error (the server is returned with StateExited): telling a
// crashing server from a healthy one is the caller's job, as for any server. On error
// the container, if it was created, is removed.
func (d *Driver) Create(ctx context.Context, spec driver.ServerSpec) (driver.Server, error) {
	for attempt := 1; ; attempt++ {
		srv, err := d.create(ctx, spec)
		if errors.Is(err, errNetworkGone) && attempt < 3 {
			// Removed with the project's last server while this one was on its way:
			// made again.
			d.forgetNetwork(spec.Project)
			continue
		}
		return srv, err
	}
}

// errNetworkGone: the project's network was removed after the driver looked it up.
var errNetworkGone = errors.New("the project's network is gone")

func networkGone(err error) bool {
	return isNotFound(err) && strings.Contains(err.Error(), "network")
}

func (d *Driver) create(ctx context.Context, spec driver.ServerSpec) (driver.Server, error) {
	if err := validate(spec); err != nil {
		return driver.Server{}, fmt.Errorf("creating a server of %s: %w", spec.Service, err)
	}
	tag, err := imageTag(spec.Image)
	if err != nil {
		return driver.Server{}, fmt.Errorf("creating a server of %s: %w", spec.Service, err)
	}
	img, err := d.cli.ImageInspect(ctx, tag)
	if err != nil {
		if isNotFound(err) {
			return driver.Server{}, fmt.Errorf("creating a server of %s: image %s: %w", spec.Service, spec.Image, driver.ErrImageNotFound)
		}
		return driver.Server{}, fmt.Errorf("creating a server of %s: inspecting image %s: %w", spec.Service, spec.Image, d.check(err))
	}
	imageUser := ""
	if img.Config != nil {
		imageUser = img.Config.User
	}
	network, err := d.ensureNetwork(ctx, spec.Project)
	if err != nil {
		return driver.Server{}, fmt.Errorf("creating a server of %s: %w", spec.Service, err)
	}
	opts, err := d.createOptions(spec, tag, user(spec, imageUser), network)
	if err != nil {
		return driver.Server{}, fmt.Errorf("creating a server of %s: %w", spec.Service, err)
	}
	mounts, err := d.writeSecretFiles(opts.Name, opts.Config.User, spec.Files)
	if err != nil {
		return driver.Server{}, fmt.Errorf("creating a server of %s: %w", spec.Service, err)
	}
	opts.HostConfig.Mounts = mounts
	created, err := d.cli.ContainerCreate(ctx, opts)
	if err != nil {
		d.removeSecretFiles(opts.Name)
		if networkGone(err) {
			return driver.Server{}, fmt.Errorf("creating a server of %s: %w: %w", spec.Service, errNetworkGone, err)
		}
		if isNotFound(err) { // the image was removed since we looked
			return driver.Server{}, fmt.Errorf("creating a server of %s: image %s: %w", spec.Service, spec.Image, driver.ErrImageNotFound)
		}
		if ctx.Err() != nil {
			// Cut off mid-request: the engine may have created it anyway. The name is
			// random, so whatever has it is ours.
			cctx, cancel := cleanupContext(ctx)
			defer cancel()
			d.cli.ContainerRemove(cctx, opts.Name, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		}
		return driver.Server{}, fmt.Errorf("creating a server of %s: %w", spec.Service, d.check(err))
	}
	srv, err := d.start(ctx, created.ID, spec)
	if networkGone(err) {
		err = fmt.Errorf("%w: %w", errNetworkGone, err)
	}
	if err != nil {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		if _, rerr := d.cli.ContainerRemove(cctx, created.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); rerr != nil && !isNotFound(rerr) {
			err = errors.Join(err, fmt.Errorf("removing the container %s: %w", opts.Name, rerr))
		} else {
			d.removeSecretFiles(opts.Name)
		}
		return driver.Server{}, fmt.Errorf("creating a server of %s: %w", spec.Service, err)
	}
	return srv, nil
}

// start starts a created container and checks that the engine kept kiln's limits.
func (d *Driver) start(ctx context.Context, id string, spec driver.ServerSpec) (driver.Server, error) {
	if _, err := d.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return driver.Server{}, fmt.Errorf("starting: %w", d.check(err))
	}
	res, err := d.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return driver.Server{}, fmt.Errorf("inspecting: %w", d.check(err))
	}
	c := res.Container
	if c.HostConfig == nil || c.Config == nil || c.State == nil {
		return driver.Server{}, errors.New("inspecting: the engine returned an incomplete container")
	}
	// An engine that cannot enforce a limit drops it with a warning; kiln's servers are
	// always limited, so that is an error rather than a warning nobody reads.
	h, r := c.HostConfig, spec.Resources
	if h.Memory != r.MemoryBytes || h.PidsLimit == nil || *h.PidsLimit != r.PIDs || h.NanoCPUs != nanoCPUs(r.CPUs) || !h.ReadonlyRootfs {
		return driver.Server{}, errors.New("the Docker engine did not apply the memory, PIDs or CPU limit or the read-only root (does its kernel support them? see the warnings of `docker info`)")
	}
	srv := driver.Server{
		ID:       driver.ServerID(c.ID),
		Name:     strings.TrimPrefix(c.Name, "/"),
		Service:  spec.Service,
		Revision: spec.Revision,
		SpecHash: spec.Hash(),
		Image:    spec.Image,
		State:    state(c.State.Status),
		Spec:     spec,
	}
	if t, err := time.Parse(time.RFC3339Nano, c.Created); err == nil {
		srv.Created = t.Truncate(time.Second).UTC() // as List reports it
	}
	if srv.State == driver.StateRunning && c.NetworkSettings != nil {
		p, _ := network.PortFrom(uint16(spec.Port), network.TCP)
		for _, b := range c.NetworkSettings.Ports[p] {
			if b.HostPort != "" && b.HostPort != "0" {
				srv.Address = address(b.HostIP, b.HostPort)
				break
			}
		}
		if srv.Address == "" {
			return driver.Server{}, fmt.Errorf("the engine published no host port for %d/tcp", spec.Port)
		}
	}
	return srv, nil
}

// createOptions is the container for spec, run as runAs on network: kiln's security
// defaults are not options. Its labels hold no env or file value (see ServerSpec.Env).
func (d *Driver) createOptions(spec driver.ServerSpec, tag, runAs, netName string) (client.ContainerCreateOptions, error) {
	hash := spec.Hash()
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return client.ContainerCreateOptions{}, err
	}
	suffix := make([]byte, 3)
	rand.Read(suffix)
	port, _ := network.PortFrom(uint16(spec.Port), network.TCP)

	env := make([]string, 0, len(spec.Env))
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	var tmpfs map[string]string
	if len(spec.Writable) > 0 {
		tmpfs = make(map[string]string, len(spec.Writable))
		for _, p := range spec.Writable {
			tmpfs[p] = fmt.Sprintf("rw,nosuid,nodev,size=%d", d.opts.TmpfsSize)
		}
	}
	pids := spec.Resources.PIDs

	return client.ContainerCreateOptions{
		Name: fmt.Sprintf("kiln-%s-%s-%s", spec.Service, hash[:8], hex.EncodeToString(suffix)),
		Config: &container.Config{
			Image:        tag,
			User:         runAs,
			StopSignal:   spec.StopSignal,
			StopTimeout:  stopTimeout(spec),
			Entrypoint:   spec.Command,
			Cmd:          spec.Args,
			Env:          env,
			ExposedPorts: network.PortSet{port: {}},
			Labels: map[string]string{
				LabelManaged:  "true",
				LabelProject:  spec.Project,
				LabelService:  spec.Service,
				LabelRevision: strconv.FormatInt(spec.Revision, 10),
				LabelSpecHash: hash,
				LabelImage:    spec.Image,
				LabelPort:     strconv.Itoa(spec.Port),
				LabelSpec:     string(specJSON),
			},
		},
		HostConfig: &container.HostConfig{
			NetworkMode: container.NetworkMode(netName),
			Init:        initFlag(spec.Init),
			// Published on loopback only, on a port the engine picks.
			PortBindings:   network.PortMap{port: {{HostIP: loopback, HostPort: ""}}},
			RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyDisabled}, // kiln replaces failed servers
			ReadonlyRootfs: true,
			Tmpfs:          tmpfs,
			CapDrop:        []string{"ALL"},
			SecurityOpt:    []string{"no-new-privileges"},
			IpcMode:        container.IPCModePrivate,
			CgroupnsMode:   container.CgroupnsModePrivate, // cgroup v1 engines default to the host's
			Resources: container.Resources{
				Memory:     spec.Resources.MemoryBytes,
				MemorySwap: spec.Resources.MemoryBytes, // no swap on top
				PidsLimit:  &pids,
				NanoCPUs:   nanoCPUs(spec.Resources.CPUs),
			},
		},
	}, nil
}

// validate rejects specs the engine would run without the limits kiln promises.
func validate(spec driver.ServerSpec) error {
	switch {
	case spec.Service == "":
		return errors.New("the spec has no service")
	case spec.Port < 1 || spec.Port > 65535:
		return fmt.Errorf("port %d is not a TCP port", spec.Port)
	case spec.Resources.MemoryBytes <= 0:
		return errors.New("the spec sets no memory limit")
	case spec.Resources.PIDs <= 0:
		return errors.New("the spec sets no PIDs limit")
	case spec.Resources.CPUs < 0 || math.IsNaN(spec.Resources.CPUs) || math.IsInf(spec.Resources.CPUs, 0):
		return fmt.Errorf("%v is not a number of CPUs", spec.Resources.CPUs)
	}
	return nil
}

func nanoCPUs(cpus float64) int64 { return int64(math.Round(cpus * 1e9)) }

// stopTimeout is the spec's stop timeout in whole seconds (rounded up), nil for the
// driver's default.
func stopTimeout(spec driver.ServerSpec) *int {
	if spec.StopTimeout <= 0 {
		return nil
	}
	n := int(math.Ceil(spec.StopTimeout.Seconds()))
	return &n
}

func initFlag(on bool) *bool {
	if !on {
		return nil
	}
	return &on
}

// Destroy stops the container (SIGTERM, then SIGKILL after Options.StopTimeout) and
// removes it with its anonymous volumes. It refuses containers kiln did not create.
// A stop that Stop began is waited for, not sent again.
func (d *Driver) Destroy(ctx context.Context, id driver.ServerID) error {
	c, err := d.managed(ctx, id, "destroying")
	if err != nil || c == nil {
		return err
	}
	if err := d.waitStop(ctx, id); err != nil {
		return fmt.Errorf("destroying %s: %w", id, err)
	}
	timeout := d.stopTimeoutOf(c)
	if _, err := d.cli.ContainerStop(ctx, string(id), client.ContainerStopOptions{Timeout: &timeout}); err != nil && !isNotFound(err) {
		return fmt.Errorf("destroying %s: stopping: %w", id, d.check(err))
	}
	_, err = d.cli.ContainerRemove(ctx, string(id), client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	switch {
	case err == nil || isNotFound(err):
		d.removeSecretFiles(c.Name)
		d.removeEmptyNetworks(ctx, *c)
		return nil
	case cerrdefs.IsConflict(err): // another removal is in progress: wait for it
		return d.waitGone(ctx, id)
	default:
		return fmt.Errorf("destroying %s: removing: %w", id, d.check(err))
	}
}

// Stop asks the container to stop as Destroy does and returns once its process has
// ended: at the engine's die event, while the engine still releases the container's
// network and unmounts its filesystem (about a tenth of a second on fuse-overlayfs),
// or when the engine's stop returns, whichever comes first. The engine's stop goes on
// in the background; Destroy waits for it. Until it is done the engine may still list
// the container as running. Nil if the container is gone or not running.
func (d *Driver) Stop(ctx context.Context, id driver.ServerID) error {
	c, err := d.managed(ctx, id, "stopping")
	if err != nil || c == nil {
		return err
	}
	if c.State == nil || !c.State.Running {
		return nil
	}
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Replayed from the container's start on, so that a die the engine reports before
	// this subscription is in place is not missed (the container runs once: no restart
	// policy).
	died := d.cli.Events(ectx, client.EventsListOptions{
		Since: c.State.StartedAt,
		Filters: make(client.Filters).Add("type", "container").Add("container", string(id)).
			Add("event", "die"),
	})
	st := d.startStop(ctx, id, d.stopTimeoutOf(c))
	for {
		select {
		case <-died.Messages:
			return nil
		case <-died.Err: // no events: the stop itself says when the process is gone
			died.Messages, died.Err = nil, nil
		case <-st.done:
			if st.err != nil && !isNotFound(st.err) {
				return fmt.Errorf("stopping %s: %w", id, d.check(st.err))
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("stopping %s: %w", id, ctx.Err())
		}
	}
}

// startStop sends the engine's stop for container id in the background, once: a stop
// in flight is joined. Close cancels stops in flight (the engine carries them on).
func (d *Driver) startStop(ctx context.Context, id driver.ServerID, timeout int) *stopping {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.stopping[id]
	if st == nil {
		st = &stopping{done: make(chan struct{})}
		d.stopping[id] = st
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(timeout)*time.Second+time.Minute)
		stopOnClose := context.AfterFunc(d.closed, cancel)
		d.bg.Add(1)
		go func() {
			defer d.bg.Done()
			defer cancel()
			defer stopOnClose()
			_, err := d.cli.ContainerStop(bctx, string(id), client.ContainerStopOptions{Timeout: &timeout})
			d.mu.Lock()
			st.err = err
			delete(d.stopping, id)
			d.mu.Unlock()
			close(st.done)
		}()
	}
	return st
}

// stopping is the engine's stop of one container, sent by Stop.
type stopping struct {
	done chan struct{} // closed when the engine's stop returned
	err  error         // what it returned, once done is closed
}

// waitStop waits for a stop Stop began on container id, if any.
func (d *Driver) waitStop(ctx context.Context, id driver.ServerID) error {
	d.mu.Lock()
	st := d.stopping[id]
	d.mu.Unlock()
	if st == nil {
		return nil
	}
	select {
	case <-st.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for its stop: %w", ctx.Err())
	}
}

// managed inspects container id for doing what, refusing one kiln did not create;
// nil and no error when it is gone.
func (d *Driver) managed(ctx context.Context, id driver.ServerID, doing string) (*container.InspectResponse, error) {
	res, err := d.cli.ContainerInspect(ctx, string(id), client.ContainerInspectOptions{})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", doing, id, d.check(err))
	}
	if res.Container.Config == nil || res.Container.Config.Labels[LabelManaged] != "true" {
		return nil, fmt.Errorf("%s %s: %w", doing, id, errNotManaged)
	}
	return &res.Container, nil
}

// stopTimeoutOf is the container's own stop timeout in seconds, as it was created
// with, else the driver's.
func (d *Driver) stopTimeoutOf(c *container.InspectResponse) int {
	if c.Config != nil && c.Config.StopTimeout != nil {
		return *c.Config.StopTimeout
	}
	return int(math.Ceil(d.opts.StopTimeout.Seconds()))
}

// waitGone polls until the container no longer exists.
func (d *Driver) waitGone(ctx context.Context, id driver.ServerID) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := d.cli.ContainerInspect(ctx, string(id), client.ContainerInspectOptions{})
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("destroying %s: %w", id, d.check(err))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("destroying %s: waiting for its removal: %w", id, ctx.Err())
		case <-tick.C:
		}
	}
}

// List returns kiln's containers matching sel, in every state, oldest first.
func (d *Driver) List(ctx context.Context, sel driver.Selector) ([]driver.Server, error) {
	f := make(client.Filters).Add("label", LabelManaged+"=true")
	if sel.Service != "" {
		f.Add("label", LabelService+"="+sel.Service)
	}
	if sel.Project != "" {
		f.Add("label", LabelProject+"="+sel.Project)
	}
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", d.check(err))
	}
	servers := make([]driver.Server, 0, len(res.Items))
	for _, c := range res.Items {
		srv := fromSummary(c)
		if sel.Matches(srv) {
			servers = append(servers, srv)
		}
	}
	slices.SortFunc(servers, func(a, b driver.Server) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(string(a.ID), string(b.ID))
	})
	return servers, nil
}

// fromSummary reads a server back from its container's labels and state.
func fromSummary(c container.Summary) driver.Server {
	l := c.Labels
	srv := driver.Server{
		ID:       driver.ServerID(c.ID),
		Project:  l[LabelProject],
		Service:  l[LabelService],
		SpecHash: l[LabelSpecHash],
		Image:    l[LabelImage],
		State:    state(c.State),
		Created:  time.Unix(c.Created, 0).UTC(),
	}
	if len(c.Names) > 0 {
		srv.Name = strings.TrimPrefix(c.Names[0], "/")
	}
	srv.Revision, _ = strconv.ParseInt(l[LabelRevision], 10, 64)
	_ = json.Unmarshal([]byte(l[LabelSpec]), &srv.Spec) // altered out of band: left zero
	if srv.State == driver.StateRunning {
		port, _ := strconv.ParseUint(l[LabelPort], 10, 16)
		for _, p := range c.Ports {
			if p.PrivatePort == uint16(port) && p.Type == "tcp" && p.PublicPort != 0 {
				srv.Address = address(p.IP, strconv.Itoa(int(p.PublicPort)))
				break
			}
		}
	}
	return srv
}

// address is where a published port is reached; an unspecified host IP (the engine
// listening on every address) is reached on loopback.
func address(ip netip.Addr, port string) string {
	if !ip.IsValid() || ip.IsUnspecified() {
		ip = loopback
	}
	return net.JoinHostPort(ip.String(), port)
}

func state(s container.ContainerState) driver.State {
	switch s {
	case container.StateCreated:
		return driver.StatePending
	case container.StateRunning:
		return driver.StateRunning
	case container.StateExited, container.StateDead:
		return driver.StateExited
	default:
		return driver.StateOther
	}
}
