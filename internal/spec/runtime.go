package spec

import (
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Runtime is where the spec's services run: a `runtime "NAME" { OPTION = "value" }`
// block, at most one. A spec without one runs on Docker.
type Runtime struct {
	Name string
	// Options are the runtime's settings by name, as its driver takes them; a
	// relative kubeconfig is resolved against the spec's directory.
	Options map[string]string
	Range   hcl.Range
}

// DefaultRuntime is the runtime of a spec that names none.
const DefaultRuntime = "docker"

// Runtimes are the runtimes a spec may name, with the options each takes: the
// drivers' own options (a test holds the two lists together).
var Runtimes = map[string][]string{
	"docker":     {"host", "stop_timeout", "tmpfs_size", "secrets_dir"},
	"kubernetes": {"kubeconfig", "context", "namespace", "registry", "pull_registry", "stop_timeout", "break_glass_group", "service_type", "audit_log", "kubelet_ca", "kubelet_kubeconfig"},
}

// RuntimeName is the spec's runtime, DefaultRuntime when it names none.
func (c *Config) RuntimeName() string {
	if c.Runtime == nil {
		return DefaultRuntime
	}
	return c.Runtime.Name
}

// runtime decodes the runtime block, reporting a second one, a runtime kiln does not
// have and an option it does not take.
func (d *decoder) runtime(cfg *Config, blocks []*hcl.Block) {
	for i, b := range blocks {
		if i > 0 {
			d.errorf(b.DefRange.Ptr(), "Duplicate runtime", "A spec runs on one runtime; the first runtime block is at %s.", blocks[0].DefRange)
			continue
		}
		name := b.Labels[0]
		known, ok := Runtimes[name]
		if !ok {
			var names []string
			for n := range Runtimes {
				names = append(names, n)
			}
			slices.Sort(names)
			d.errorf(b.LabelRanges[0].Ptr(), "Unknown runtime", "kiln runs servers on %s; there is no runtime %q.%s", strings.Join(names, " or "), name, didYouMean(name, names))
			continue
		}
		attrs, diags := b.Body.JustAttributes()
		d.add(diags)
		rt := &Runtime{Name: name, Options: map[string]string{}, Range: b.DefRange}
		for key, attr := range attrs {
			if !slices.Contains(known, key) {
				d.errorf(attr.NameRange.Ptr(), "Unknown runtime option", "The %s runtime takes %s; not %q.%s", name, strings.Join(known, ", "), key, didYouMean(key, known))
				continue
			}
			if v, ok := d.str(attrs, key); ok {
				if key == "kubeconfig" && v != "" && !filepath.IsAbs(v) && !strings.HasPrefix(v, "~") {
					v = resolve(d.dir, v)
				}
				rt.Options[key] = v
			}
		}
		cfg.Runtime = rt
	}
}
