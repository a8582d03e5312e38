package drivertest

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Image is an image for the suite to run. Its server must listen on $PORT (default
// Port), answer GET /healthz with 200, print "listening" once it does, exit promptly
// on SIGTERM, and exit with an error if $PORT is not a port. HelloImage is one.
type Image struct {
	Image  v1.Image
	Digest string // manifest digest, "sha256:..."
	Port   int
}

var hello struct {
	sync.Mutex
	img *Image
}

// HelloImage builds, once per test binary, an image of examples/hello: its static
// binary alone in a scratch image, run as /hello. It needs the go command.
func HelloImage(t testing.TB) Image {
	t.Helper()
	hello.Lock()
	defer hello.Unlock()
	if hello.img == nil {
		img, err := buildHello()
		if err != nil {
			t.Fatalf("building the examples/hello image: %v", err)
		}
		hello.img = &img
	}
	return *hello.img
}

func buildHello() (Image, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return Image{}, fmt.Errorf("cannot locate the drivertest sources")
	}
	src := filepath.Join(filepath.Dir(file), "..", "..", "..", "examples", "hello")
	tmp, err := os.MkdirTemp("", "kiln-drivertest-")
	if err != nil {
		return Image{}, err
	}
	defer os.RemoveAll(tmp)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin := filepath.Join(tmp, "hello")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return Image{}, fmt.Errorf("go build in %s: %w\n%s", src, err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		return Image{}, err
	}

	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	if err := tw.WriteHeader(&tar.Header{Name: "hello", Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
		return Image{}, err
	}
	if _, err := tw.Write(b); err != nil {
		return Image{}, err
	}
	if err := tw.Close(); err != nil {
		return Image{}, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar.Bytes())), nil
	}, tarball.WithCompressedCaching)
	if err != nil {
		return Image{}, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return Image{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Image{}, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{"/hello"}
	cf.Config.WorkingDir = "/"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return Image{}, err
	}
	h, err := img.Digest()
	if err != nil {
		return Image{}, err
	}
	return Image{Image: img, Digest: h.String(), Port: 8080}, nil
}

// variant is img with a label that gives it a digest no runtime has seen.
func variant(img Image, label string) (Image, error) {
	cf, err := img.Image.ConfigFile()
	if err != nil {
		return Image{}, err
	}
	cf = cf.DeepCopy()
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	cf.Config.Labels["dev.kiln.drivertest"] = label
	v, err := mutate.ConfigFile(img.Image, cf)
	if err != nil {
		return Image{}, err
	}
	h, err := v.Digest()
	if err != nil {
		return Image{}, err
	}
	return Image{Image: v, Digest: h.String(), Port: img.Port}, nil
}
