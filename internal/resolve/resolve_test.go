package resolve

import (
	"errors"
	"testing"

	"github.com/kiln-build/kiln/internal/bake"
	"github.com/kiln-build/kiln/internal/imagestore"
	"github.com/kiln-build/kiln/internal/spec"
)

// Services whose images all run by digest bake nothing (bake.Select of no names would
// be every image of the spec) and are named as the store names their images; a
// service of a spec's image is baked, with what it is based on.
func TestServices(t *testing.T) {
	ctx := t.Context()
	store, err := imagestore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	parse := func(src string) *spec.Config {
		t.Helper()
		cfg, diags := spec.Parse("kiln.hcl", []byte(src), spec.Options{Environ: []string{}, Dir: t.TempDir()})
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		return cfg
	}
	images := `
image "base" {
  from = "scratch"
  file "/base.txt" { content = "base\n" }
}
image "app" {
  from = image.base
  file "/app.txt" { content = "app\n" }
}
image "other" {
  from = "scratch"
  file "/other.txt" { content = "other\n" }
}
`
	cfg := parse(images + `
service "app" {
  image  = image.app
  port   = 8080
  listen = "127.0.0.1:8080"
}
`)
	got, err := Images(cfg, cfg.Services)
	if err != nil || len(got) != 2 || got[0].Name != "base" || got[1].Name != "app" {
		t.Fatalf("Images = %v, %v; want base and app", got, err)
	}
	if _, _, err := Services(ctx, cfg, cfg.Services, nil, store); !errors.Is(err, ErrNoBaker) {
		t.Errorf("Services without a baker = %v, want ErrNoBaker", err)
	}
	unlock, err := store.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bake.NewBaker(store, bake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svcs, baked, err := Services(ctx, cfg, cfg.Services, b, store)
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	if len(baked) != 2 || len(svcs) != 1 || svcs[0].ImageName != "app" || svcs[0].Image != baked[1].Digest.String() {
		t.Fatalf("Services = %+v, baked %v; want app running the baked app", svcs, baked)
	}

	pinned := parse(images + `
service "pinned" {
  image  = "` + svcs[0].Image + `"
  port   = 8080
  listen = "127.0.0.1:8080"
}
`)
	if got, err := Images(pinned, pinned.Services); err != nil || len(got) != 0 {
		t.Errorf("Images of a service by digest = %v, %v; want none", got, err)
	}
	svcs, baked, err = Services(ctx, pinned, pinned.Services, nil, store)
	if err != nil || len(baked) != 0 || len(svcs) != 1 || svcs[0].ImageName != "app" || svcs[0].Name != "pinned" {
		t.Errorf("Services of a service by digest = %+v, %v, %v; want it named as the store names its image", svcs, baked, err)
	}
}
