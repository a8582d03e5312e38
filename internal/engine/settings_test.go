package engine

import (
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/spec"
	"github.com/kiln-build/kiln/internal/store"
)

// changes maps every attribute of a service block to a change of it, written as the
// attribute (or block) that replaces its default in the base service below.
var changes = map[string]string{
	"image":            `image = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"`,
	"replicas":         `replicas = 3`,
	"port":             `port = 9090`,
	"listen":           `listen = "127.0.0.1:8093"`,
	"command":          `command = ["/app/other"]`,
	"args":             `args = ["--verbose"]`,
	"env":              `env = { A = "2" }`,
	"writable":         `writable = ["/var/tmp"]`,
	"secret_files":     `secret_files = { "/run/secrets/db" = secret.db }`,
	"user":             `user = "0:0"`,
	"init":             `init = true`,
	"stop_signal":      `stop_signal = "SIGQUIT"`,
	"stop_timeout":     `stop_timeout = "30s"`,
	"resources.cpu":    `resources { cpu = 0.5 }`,
	"resources.memory": `resources { memory = "512MiB" }`,
	"resources.pids":   `resources { pids = 512 }`,
	"health.http":      `health { http = "/ready" }`,
	"health.tcp":       `health { tcp = true }`,
	"health.interval": `health {
    http = "/healthz"
    interval = "2s"
  }`,
	"health.timeout": `health {
    http = "/healthz"
    timeout = "3s"
  }`,
	"health.start_period": `health {
    http = "/healthz"
    start_period = "5s"
  }`,
	"health.healthy_threshold": `health {
    http = "/healthz"
    healthy_threshold = 2
  }`,
	"health.unhealthy_threshold": `health {
    http = "/healthz"
    unhealthy_threshold = 5
  }`,
	"health.failure_threshold": `health {
    http = "/healthz"
    failure_threshold = 1
  }`,
	"update.strategy":                             `update { strategy = "blue-green" }`,
	"update.max_surge":                            `update { max_surge = 2 }`,
	"update.max_unavailable":                      `update { max_unavailable = 1 }`,
	"update.min_healthy":                          `update { min_healthy = "5s" }`,
	"update.progress_deadline":                    `update { progress_deadline = "2m" }`,
	"update.auto_rollback":                        `update { auto_rollback = false }`,
	"update.keep_old":                             `update { keep_old = "1m" }`,
	"drift.action":                                `drift { action = "report" }`,
	"update.sticky":                               "update {\n    strategy = \"canary\"\n    sticky = \"cookie\"\n  }",
	"update.step.weight":                          "update {\n    strategy = \"canary\"\n    step {\n      weight = 20\n      duration = \"1m\"\n    }\n  }",
	"update.step.duration":                        "update {\n    strategy = \"canary\"\n    step {\n      weight = 10\n      duration = \"5m\"\n    }\n  }",
	"update.step.pause":                           "update {\n    strategy = \"canary\"\n    step {\n      weight = 10\n      duration = \"1m\"\n    }\n    step { pause = true }\n  }",
	"update.analysis.interval":                    "update {\n    strategy = \"canary\"\n    analysis { interval = \"5s\" }\n  }",
	"update.analysis.min_requests":                "update {\n    strategy = \"canary\"\n    analysis { min_requests = 500 }\n  }",
	"update.analysis.max_error_ratio":             "update {\n    strategy = \"canary\"\n    analysis { max_error_ratio = 0.05 }\n  }",
	"update.analysis.max_error_ratio_over_stable": "update {\n    strategy = \"canary\"\n    analysis { max_error_ratio_over_stable = 0.02 }\n  }",
	"update.analysis.max_p50":                     "update {\n    strategy = \"canary\"\n    analysis { max_p50 = \"100ms\" }\n  }",
	"update.analysis.max_p99":                     "update {\n    strategy = \"canary\"\n    analysis { max_p99 = \"1s\" }\n  }",
	"update.analysis.max_p50_over_stable":         "update {\n    strategy = \"canary\"\n    analysis { max_p50_over_stable = \"10ms\" }\n  }",
	"update.analysis.max_p99_over_stable":         "update {\n    strategy = \"canary\"\n    analysis { max_p99_over_stable = \"50ms\" }\n  }",
	"update.analysis.prometheus":                  "update {\n    strategy = \"canary\"\n    analysis { prometheus = \"http://127.0.0.1:9090\" }\n  }",
	"update.analysis.query.query":                 "update {\n    strategy = \"canary\"\n    analysis {\n      prometheus = \"http://127.0.0.1:9090\"\n      query \"errors\" {\n        query = \"sum(x)\"\n        max = 1\n      }\n    }\n  }",
	"update.analysis.query.max":                   "update {\n    strategy = \"canary\"\n    analysis {\n      prometheus = \"http://127.0.0.1:9090\"\n      query \"errors\" {\n        query = \"sum(y)\"\n        max = 2\n      }\n    }\n  }",
	"update.analysis.query.min":                   "update {\n    strategy = \"canary\"\n    analysis {\n      prometheus = \"http://127.0.0.1:9090\"\n      query \"orders\" {\n        query = \"sum(z)\"\n        min = 3\n      }\n    }\n  }",
	"hosts":                                       `hosts = ["example.com"]`,
	"path":                                        `path = "/api"`,
	"strip_path": `path = "/api"
  strip_path = false`,
	"drain_timeout":      `drain_timeout = "1m"`,
	"access_log":         `access_log = true`,
	"tls.certificate":    "hosts = [\"example.com\"]\n  tls {\n    certificate = \"web.pem\"\n    key = \"web.key\"\n  }",
	"tls.key":            "hosts = [\"example.com\"]\n  tls {\n    certificate = \"web.pem\"\n    key = \"other.key\"\n  }",
	"tls.acme":           "hosts = [\"example.com\"]\n  tls { acme = true }",
	"tls.acme_email":     "hosts = [\"example.com\"]\n  tls {\n    acme = true\n    acme_email = \"ops@example.com\"\n  }",
	"tls.acme_directory": "hosts = [\"example.com\"]\n  tls {\n    acme = true\n    acme_directory = \"https://127.0.0.1:14000/dir\"\n  }",
	"tls.acme_roots":     "hosts = [\"example.com\"]\n  tls {\n    acme = true\n    acme_roots = \"roots.pem\"\n  }",
	"tls.redirect_http":  "hosts = [\"example.com\"]\n  tls {\n    certificate = \"web.pem\"\n    key = \"web.key\"\n    redirect_http = \"127.0.0.1:8080\"\n  }",
	"tls.redirect":       "hosts = [\"example.com\"]\n  tls {\n    certificate = \"web.pem\"\n    key = \"web.key\"\n    redirect = false\n  }",
	"tls.hsts":           "hosts = [\"example.com\"]\n  tls {\n    certificate = \"web.pem\"\n    key = \"web.key\"\n    hsts = \"365d\"\n  }",
}

const baseService = `
secret "db" { env = "KILN_TEST_SETTINGS_SECRET" }
service "web" {
  image  = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  port   = 8080
  listen = "127.0.0.1:8090"
  env    = { A = "1" }
  health { http = "/healthz" }
  %s
}
`

// TestEverySettingShows: changing any attribute of a service block either changes its
// servers' spec (so plan replaces them and says why) or is a setting change plan shows;
// never neither, which would make plan say "No changes" while apply changes something.
func TestEverySettingShows(t *testing.T) {
	t.Setenv("KILN_TEST_SETTINGS_SECRET", "s3cret")
	e := New(Options{})
	service := func(t *testing.T, extra string) api.Service {
		t.Helper()
		src := strings.Replace(baseService, "%s", extra, 1)
		for _, line := range strings.Split(baseService, "\n") { // the base's own line goes
			if name, _, _ := strings.Cut(strings.TrimSpace(line), " "); name != "" && strings.HasPrefix(extra, name+" ") {
				src = strings.Replace(src, line+"\n", "", 1)
			}
		}
		cfg, diags := spec.Parse("kiln.hcl", []byte(src), spec.Options{Environ: []string{}})
		if diags.HasErrors() {
			t.Fatalf("%s: %v", extra, diags)
		}
		svc := ServiceFromSpec(cfg.Service("web"))
		svc.Image = cfg.Service("web").Image.Digest
		out, err := e.resolveSecrets(t.Context(), SecretsFromSpec(cfg), []api.Service{svc}, true)
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	base := service(t, "")
	baseSpec, err := e.serverSpec(base, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, attr := range spec.ServiceAttributes() {
		change, ok := changes[attr]
		if !ok {
			t.Errorf("attribute %q of the service block has no change in this test: add one", attr)
			continue
		}
		svc := service(t, change)
		ss, err := e.serverSpec(svc, 1)
		if err != nil {
			t.Fatal(err)
		}
		settings := settingChanges(base, svc)
		switch {
		case attr == "replicas":
			if svc.Replicas == base.Replicas {
				t.Errorf("%s: no change", attr)
			}
		case ss.Hash() != baseSpec.Hash() && len(settings) > 0:
			t.Errorf("%s: both a server change and a setting change (%v): which is it?", attr, settings)
		case ss.Hash() == baseSpec.Hash() && len(settings) == 0:
			t.Errorf("%s: changing it changes neither the servers nor a setting plan shows", attr)
		}
		if sameService(revisionOf(t, base), svc) {
			t.Errorf("%s: the change does not make a new revision", attr)
		}
	}
	for attr := range changes {
		found := false
		for _, a := range spec.ServiceAttributes() {
			found = found || a == attr
		}
		if !found {
			t.Errorf("the test changes %q, which the service block does not have", attr)
		}
	}
}

func revisionOf(t *testing.T, svc api.Service) store.Revision {
	return store.Revision{Spec: mustJSON(svc)}
}
