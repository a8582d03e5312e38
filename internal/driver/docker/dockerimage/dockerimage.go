package dockerimage

import (
	"context"
	"errors"
	"fmt"
	"io"

	cerrdefs "github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/client"
)

// Errors that Inspect and Save wrap, for errors.Is.
var (
	// ErrNotFound means the engine has no image by that reference or ID.
	ErrNotFound = errors.New("the Docker engine has no such image")
	// ErrUnreachable means the engine did not answer.
	ErrUnreachable = errors.New("cannot reach the Docker engine")
)

// Image is what the engine says of one image.
type Image struct {
	// ID is the image ID: the digest of its configuration, which names its content
	// whatever tags point at it.
	ID v1.Hash
	// RepoDigests are the NAME@sha256:... manifests it was pulled as, if any.
	RepoDigests []string
	RepoTags    []string
	// OS, Architecture and Variant are its platform.
	OS, Architecture, Variant string
}

// Client talks to the engine found as the docker CLI finds it: DOCKER_HOST, else the
// local socket. It is safe for concurrent use.
type Client struct{ cli *client.Client }

// New returns a client. It does not contact the engine; the API version is negotiated on
// first use.
func New() (*Client, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("configuring the Docker client: %w", err)
	}
	return &Client{cli: cli}, nil
}

// Close releases the client's connections.
func (c *Client) Close() error { return c.cli.Close() }

// Ping checks that the engine answers, negotiating the API version; the error wraps
// ErrUnreachable and says what to do.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
	return c.check(err)
}

func (c *Client) check(err error) error {
	if err == nil {
		return nil
	}
	if client.IsErrConnectionFailed(err) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w at %s (is it running? start it with `sudo systemctl start docker`, or point DOCKER_HOST at it): %v", ErrUnreachable, c.cli.DaemonHost(), err)
	}
	return err
}

// Inspect resolves ref (a reference such as python:3.12-slim, or an image ID
// sha256:...) to the image it names now. A missing image is ErrNotFound.
func (c *Client) Inspect(ctx context.Context, ref string) (Image, error) {
	if err := c.Ping(ctx); err != nil {
		return Image{}, err
	}
	res, err := c.cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return Image{}, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	if err != nil {
		return Image{}, c.check(err)
	}
	id, err := v1.NewHash(res.ID)
	if err != nil {
		return Image{}, fmt.Errorf("the engine gave %s the ID %q: %w", ref, res.ID, err)
	}
	return Image{ID: id, RepoDigests: res.RepoDigests, RepoTags: res.RepoTags,
		OS: res.Os, Architecture: res.Architecture, Variant: res.Variant}, nil
}

// Save writes the image id to w as `docker save` does (a tar holding manifest.json, the
// configuration and the layers).
func (c *Client) Save(ctx context.Context, id v1.Hash, w io.Writer) error {
	rc, err := c.cli.ImageSave(ctx, []string{id.String()})
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	if err != nil {
		return c.check(err)
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("exporting %s from the Docker engine: %w", id, err)
	}
	return nil
}
