package spec

import (
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Secret is one `secret` block: where a secret's value comes from. The value itself is
// never read by the spec: the daemon resolves it when a revision is applied.
type Secret struct {
	Name    string
	File    string   // absolute path
	Env     string   // an environment variable of the daemon
	Command []string // run in the spec's directory; its standard output is the value
	Dir     string   // the spec's directory
	Range   hcl.Range
}

var secretSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "file"}, {Name: "env"}, {Name: "command"}, {Name: "description"}},
}

// Marks on values the spec must keep out of anything that is not secret (an image, a
// command line, a label): references to secrets, and sensitive variables.
const (
	markSecret    = "secret"
	markSensitive = "sensitive"
)

// The value of secret.NAME while the spec is evaluated: a placeholder the daemon
// replaces with the value. NUL cannot occur in an environment variable or be typed in
// a spec's string, so a placeholder cannot be forged or mistaken for text.
const (
	placeholderStart = "\x00kiln-secret:"
	placeholderEnd   = "\x00"
)

// SecretPlaceholder is what secret.NAME stands for in a service's SecretEnv and
// SecretFiles.
func SecretPlaceholder(name string) string { return placeholderStart + name + placeholderEnd }

// ExpandSecrets replaces every placeholder in template with the value lookup gives for
// its secret's name.
func ExpandSecrets(template string, lookup func(name string) ([]byte, error)) ([]byte, error) {
	var out []byte
	for {
		i := strings.Index(template, placeholderStart)
		if i < 0 {
			return append(out, template...), nil
		}
		out = append(out, template[:i]...)
		rest := template[i+len(placeholderStart):]
		j := strings.Index(rest, placeholderEnd)
		if j < 0 {
			return append(out, template[i:]...), nil
		}
		v, err := lookup(rest[:j])
		if err != nil {
			return nil, err
		}
		out = append(out, v...)
		template = rest[j+len(placeholderEnd):]
	}
}

// SecretNames lists the secrets a template refers to.
func SecretNames(template string) []string {
	var names []string
	ExpandSecrets(template, func(name string) ([]byte, error) {
		names = append(names, name)
		return nil, nil
	})
	return names
}

// secrets decodes secret blocks and returns the value of `secret` in expressions.
func (d *decoder) secrets(cfg *Config, blocks []*hcl.Block) cty.Value {
	values := map[string]cty.Value{}
	d.secretNames = map[string]bool{}
	d.named("secret", blocks, func(b *hcl.Block) {
		s := &Secret{Name: b.Labels[0], Dir: d.dir, Range: b.DefRange}
		content, diags := b.Body.Content(secretSchema)
		d.add(diags)
		a := content.Attributes
		n := 0
		if p, ok := d.str(a, "file"); ok {
			s.File, n = p, n+1
			if !filepath.IsAbs(p) {
				s.File = filepath.Join(d.dir, p)
			}
		}
		if v, ok := d.str(a, "env"); ok {
			s.Env, n = v, n+1
		}
		if _, ok := a["command"]; ok {
			if s.Command = d.strList(a, "command"); len(s.Command) > 0 {
				n++
			}
		}
		if n != 1 {
			d.errorf(b.DefRange.Ptr(), "Invalid secret", "Give the secret %q exactly one source: file = \"path\", env = \"VARIABLE\" (of the daemon) or command = [\"program\", \"arg\"].", s.Name)
		}
		cfg.Secrets = append(cfg.Secrets, s)
		d.secretNames[s.Name] = true
		values[s.Name] = cty.StringVal(SecretPlaceholder(s.Name)).Mark(markSecret)
	})
	return cty.ObjectVal(values)
}

// Secret returns the secret named name, or nil.
func (c *Config) Secret(name string) *Secret {
	for _, s := range c.Secrets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// secretValues evaluates a map attribute whose values may be secret (a service's env,
// its secret_files): plain values go to plain, values that refer to a secret or a
// sensitive variable go to secret, as templates for ExpandSecrets.
func (d *decoder) secretValues(attrs hcl.Attributes, name string) (plain, secret map[string]string) {
	attr, ok := attrs[name]
	if !ok {
		return nil, nil
	}
	v, ok := d.evalMarked(attr, cty.Map(cty.String))
	if !ok {
		return nil, nil
	}
	whole := v.IsMarked()
	v, _ = v.Unmark()
	for k, e := range v.AsValueMap() {
		if e.IsNull() {
			d.errorf(attr.Expr.Range().Ptr(), "Null value in map", "The key %q of attribute %q is null; give it a string value.", k, name)
			continue
		}
		marked := whole || e.IsMarked()
		e, _ = e.Unmark()
		if marked {
			if secret == nil {
				secret = map[string]string{}
			}
			secret[k] = e.AsString()
			continue
		}
		if plain == nil {
			plain = map[string]string{}
		}
		plain[k] = e.AsString()
	}
	return plain, secret
}
