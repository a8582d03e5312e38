package bake

import (
	"archive/tar"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// TestLayerHeadersAsExtract: the names a copy reads layer by layer, with the cache and
// without, are mutate.Extract's (whiteouts, an opaque directory, a file over a
// directory, a directory over a file, parents no layer names), and a stack whose top
// layer changed reads that layer only.
func TestLayerHeadersAsExtract(t *testing.T) {
	d := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755} }
	f := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644} }
	l := func(name, to string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: to, Mode: 0o777}
	}
	content := map[string]string{"a/x": "x", "a/y": "y", "b/z": "z", "c": "c", "d/e": "e", "o/p": "p", "deep/er/f": "f"}
	base := tarLayer(t, []*tar.Header{
		d("a/"), f("a/x"), f("a/y"), d("b/"), f("b/z"), d("c/"), f("c/inner"), f("d"), d("o/"), f("o/p"), f("o/q"),
		f("deep/er/f"), l("lnk", "a/x"),
	}, content)
	mid := tarLayer(t, []*tar.Header{
		f("a/.wh.x"),      // a file removed
		f(".wh.b"),        // a directory removed with its contents
		f("c"),            // a file over a directory
		d("d/"), f("d/e"), // a directory over a file
		d("o/"), f("o/.wh..wh..opq"), f("o/new"), // an opaque directory, refilled
	}, content)
	top1 := tarLayer(t, []*tar.Header{d("out/"), f("out/hello")}, map[string]string{"out/hello": "1"})
	top2 := tarLayer(t, []*tar.Header{d("out/"), f("out/hello"), f("out/more")}, map[string]string{"out/hello": "22", "out/more": "m"})

	cache := headerCache{dir: filepath.Join(t.TempDir(), "headers")}
	for _, top := range []v1.Layer{top1, top2} {
		img, err := mutate.AppendLayers(scratch(), base, mid, top)
		if err != nil {
			t.Fatal(err)
		}
		want, err := imageHeaders(img)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []headerCache{cache, {dir: filepath.Join(t.TempDir(), "none")}} {
			got, err := c.layerHeaders(img)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want))) {
				t.Fatalf("names:\n got %v\nwant %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
			}
			for p, w := range want {
				g := got[p]
				if g.Typeflag != w.Typeflag || g.Size != w.Size || g.Linkname != w.Linkname || g.Mode != w.Mode {
					t.Errorf("%s: got %c %o %d %q, want %c %o %d %q", p, g.Typeflag, g.Mode, g.Size, g.Linkname, w.Typeflag, w.Mode, w.Size, w.Linkname)
				}
			}
		}
	}
	// The second image shares its two bottom layers with the first: their names came
	// from the cache, so the stack of those two is in it.
	ids, _ := diffIDs(mustImage(t, base, mid))
	if _, ok := cache.load(ids); !ok {
		t.Error("the names of the shared bottom layers are not cached")
	}
}

func mustImage(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(scratch(), layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
