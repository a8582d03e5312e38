package bake

import (
	"archive/tar"
	"bytes"
	"io"
	"path/filepath"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/kiln-build/kiln/internal/spec"
)

// tarLayer is a layer of the entries, in order (Size and Typeflag from content and link).
func tarLayer(t *testing.T, entries []*tar.Header, content map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(content[h.Name]))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, content[h.Name])
	}
	tw.Close()
	raw := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// copyBase writes an OCI layout of a two-layer image: a merged-/usr tree with links of
// both kinds, modes, a set-uid file, and a file the upper layer deletes.
func copyBase(t *testing.T, dir string) {
	t.Helper()
	dirH := func(name string, mode int64) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode}
	}
	reg := func(name string, mode int64) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode}
	}
	link := func(name, to string, typ byte) *tar.Header {
		return &tar.Header{Name: name, Typeflag: typ, Linkname: to, Mode: 0o777}
	}
	content := map[string]string{
		"usr/lib/x/a.so": "A", "usr/lib/x/skip.gz": "gz", "usr/lib/x/gone": "gone",
		"usr/lib/x/sub/c": "C", "usr/lib/x/suid": "S", "etc/secret": "s", "etc/ext": "E",
		"usr/lib/x/new": "N",
	}
	lower := tarLayer(t, []*tar.Header{
		dirH("usr/", 0o755), dirH("usr/lib/", 0o755), dirH("usr/lib/x/", 0o755),
		reg("usr/lib/x/a.so", 0o755), link("usr/lib/x/b.so", "usr/lib/x/a.so", tar.TypeLink),
		link("usr/lib/x/rel", "a.so", tar.TypeSymlink), reg("usr/lib/x/skip.gz", 0o644),
		reg("usr/lib/x/gone", 0o644), dirH("usr/lib/x/sub/", 0o700), reg("usr/lib/x/sub/c", 0o600),
		reg("usr/lib/x/suid", 0o4755), link("lib", "usr/lib", tar.TypeSymlink),
		dirH("etc/", 0o755), reg("etc/secret", 0o600), reg("etc/ext", 0o644),
		link("usr/lib/x/ext-link", "etc/ext", tar.TypeLink),
	}, content)
	upper := tarLayer(t, []*tar.Header{
		reg("usr/lib/x/.wh.gone", 0o644), reg("usr/lib/x/new", 0o644),
	}, content)
	img, err := mutate.AppendLayers(scratch(), lower, upper)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
}

const copySpec = `
image "base" {
  from     = "./base"
  platform = "linux/amd64"
}

image "app" {
  from     = "scratch"
  platform = "linux/amd64"

  copy "/lib/x" {
    from    = image.base
    to      = "/opt/x"
    exclude = ["*.gz"]
    owner   = "1:2"
  }

  copy "/lib/x/rel" {
    from = image.base
    to   = "/bin/"
  }

  copy "/etc/secret" {
    from = image.base
    to   = "/etc/secret"
    mode = "0640"
  }
}
`

// TestCopyFromImage copies out of a two-layer image: the source path through the
// image's symlinks (/lib -> usr/lib), the deleted file gone, links of both kinds kept
// inside the copy, a hard link to a file outside it made a file, modes kept but
// set-uid, the spec's owner, its mode where it gives one.
func TestCopyFromImage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "p")
	copyBase(t, filepath.Join(dir, "base"))
	writeFile(t, filepath.Join(dir, "kiln.hcl"), copySpec)
	cold := mustBake(t, dir, testEpoch)
	app := cold.result("app")
	files := layerFiles(t, app)
	type want struct {
		typ      byte
		mode     int64
		uid, gid int
		link     string
	}
	wants := map[string]want{
		"opt/":           {tar.TypeDir, 0o755, 0, 0, ""},
		"opt/x/":         {tar.TypeDir, 0o755, 1, 2, ""},
		"opt/x/a.so":     {tar.TypeReg, 0o755, 1, 2, ""},
		"opt/x/b.so":     {tar.TypeLink, 0o755, 1, 2, "opt/x/a.so"},
		"opt/x/rel":      {tar.TypeSymlink, 0o777, 1, 2, "a.so"},
		"opt/x/sub/":     {tar.TypeDir, 0o700, 1, 2, ""},
		"opt/x/sub/c":    {tar.TypeReg, 0o600, 1, 2, ""},
		"opt/x/suid":     {tar.TypeReg, 0o755, 1, 2, ""},
		"opt/x/new":      {tar.TypeReg, 0o644, 1, 2, ""},
		"opt/x/ext-link": {tar.TypeReg, 0o644, 1, 2, ""},
		"bin/":           {tar.TypeDir, 0o755, 0, 0, ""},
		"bin/rel":        {tar.TypeReg, 0o755, 0, 0, ""},
		"etc/":           {tar.TypeDir, 0o755, 0, 0, ""},
		"etc/secret":     {tar.TypeReg, 0o640, 0, 0, ""},
	}
	for name, w := range wants {
		h := files[name]
		if h == nil {
			t.Errorf("no %s in the image (%v)", name, keys(files))
			continue
		}
		if h.Typeflag != w.typ || h.Mode != w.mode || h.Uid != w.uid || h.Gid != w.gid || h.Linkname != w.link {
			t.Errorf("%s: %q %o %d:%d %q, want %q %o %d:%d %q", name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.Linkname, w.typ, w.mode, w.uid, w.gid, w.link)
		}
	}
	if got := sortStrings(keys(files)); len(got) != len(wants) {
		t.Errorf("the image holds %v", got)
	}
	for name, content := range map[string]string{"opt/x/a.so": "A", "bin/rel": "A", "opt/x/ext-link": "E", "opt/x/sub/c": "C", "etc/secret": "s"} {
		if got := layerContent(t, app, name); got != content {
			t.Errorf("%s holds %q, want %q", name, got, content)
		}
	}

	warm := mustBake(t, dir, testEpoch)
	if r := warm.result("app"); !r.Cached || r.Digest != app.Digest {
		t.Errorf("warm: cached %v, %s, want %s", r.Cached, r.Digest, app.Digest)
	}
	other := filepath.Join(t.TempDir(), "q")
	copyBase(t, filepath.Join(other, "base"))
	writeFile(t, filepath.Join(other, "kiln.hcl"), copySpec)
	if got := mustBake(t, other, testEpoch).result("app").Digest; got != app.Digest {
		t.Errorf("another checkout: %s, want %s", got, app.Digest)
	}
}

// TestCopyFromImageMissing names the copy's block and the path the image lacks.
func TestCopyFromImageMissing(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"/usr/lib/x/gone", "there is no /usr/lib/x/gone in the image (/usr/lib/x/gone is missing)"},
		{"/etc/secret/x", "there is no /etc/secret/x in the image (/etc/secret is not a directory)"},
	} {
		dir := filepath.Join(t.TempDir(), "p")
		copyBase(t, filepath.Join(dir, "base"))
		writeFile(t, filepath.Join(dir, "kiln.hcl"), `image "base" {
  from     = "./base"
  platform = "linux/amd64"
}
image "app" {
  from = "scratch"
  copy "`+tc.path+`" {
    from = image.base
    to   = "/x"
  }
}
`)
		_, err := bake(t, dir, testEpoch, nil)
		wantStepError(t, err, 7, "image base: "+tc.want)
	}
}

// TestSelectAddsCopySources: baking one image bakes the images it copies from.
func TestSelectAddsCopySources(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "p")
	copyBase(t, filepath.Join(dir, "base"))
	writeFile(t, filepath.Join(dir, "kiln.hcl"), copySpec)
	cfg := loadSpec(t, dir)
	imgs, err := Select(cfg, []string{"app"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, img := range imgs {
		names = append(names, img.Name)
	}
	if !slices.Equal(names, []string{"base", "app"}) {
		t.Errorf("Select(app) = %v", names)
	}
}

func loadSpec(t *testing.T, dir string) *spec.Config {
	t.Helper()
	cfg, diags := spec.Load(filepath.Join(dir, "kiln.hcl"), spec.Options{Environ: []string{}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return cfg
}
