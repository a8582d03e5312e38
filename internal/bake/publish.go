package bake

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/client"
)

// Push uploads img to repo/NAME by digest (never by tag: what was baked is what is
// deployed) and returns the pushed reference.
func Push(ctx context.Context, img v1.Image, repo, imageName string) (name.Digest, error) {
	h, err := img.Digest()
	if err != nil {
		return name.Digest{}, err
	}
	ref, err := name.NewDigest(strings.TrimSuffix(repo, "/") + "/" + imageName + "@" + h.String())
	if err != nil {
		return name.Digest{}, fmt.Errorf("%q is not a repository to push to (want e.g. localhost:5000/team): %w", repo, err)
	}
	err = remote.Write(ref, img,
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithRetryBackoff(remote.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Steps: 3}),
	)
	if err != nil {
		return name.Digest{}, RegistryError("pushing "+imageName+" to "+ref.Context().Name(), ref.Context().RegistryStr(), err)
	}
	return ref, nil
}

// DockerTag is the tag --load gives an image in the Docker engine.
func DockerTag(imageName string) string { return "kiln/" + imageName + ":latest" }

// Load makes img available to the Docker engine (found as the docker CLI finds it:
// DOCKER_HOST, else the local socket) under tag.
func Load(ctx context.Context, img v1.Image, tag string) error {
	t, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return fmt.Errorf("configuring the Docker client: %w", err)
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("cannot reach the Docker engine at %s (is it running? start it with `sudo systemctl start docker`, or point DOCKER_HOST at it): %w", cli.DaemonHost(), err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarball.Write(t, img, pw)) }()
	resp, err := cli.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
	if err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("loading %s into Docker: %w", tag, err)
	}
	defer resp.Close()
	// The engine answers with a JSON message stream; a failure arrives as a message.
	sc := bufio.NewScanner(resp)
	for sc.Scan() {
		var msg struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &msg) == nil && msg.Error != "" {
			return fmt.Errorf("loading %s into Docker: %s", tag, msg.Error)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("loading %s into Docker: %w", tag, err)
	}
	return nil
}
