package spec

import "testing"

// TestDebianStep decodes packages blocks: the debian step comes first, whatever the
// block's place among the steps.
func TestDebianStep(t *testing.T) {
	cfg, diags := Load("testdata/debian/kiln.hcl", testOpts)
	if len(diags) > 0 {
		t.Fatalf("unexpected diagnostics: %v", diags)
	}
	py := cfg.Image("py")
	if len(py.Steps) != 2 {
		t.Fatalf("py has %d steps", len(py.Steps))
	}
	deb, ok := py.Steps[0].(*Debian)
	if !ok {
		t.Fatalf("py's first step is %T, not the debian step", py.Steps[0])
	}
	if deb.Suite != "bookworm" || len(deb.Packages) != 2 || deb.Repository != "" || deb.Docs {
		t.Errorf("py's debian step: %+v", deb)
	}
	if d := deb.Describe(); d != "debian bookworm: python3 ca-certificates" {
		t.Errorf("Describe = %q", d)
	}
	m := cfg.Image("mirror").Steps[0].(*Debian)
	if m.Repository != "http://deb.debian.org/debian" || !m.Docs || m.Packages[0] != "libc6=2.36-9+deb12u14" {
		t.Errorf("mirror's debian step: %+v", m)
	}
}
