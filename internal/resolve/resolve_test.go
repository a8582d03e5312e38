package resolve

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/kiln-build/kiln/internal/api"
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

// parseSpec parses src as a spec, failing the test on an error.
func parseSpec(t *testing.T, src string) *spec.Config {
	t.Helper()
	cfg, diags := spec.Parse("/srv/app/kiln.hcl", []byte(src), spec.Options{Environ: []string{}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return cfg
}

// A service that uses none of the front door's new settings is the api.Service, and
// the JSON, it was before they existed: a revision recorded then decodes and encodes
// to the same bytes, and applying the same spec again makes no new revision.
func TestServiceWithoutDoorSettingsIsAsBefore(t *testing.T) {
	cfg := parseSpec(t, `
service "web" {
  image  = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  port   = 8080
  listen = "127.0.0.1:8090"
}
`)
	svc := Service(cfg.Service("web"))
	svc.Image, svc.ImageName = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "web"
	// As a revision recorded it before the door's settings.
	const before = `{"name":"web","image":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","image_name":"web","replicas":1,"port":8080,"listen":"127.0.0.1:8090","stop_timeout":10000000000,"resources":{"memory_bytes":268435456,"pids":256},"health":{"tcp":true,"interval":1000000000,"timeout":1000000000,"start_period":0,"healthy_threshold":1,"unhealthy_threshold":3,"failure_threshold":3},"update":{"strategy":"rolling","max_surge":1,"max_unavailable":0,"min_healthy":2000000000,"progress_deadline":60000000000,"auto_rollback":true,"keep_old":5000000000},"drift":"replace"}`
	got, err := json.Marshal(svc)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != before {
		t.Errorf("encoded:\n%s\nwant, as before:\n%s", got, before)
	}
	var old api.Service
	if err := json.Unmarshal([]byte(before), &old); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(old, svc) {
		t.Errorf("the recorded service decodes to %+v, want %+v", old, svc)
	}
	if old.Drain() != api.DefaultDrainTimeout || old.TLS != nil || old.Path != "" || old.Hosts != nil {
		t.Errorf("the zero values mean %v, %v, %q, %v", old.Drain(), old.TLS, old.Path, old.Hosts)
	}
}

func TestServiceDoorSettings(t *testing.T) {
	cfg := parseSpec(t, `
service "web" {
  image         = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  port          = 8080
  listen        = ":443"
  hosts         = ["www.example.com", "Example.com"]
  path          = "/app/"
  drain_timeout = "2m"
  access_log    = true
  tls {
    acme       = true
    acme_email = "ops@example.com"
    acme_roots = "pebble.minica.pem"
    hsts       = "365d"
  }
}
`)
	got := Service(cfg.Service("web"))
	want := api.Service{Hosts: []string{"example.com", "www.example.com"}, Path: "/app", StripPath: true,
		DrainTimeout: 2 * time.Minute, AccessLog: true, TLS: &api.TLS{ACME: true, ACMEEmail: "ops@example.com",
			ACMEDirectory: spec.DefaultACMEDirectory, ACMERoots: "/srv/app/pebble.minica.pem", RedirectHTTP: "0.0.0.0:80", HSTS: 365 * 24 * time.Hour}}
	door := api.Service{Hosts: got.Hosts, Path: got.Path, StripPath: got.StripPath, DrainTimeout: got.DrainTimeout, AccessLog: got.AccessLog, TLS: got.TLS}
	if !reflect.DeepEqual(door, want) {
		t.Errorf("door settings %+v (TLS %+v), want %+v (TLS %+v)", door, door.TLS, want, want.TLS)
	}
	b, _ := json.Marshal(got)
	for _, key := range []string{`"hosts":["example.com","www.example.com"]`, `"path":"/app"`, `"strip_path":true`, `"drain_timeout":120000000000`,
		`"access_log":true`, `"tls":{"acme":true,"acme_email":"ops@example.com","acme_directory":"https://acme-v02.api.letsencrypt.org/directory","acme_roots":"/srv/app/pebble.minica.pem","redirect_http":"0.0.0.0:80","hsts":31536000000000000}`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON %s lacks %s", b, key)
		}
	}
	if problems := spec.ValidateService(SpecService(got)); len(problems) != 0 {
		t.Errorf("the API's service breaks the spec's rules: %v", problems)
	}
}

// The drain, the path and strip_path are written so that equal settings are equal
// values: the default drain is 0, whether written or not; "0s" is NoDrain; a strip of
// "/" is no strip.
func TestServiceDrainAndPath(t *testing.T) {
	for _, tt := range []struct {
		lines string
		drain time.Duration // api.Service.DrainTimeout
		means time.Duration // Drain()
		path  string
		strip bool
	}{
		{"", 0, 30 * time.Second, "", false},
		{`drain_timeout = "30s"`, 0, 30 * time.Second, "", false},
		{`drain_timeout = "0s"`, api.NoDrain, 0, "", false},
		{`drain_timeout = "10m"`, 10 * time.Minute, 10 * time.Minute, "", false},
		{`path = "/"` + "\n  strip_path = true", 0, 30 * time.Second, "", false},
		{`path = "/api"` + "\n  strip_path = false", 0, 30 * time.Second, "/api", false},
		{`path = "/api"`, 0, 30 * time.Second, "/api", true},
	} {
		cfg := parseSpec(t, `
service "web" {
  image  = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  port   = 8080
  listen = "127.0.0.1:8090"
  `+tt.lines+`
}
`)
		got := Service(cfg.Service("web"))
		if got.DrainTimeout != tt.drain || got.Drain() != tt.means || got.Path != tt.path || got.StripPath != tt.strip {
			t.Errorf("%q: drain %v (means %v), path %q, strip %v; want %v (%v), %q, %v", tt.lines, got.DrainTimeout, got.Drain(), got.Path, got.StripPath, tt.drain, tt.means, tt.path, tt.strip)
		}
		back := SpecService(got)
		if back.DrainTimeout != cfg.Service("web").DrainTimeout || back.Path != cfg.Service("web").Path {
			t.Errorf("%q: SpecService gives drain %v, path %q; the spec had %v, %q", tt.lines, back.DrainTimeout, back.Path, cfg.Service("web").DrainTimeout, cfg.Service("web").Path)
		}
	}
}

// The daemon checks the services it runs together with spec.RouteConflicts over
// SpecService: the same conflicts as the spec's, without places.
func TestRouteConflictsOverTheAPI(t *testing.T) {
	src := `
service "web" {
  image  = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  port   = 8080
  listen = ":443"
  hosts  = ["example.com"]
  tls {
    certificate = "web.pem"
    key         = "web.key"
  }
}
service "admin" {
  image  = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  port   = 8080
  listen = ":443"
  hosts  = ["example.com"]
  path   = "/admin"
  tls {
    certificate = "admin.pem"
    key         = "admin.key"
  }
}
service "api" {
  image  = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  port   = 8080
  listen = "127.0.0.1:80"
}
`
	cfg, diags := spec.Parse("/srv/app/kiln.hcl", []byte(src), spec.Options{Environ: []string{}})
	var inSpec []string
	for _, d := range diags.Errs() {
		inSpec = append(inSpec, d.(*hcl.Diagnostic).Summary)
	}
	// Two certificates for example.com; port 80 of 0.0.0.0, the default redirect of
	// both, is api's.
	if len(inSpec) != 3 {
		t.Fatalf("want 3 conflicts in the spec, got %v", diags)
	}
	var services []*spec.Service
	for _, s := range cfg.Services {
		services = append(services, SpecService(Service(s)))
	}
	got := spec.RouteConflicts(services)
	var overAPI []string
	for _, c := range got {
		overAPI = append(overAPI, c.Summary)
	}
	slices.Sort(inSpec)
	slices.Sort(overAPI)
	if !slices.Equal(inSpec, overAPI) {
		t.Fatalf("over the API: %v; in the spec: %v", got, diags)
	}
	for _, c := range got {
		if strings.Contains(c.Detail, "kiln.hcl") {
			t.Errorf("a place in %q", c.Detail)
		}
	}
}
