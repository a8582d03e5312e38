package plan

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-build/kiln/internal/driver"
)

func TestDoorChanges(t *testing.T) {
	files := &DoorTLS{CertFile: "/srv/app/web.pem", KeyFile: "/srv/app/web.key", RedirectHTTP: "0.0.0.0:80"}
	acme := &DoorTLS{ACME: true, ACMEDirectory: "https://acme-v02.api.letsencrypt.org/directory", RedirectHTTP: "0.0.0.0:80"}
	tests := []struct {
		name     string
		old, new Door
		want     []string
	}{
		{"nothing", Door{}, Door{}, nil},
		{"the same, written otherwise", Door{Path: "", DrainTimeout: 0, Hosts: []string{"b.example.com", "a.example.com"}},
			Door{Path: "/", StripPath: true, DrainTimeout: 30 * time.Second, Hosts: []string{"a.example.com", "B.example.com"}}, nil},
		{"hosts", Door{}, Door{Hosts: []string{"www.example.com", "example.com"}}, []string{"hosts (every host) → example.com, www.example.com"}},
		{"path", Door{}, Door{Path: "/api", StripPath: true}, []string{"path / → /api"}},
		{"strip_path", Door{Path: "/api", StripPath: true}, Door{Path: "/api"}, []string{"strip_path true → false"}},
		{"drain_timeout", Door{}, Door{DrainTimeout: -1}, []string{"drain_timeout 30s → 0s"}},
		{"access_log", Door{}, Door{AccessLog: true}, []string{"access_log false → true"}},
		{"tls on", Door{}, Door{TLS: files}, []string{"tls off → certificate /srv/app/web.pem"}},
		{"tls off", Door{TLS: acme}, Door{}, []string{"tls acme https://acme-v02.api.letsencrypt.org/directory → off"}},
		{"tls from files to ACME", Door{TLS: files}, Door{TLS: acme}, []string{
			`tls certificate /srv/app/web.pem → ""`, `tls key /srv/app/web.key → ""`, "tls acme false → true",
			`tls acme_directory "" → https://acme-v02.api.letsencrypt.org/directory`}},
		{"tls redirect and hsts", Door{TLS: files}, Door{TLS: &DoorTLS{CertFile: files.CertFile, KeyFile: files.KeyFile, NoRedirect: true, HSTS: 24 * time.Hour}},
			[]string{"tls redirect true → false", "tls redirect_http 0.0.0.0:80 → (none)", "tls hsts off → 24h0m0s"}},
		{"tls acme account", Door{TLS: acme}, Door{TLS: &DoorTLS{ACME: true, ACMEDirectory: acme.ACMEDirectory, RedirectHTTP: "0.0.0.0:80", ACMEEmail: "ops@example.com", ACMERoots: "/srv/app/roots.pem"}},
			[]string{`tls acme_email "" → ops@example.com`, `tls acme_roots "" → /srv/app/roots.pem`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, DoorChanges(tt.old, tt.new)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestDoorChangesShow: door changes given as Settings make a plan with changes, which
// kiln plan prints as it prints a listen change.
func TestDoorChangesShow(t *testing.T) {
	settings := append([]string{"listen 127.0.0.1:8090 → 0.0.0.0:443"}, DoorChanges(Door{},
		Door{Hosts: []string{"example.com"}, Path: "/app", StripPath: true, TLS: &DoorTLS{ACME: true, ACMEDirectory: "https://acme.example/dir", RedirectHTTP: "0.0.0.0:80"}})...)
	p := Compute([]Desired{{Service: "web", Revision: 2, Spec: spec(digestA), Replicas: 1, Settings: settings}},
		[]driver.Server{server(1, spec(digestA), driver.StateRunning)})
	if !p.HasChanges() || p.CountSettings() != 4 || p.Count(Replace)+p.Count(Create)+p.Count(Destroy) != 0 {
		t.Fatalf("plan %+v: want 4 setting changes and no server change", p)
	}
	var text, js bytes.Buffer
	if err := WriteText(&text, p); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, p); err != nil {
		t.Fatal(err)
	}
	golden(t, "door settings show though no server changes", text.String()+"\n"+js.String())
}
