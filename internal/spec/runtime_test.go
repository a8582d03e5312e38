package spec

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRuntimeDecode(t *testing.T) {
	cfg, diags := parseServices(t, testOpts, service("web", "127.0.0.1:8080"), `
runtime "kubernetes" {
  kubeconfig = "cluster/kubeconfig"
  context    = "staging"
  namespace  = "shop"
  registry   = "127.0.0.1:5000"
}
`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	want := map[string]string{"kubeconfig": "/srv/app/cluster/kubeconfig", "context": "staging", "namespace": "shop", "registry": "127.0.0.1:5000"}
	if cfg.Runtime == nil || cfg.RuntimeName() != "kubernetes" || !cmp.Equal(cfg.Runtime.Options, want) {
		t.Errorf("Runtime = %+v, want kubernetes with %v", cfg.Runtime, want)
	}
	if cfg.Runtime.Range.Start.Line != 11 {
		t.Errorf("the runtime block is at %v, want line 11", cfg.Runtime.Range)
	}

	cfg, diags = parseServices(t, testOpts, service("web", "127.0.0.1:8080"))
	if diags.HasErrors() || cfg.Runtime != nil || cfg.RuntimeName() != "docker" {
		t.Errorf("no runtime block: %+v (%s), %v; want docker", cfg.Runtime, cfg.RuntimeName(), diags)
	}
}

func TestRuntimeErrors(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{`runtime "kubernete" {}`, `no runtime "kubernete". Did you mean "kubernetes"?`},
		{`runtime "kubernetes" {
  namespce = "x"
}`, `not "namespce". Did you mean "namespace"?`},
		{`runtime "docker" {}
runtime "kubernetes" {}`, "A spec runs on one runtime"},
		{`runtime "kubernetes" {
  namespace = 3
}`, ""},
		{`runtime "kubernetes" {
  registry = ["a"]
}`, "string required"},
	} {
		_, diags := parseServices(t, testOpts, c.src)
		if c.want == "" {
			if diags.HasErrors() {
				t.Errorf("%s: %v, want no error (a number is a string)", c.src, diags)
			}
			continue
		}
		if !diags.HasErrors() || !strings.Contains(diags.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.src, diags, c.want)
		}
	}
}
