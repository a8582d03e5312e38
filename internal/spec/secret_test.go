package spec

import (
	"fmt"
	"strings"
	"testing"
)

const secretsSpec = `
variable "api_key" {
  sensitive = true
  default   = "key-canary"
}
variable "plain" { default = "p" }

secret "db" {
  env = "DB_PASSWORD"
}
secret "tls" {
  file = "certs/key.pem"
}

image "web" {
  from = "scratch"
}

service "web" {
  image  = image.web
  port   = 8080
  listen = "127.0.0.1:8080"
  user   = "0:0"
  env = {
    LOG     = var.plain
    API_KEY = var.api_key
    DSN     = "postgres://app:${secret.db}@db/app"
  }
  secret_files = {
    "/run/secrets/tls.pem" = secret.tls
  }
}
`

func TestSecretsGoOnlyWhereSecretsGo(t *testing.T) {
	cfg, diags := Parse("/p/kiln.hcl", []byte(secretsSpec), Options{Environ: []string{}})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	s := cfg.Service("web")
	if fmt.Sprint(s.Env) != "map[LOG:p]" {
		t.Errorf("plain env = %v, want only LOG", s.Env)
	}
	if len(s.SecretEnv) != 2 || s.SecretEnv["API_KEY"] != "key-canary" {
		t.Errorf("secret env = %q", s.SecretEnv)
	}
	dsn, err := ExpandSecrets(s.SecretEnv["DSN"], func(name string) ([]byte, error) { return []byte("<" + name + ">"), nil })
	if err != nil || string(dsn) != "postgres://app:<db>@db/app" {
		t.Errorf("DSN expands to %q, %v", dsn, err)
	}
	if names := SecretNames(s.SecretEnv["DSN"]); fmt.Sprint(names) != "[db]" {
		t.Errorf("SecretNames = %v", names)
	}
	if got := SecretNames(s.SecretFiles["/run/secrets/tls.pem"]); fmt.Sprint(got) != "[tls]" {
		t.Errorf("secret files = %q", s.SecretFiles)
	}
	if tls := cfg.Secret("tls"); tls == nil || tls.File != "/p/certs/key.pem" {
		t.Errorf("secret tls = %+v", tls)
	}
	if s.User != "0:0" {
		t.Errorf("user = %q", s.User)
	}
	if fmt.Sprint(cfg.Sensitive) != "[api_key]" {
		t.Errorf("sensitive = %v", cfg.Sensitive)
	}
}

func TestSecretsRefusedElsewhere(t *testing.T) {
	for _, c := range []struct{ name, body, want string }{
		{"in an image's file", `image "x" {
  from = "scratch"
  file "/etc/pw" { content = secret.db }
}`, `kiln.hcl:8,`},
		{"in a command", `image "x" { from = "scratch" }
service "x" {
  image   = image.x
  port    = 80
  listen  = ":80"
  command = ["/app", var.key]
}`, `kiln.hcl:11,`},
		{"in an image label, through a function", `image "x" {
  from   = "scratch"
  labels = { k = upper(var.key) }
}`, `kiln.hcl:8,`},
		{"as plain secret_files", `image "x" { from = "scratch" }
service "x" {
  image        = image.x
  port         = 80
  listen       = ":80"
  secret_files = { "/run/a" = "not secret" }
}`, "secret_files maps paths to secrets"},
	} {
		src := "variable \"key\" {\n  sensitive = true\n  default = \"k\"\n}\nsecret \"db\" { env = \"X\" }\n" + c.body
		_, diags := Parse("kiln.hcl", []byte(src), Options{Environ: []string{}})
		if !diags.HasErrors() || !strings.Contains(diags.Error(), c.want) {
			t.Errorf("%s: diagnostics %v, want an error at %s", c.name, diags, c.want)
		}
	}

	_, diags := Parse("kiln.hcl", []byte(`secret "a" {
  env  = "X"
  file = "y"
}
image "x" {
  from = "scratch"
  env  = { A = secret.nope }
}`), Options{Environ: []string{}})
	for _, want := range []string{"exactly one source", "Reference to undeclared secret"} {
		found := false
		for _, d := range diags {
			found = found || strings.Contains(d.Summary+d.Detail, want)
		}
		if !found {
			t.Errorf("diagnostics %v lack %q", diags, want)
		}
	}
}

// A pipeline's commit cannot take a value its applier made sensitive and bake it into
// an image by declaring the variable plain.
func TestOptionsSensitiveWins(t *testing.T) {
	src := `variable "webhook" { default = "" }
image "x" {
  from = "scratch"
  file "/leak" { content = var.webhook }
}`
	_, diags := Parse("kiln.hcl", []byte(src), Options{Environ: []string{}, Vars: map[string]string{"webhook": "s3cret"}, Sensitive: []string{"webhook"}})
	if !diags.HasErrors() || !strings.Contains(diags.Error(), "Secret value not allowed here") {
		t.Errorf("diagnostics %v, want the value refused", diags)
	}
	if strings.Contains(fmt.Sprint(diags), "s3cret") {
		t.Error("a diagnostic shows the sensitive value")
	}
}

// A pipeline's commit cannot take an image of the daemon's Docker engine as its base:
// the engine holds other projects' images.
func TestConfinedRefusesDockerBases(t *testing.T) {
	src := []byte("image \"x\" {\n  from = \"docker://private/app:latest\"\n}\n")
	if _, diags := Parse("kiln.hcl", src, Options{Environ: []string{}, Confine: true, Dir: t.TempDir()}); !diags.HasErrors() || !strings.Contains(diags.Error(), "kiln.hcl:2,") {
		t.Errorf("confined: %v, want the base refused at line 2", diags)
	}
	if _, diags := Parse("kiln.hcl", src, Options{Environ: []string{}}); diags.HasErrors() {
		t.Errorf("a local spec may use it: %v", diags)
	}
}

// A function that fails on a sensitive value does not quote it: errors go to plans,
// events and run logs.
func TestFunctionErrorsHideSensitiveValues(t *testing.T) {
	for _, call := range []string{`tonumber(var.pw)`, `regex(var.pw, "x")`, `file(var.pw)`, `jsondecode(var.pw)`, `fileexists(var.pw)`, `format("%d", var.pw)`} {
		src := "variable \"pw\" {\n  sensitive = true\n}\nimage \"x\" {\n  from = \"scratch\"\n  labels = { a = " + call + " }\n}\n"
		_, diags := Parse("/p/kiln.hcl", []byte(src), Options{Environ: []string{}, Vars: map[string]string{"pw": "hunter2("}})
		if !diags.HasErrors() {
			t.Errorf("%s: no error", call)
		}
		for _, d := range diags {
			if strings.Contains(d.Summary+d.Detail, "hunter2") {
				t.Errorf("%s: the error shows the value: %s: %s", call, d.Summary, d.Detail)
			}
		}
	}
	// Calls that succeed keep the value sensitive.
	_, diags := Parse("kiln.hcl", []byte("variable \"pw\" {\n  sensitive = true\n}\nimage \"x\" {\n  from = \"scratch\"\n  labels = { a = upper(var.pw) }\n}\n"), Options{Environ: []string{}, Vars: map[string]string{"pw": "hunter2"}})
	if !diags.HasErrors() || !strings.Contains(diags.Error(), "Secret value not allowed here") {
		t.Errorf("upper(var.pw) in a label: %v", diags)
	}
}
