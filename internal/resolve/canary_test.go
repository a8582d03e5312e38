package resolve

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/spec"
)

// canaryService is a service block whose update block is update.
func canaryService(update string) string {
	return `
service "web" {
  image  = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
  port   = 8080
  listen = "127.0.0.1:8090"
  update {
    strategy = "canary"
    ` + strings.ReplaceAll(update, "\n", "\n    ") + `
  }
}
`
}

// A canary goes through the API and back as it was, sharing nothing with it.
func TestCanaryOverTheAPI(t *testing.T) {
	cfg := parseSpec(t, canaryService(`sticky = "cookie"
step {
  weight   = 5
  duration = "1m"
}
step { pause = true }
analysis {
  max_p99    = "300ms"
  prometheus = "http://127.0.0.1:9090"
  query "errors" {
    query = "sum(rate(errors_total[1m]))"
    max   = 0.5
    min   = 0
  }
}`))
	want := cfg.Service("web").Update.Canary
	svc := Service(cfg.Service("web"))
	b, err := json.Marshal(svc)
	if err != nil {
		t.Fatal(err)
	}
	var decoded api.Service
	if err := json.Unmarshal(b, &decoded); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(decoded, svc) {
		t.Errorf("through JSON: %+v, want %+v", decoded.Update.Canary, svc.Update.Canary)
	}
	back := SpecService(decoded)
	if !reflect.DeepEqual(back.Update.Canary, want) {
		t.Errorf("SpecService gives %+v, the spec had %+v", back.Update.Canary, want)
	}
	if problems := spec.ValidateService(back); len(problems) != 0 {
		t.Errorf("the API's canary breaks the spec's rules: %v", problems)
	}
	*svc.Update.Canary.Analysis.Queries[0].Max = 9
	svc.Update.Canary.Steps[0].Weight = 9
	if *want.Analysis.Queries[0].Max != 0.5 || want.Steps[0].Weight != 5 {
		t.Error("the API's canary shares its steps or limits with the spec's")
	}
	if plain := Service(parseSpec(t, strings.Replace(canaryService(""), `strategy = "canary"`, "", 1)).Service("web")); plain.Update.Canary != nil {
		t.Errorf("a rolling update has a canary: %+v", plain.Update.Canary)
	}
}

// The daemon refuses a bad canary that reaches it over the API with the spec's
// messages: it validates it as SpecService converts it.
func TestCanaryProblemsOverTheAPI(t *testing.T) {
	for _, update := range []string{
		"step { pause = true }",
		"step {\n  weight   = 100\n  duration = \"1m\"\n}",
		"step {\n  weight   = 5\n  duration = \"500ms\"\n}",
		"step { weight = 5 }",
		"step {\n  weight   = 20\n  duration = \"1m\"\n}\nstep {\n  pause  = true\n  weight = 20\n}\nstep {\n  weight   = 10\n  duration = \"1m\"\n}",
		strings.Repeat("step {\n  weight   = 5\n  duration = \"1m\"\n}\n", 21),
		`sticky = "header:X User"`,
		"analysis {\n  interval                    = \"10ms\"\n  min_requests                = 0\n  max_error_ratio             = 2\n  max_error_ratio_over_stable = -1\n  max_p50                     = \"-1ms\"\n  prometheus                  = \"prometheus:9090\"\n}",
		"analysis {\n  query \"a\" { query = \"up\" }\n  query \"a\" {\n    query = \"\"\n    min   = 2\n    max   = 1\n  }\n}",
	} {
		cfg, diags := spec.Parse("/srv/app/kiln.hcl", []byte(canaryService(update)), spec.Options{Environ: []string{}})
		if !diags.HasErrors() || cfg.Service("web") == nil {
			t.Errorf("%s: no error: %v", update, diags)
			continue
		}
		var fromSpec, fromAPI []string
		for _, d := range diags {
			fromSpec = append(fromSpec, d.Summary+": "+d.Detail)
		}
		for _, p := range spec.ValidateService(SpecService(Service(cfg.Service("web")))) {
			fromAPI = append(fromAPI, p.Error())
		}
		slices.Sort(fromSpec)
		slices.Sort(fromAPI)
		if !slices.Equal(fromSpec, fromAPI) {
			t.Errorf("%s:\nthe spec says\n  %s\nthe API\n  %s", update, strings.Join(fromSpec, "\n  "), strings.Join(fromAPI, "\n  "))
		}
	}
}
