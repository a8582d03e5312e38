package spec

import (
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Pipeline is one `pipeline` block: a git source watched for new commits, each of which
// is baked, tested on candidate servers and deployed to Services (then to Promote, in
// order), with every step recorded.
type Pipeline struct {
	Name          string
	Repo          string // absolute path of a local repository, or a URL
	Branch        string
	Poll          time.Duration // 0: only webhooks and manual triggers
	Services      []string
	Promote       []string
	WebhookSecret string
	TestTimeout   time.Duration
	Checks        []Check
	DeclRange     hcl.Range
}

// Check is one test a candidate server must pass: an HTTP expectation, or a command run
// on the host with the candidate's URL in KILN_CANDIDATE_URL.
type Check struct {
	Name    string
	Path    string // HTTP: GET this path
	Status  int    // HTTP: expected status (default 200)
	Body    string // HTTP: the body must contain this
	Command []string
}

var pipelineSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "repo", Required: true}, {Name: "branch"}, {Name: "poll"}, {Name: "services", Required: true},
		{Name: "promote"}, {Name: "webhook_secret"}, {Name: "test_timeout"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "check", LabelNames: []string{"name"}}},
}

var checkSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "path"}, {Name: "status"}, {Name: "body"}, {Name: "command"}},
}

func (d *decoder) pipeline(b *hcl.Block) *Pipeline {
	content, diags := b.Body.Content(pipelineSchema)
	d.add(diags)
	a := content.Attributes
	p := &Pipeline{Name: b.Labels[0], Branch: "main", Poll: 10 * time.Second, TestTimeout: 2 * time.Minute, DeclRange: b.DefRange}
	if repo, ok := d.str(a, "repo"); ok {
		if strings.Contains(repo, "://") || strings.HasPrefix(repo, "git@") {
			p.Repo = repo
		} else {
			p.Repo = resolve(d.dir, repo)
			if fi, err := os.Stat(p.Repo); err != nil || !fi.IsDir() {
				d.errorf(a["repo"].Expr.Range().Ptr(), "Missing repository", "There is no directory %s (resolved against %s) for the pipeline's repository.", repo, d.dir)
			}
		}
	}
	if s, ok := d.str(a, "branch"); ok {
		p.Branch = s
	}
	if _, ok := a["poll"]; ok {
		if v, ok := d.duration(a, "poll", 0); ok {
			p.Poll = v
		}
	}
	if v, ok := d.duration(a, "test_timeout", time.Second); ok {
		p.TestTimeout = v
	}
	p.Services = d.strList(a, "services")
	if _, ok := a["services"]; ok && len(p.Services) == 0 {
		d.errorf(a["services"].Expr.Range().Ptr(), "No services", "A pipeline deploys at least one service.")
	}
	p.Promote = d.strList(a, "promote")
	if attr, ok := a["webhook_secret"]; ok { // a sensitive variable, as it should be
		if v, ok := d.evalMarked(attr, cty.String); ok {
			v, _ = v.UnmarkDeep()
			if strings.Contains(v.AsString(), placeholderStart) {
				d.errorf(attr.Expr.Range().Ptr(), "Invalid webhook secret", "webhook_secret takes a sensitive variable (variable \"x\" { sensitive = true }), not a secret block's value.")
			} else {
				p.WebhookSecret = v.AsString()
			}
		}
	}
	for _, cb := range content.Blocks {
		cc, diags := cb.Body.Content(checkSchema)
		d.add(diags)
		c := Check{Name: cb.Labels[0], Status: http.StatusOK}
		c.Path, _ = d.str(cc.Attributes, "path")
		if n, ok := d.integer(cc.Attributes, "status", 100, 599); ok {
			c.Status = n
		}
		c.Body, _ = d.str(cc.Attributes, "body")
		c.Command = d.strList(cc.Attributes, "command")
		if (c.Path == "") == (len(c.Command) == 0) {
			d.errorf(cb.DefRange.Ptr(), "Invalid check", "A check has either path = \"/...\" (an HTTP expectation) or command = [...] (run on the host).")
		}
		if c.Path != "" && !strings.HasPrefix(c.Path, "/") {
			d.errorf(cc.Attributes["path"].Expr.Range().Ptr(), "Invalid check path", "path = %q must start with \"/\".", c.Path)
		}
		p.Checks = append(p.Checks, c)
	}
	return p
}

// checkPipelines reports pipelines naming services the spec does not declare.
func (d *decoder) checkPipelines(cfg *Config) {
	var services []string
	for _, s := range cfg.Services {
		services = append(services, s.Name)
	}
	for _, p := range cfg.Pipelines {
		for _, names := range [][]string{p.Services, p.Promote} {
			for _, n := range names {
				if cfg.Service(n) == nil {
					d.errorf(p.DeclRange.Ptr(), "Reference to undeclared service", "Pipeline %q deploys service %q, which this spec does not declare.%s", p.Name, n, didYouMean(n, services))
				}
			}
		}
	}
}
