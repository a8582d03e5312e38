package docker

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/kiln-build/kiln/internal/driver"
)

// Watch reports the engine's events about kiln's containers: an exec as EventExec
// (followed, for now, by its legacy EventChange), a rename, pause, unpause or update
// as EventChange. Engine actions that are not a start, a death, a removal or an
// out-of-band change (create, kill, stop...) are not reported. The channel is closed when ctx ends or the event stream breaks.
func (d *Driver) Watch(ctx context.Context) (<-chan driver.Event, error) {
	if err := d.Ping(ctx); err != nil {
		return nil, fmt.Errorf("watching containers: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	stream := d.cli.Events(ctx, client.EventsListOptions{
		Filters: make(client.Filters).Add("type", string(events.ContainerEventType)).Add("label", LabelManaged+"=true"),
	})
	out := make(chan driver.Event)
	go func() {
		defer close(out)
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case <-stream.Err: // the error is the stream's end; callers resync with List
				return
			case m := <-stream.Messages:
				ev, ok := toEvent(m)
				if !ok {
					continue
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// toEvent maps an engine event to a kiln event, if it is one kiln reports.
func toEvent(m events.Message) (driver.Event, bool) {
	// Engines before API 1.44 append arguments to some actions ("exec_start: sh -c ..").
	action, _, _ := strings.Cut(string(m.Action), ":")
	ev := driver.Event{
		ServerID: driver.ServerID(m.Actor.ID),
		Service:  m.Actor.Attributes[LabelService],
		Project:  m.Actor.Attributes[LabelProject],
		Time:     time.Unix(0, m.TimeNano),
	}
	if m.TimeNano == 0 {
		ev.Time = time.Unix(m.Time, 0)
	}
	switch events.Action(action) {
	case events.ActionStart:
		ev.Type = driver.EventStart
	case events.ActionDie:
		ev.Type = driver.EventDie
		if code := m.Actor.Attributes["exitCode"]; code != "" {
			ev.Detail = "exit code " + code
		}
	case events.ActionDestroy:
		ev.Type = driver.EventDestroy
	case events.ActionExecCreate, events.ActionExecStart:
		ev.Type = driver.EventExec
		ev.Detail = string(m.Action)
	case events.ActionRename, events.ActionPause, events.ActionUnPause, events.ActionUpdate:
		ev.Type = driver.EventChange
		ev.Detail = string(m.Action)
	default:
		return driver.Event{}, false
	}
	return ev, true
}

// Logs returns what the container printed, stdout and stderr interleaved in one
// stream, and with follow what it prints next until ctx ends or the reader is closed.
func (d *Driver) Logs(ctx context.Context, id driver.ServerID, follow bool) (io.ReadCloser, error) {
	rc, err := d.cli.ContainerLogs(ctx, string(id), client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: follow})
	if isNotFound(err) {
		return nil, fmt.Errorf("reading the logs of %s: %w", id, driver.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the logs of %s: %w", id, d.check(err))
	}
	// Without a TTY the engine multiplexes the two streams into frames.
	pr, pw := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(pw, pw, rc)
		rc.Close()
		pw.CloseWithError(err)
	}()
	// Ending ctx ends the reader too, even if nobody reads what the copy has pending.
	stop := context.AfterFunc(ctx, func() { pr.CloseWithError(ctx.Err()) })
	return &logReader{PipeReader: pr, src: rc, stop: stop}, nil
}

// logReader closes the engine's stream with the pipe, which ends the copy.
type logReader struct {
	*io.PipeReader
	src  io.Closer
	stop func() bool
}

func (r *logReader) Close() error {
	r.stop()
	r.src.Close()
	return r.PipeReader.Close()
}

// Wait blocks until the container is not running and returns how its process ended.
func (d *Driver) Wait(ctx context.Context, id driver.ServerID) (driver.Exit, error) {
	res := d.cli.ContainerWait(ctx, string(id), client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case <-ctx.Done():
		return driver.Exit{}, ctx.Err()
	case err := <-res.Error:
		if isNotFound(err) {
			return driver.Exit{}, fmt.Errorf("waiting for %s: %w", id, driver.ErrNotFound)
		}
		return driver.Exit{}, fmt.Errorf("waiting for %s: %w", id, d.check(err))
	case r := <-res.Result:
		x := driver.Exit{Code: int(r.StatusCode)}
		if r.Error != nil {
			x.Error = r.Error.Message
		}
		if in, err := d.cli.ContainerInspect(ctx, string(id), client.ContainerInspectOptions{}); err == nil && in.Container.State != nil {
			x.OOMKilled = in.Container.State.OOMKilled
		}
		return x, nil
	}
}

var _ driver.Waiter = (*Driver)(nil)
