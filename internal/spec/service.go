package spec

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Service is one `service` block: a named fleet of identical servers running one image
// behind a front door.
type Service struct {
	Name     string
	Image    ImageRef
	Replicas int
	Port     int    // the port each server listens on
	Listen   string // the front door, host:port
	Command  []string
	Args     []string
	Env      map[string]string
	// SecretEnv holds the env entries that refer to a secret or a sensitive variable,
	// as templates (see ExpandSecrets); SecretFiles the files mounted in each server
	// (on a tmpfs, read-only) from secrets, by absolute path. Neither is ever written
	// in plain text by kiln.
	SecretEnv   map[string]string
	SecretFiles map[string]string
	// User runs the servers as "uid[:gid]"; "" runs them as the image's user, or as
	// 65532 when the image names none.
	User string
	// Init runs a minimal init as PID 1 that forwards signals to the server's process
	// and reaps its children: for programs that ignore SIGTERM as PID 1.
	Init bool
	// StopSignal asks the server to stop ("" is the image's, else SIGTERM);
	// StopTimeout is how long it has before it is killed.
	StopSignal  string
	StopTimeout time.Duration
	Writable    []string
	Resources   Resources
	Health      Health
	Update      Update
	// Drift is what the controller does when a server no longer matches its spec:
	// DriftReplace (the default) or DriftReport.
	Drift string

	// The front door's settings, none part of the servers' spec. Several services may
	// share a listen address when their routes differ (RouteConflicts). Hosts are the
	// host names the door routes to the service, as NormalHost returns them ("*."
	// leading a wildcard of one label); none takes every host. Path is the prefix of
	// the paths it routes ("/" for all; a prefix matches itself and what follows a "/"
	// after it), and StripPath (the default) removes it before forwarding. Of one
	// address's routes the door picks by host (the exact name, then a wildcard, then a
	// service without hosts), then by the longest path prefix.
	Hosts     []string
	Path      string
	StripPath bool
	// DrainTimeout is how long the door lets the requests, streams and WebSockets to
	// a server leaving its rotation finish (DefaultDrainTimeout unless set; 0 cuts
	// them at once).
	DrainTimeout time.Duration
	// AccessLog has the door log one JSON line per request.
	AccessLog bool
	// TLS, when set, has the door serve HTTPS (the tls block).
	TLS       *TLS
	DeclRange hcl.Range
}

// Drift actions.
const (
	DriftReplace = "replace"
	DriftReport  = "report"
)

// ImageRef is what a service runs: an image block of the spec (Image), or an image
// already in the store by digest (Digest, "sha256:...").
type ImageRef struct {
	Image  string
	Digest string
	Range  hcl.Range
}

// Resources limit each server. Zero CPUs means no CPU limit.
type Resources struct {
	CPUs        float64
	MemoryBytes int64
	PIDs        int64
}

// Health is how a server proves it is ready: an HTTP GET answering 2xx or 3xx, or a TCP
// connection.
type Health struct {
	HTTP               string // path, e.g. "/healthz"; "" when TCP
	TCP                bool
	Interval           time.Duration
	Timeout            time.Duration
	StartPeriod        time.Duration // failures before this are not counted
	HealthyThreshold   int
	UnhealthyThreshold int
	// FailureThreshold is how many definitive answers in a row (an HTTP status of 400
	// or more) fail a new server at once, without waiting for the progress deadline.
	FailureThreshold int
}

// Update is how a new revision replaces the servers of the old one.
type Update struct {
	Strategy         string // StrategyRolling, StrategyBlueGreen or StrategyCanary
	MaxSurge         int
	MaxUnavailable   int
	MinHealthy       time.Duration // a new server must stay healthy this long to count
	ProgressDeadline time.Duration // no progress for this long fails the rollout
	AutoRollback     bool
	KeepOld          time.Duration // blue-green: how long the old set stays after the switch
	// Canary is the canary's steps and analysis; nil unless Strategy is StrategyCanary.
	Canary *Canary
}

// Update strategies.
const (
	StrategyRolling   = "rolling"
	StrategyBlueGreen = "blue-green"
)

// Defaults of a service block. Without a health block a server is healthy once it
// accepts TCP connections on its port.
var (
	DefaultHealth = Health{TCP: true, Interval: time.Second, Timeout: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 3, FailureThreshold: 3}
	DefaultUpdate = Update{Strategy: StrategyRolling, MaxSurge: 1, MaxUnavailable: 0, MinHealthy: 2 * time.Second,
		ProgressDeadline: time.Minute, AutoRollback: true, KeepOld: 5 * time.Second}
	DefaultResources = Resources{MemoryBytes: 256 << 20, PIDs: 256}
)

var serviceSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "image", Required: true},
		{Name: "replicas"},
		{Name: "port", Required: true},
		{Name: "listen", Required: true},
		{Name: "command"},
		{Name: "args"},
		{Name: "env"},
		{Name: "writable"},
		{Name: "secret_files"},
		{Name: "user"},
		{Name: "init"},
		{Name: "stop_signal"},
		{Name: "stop_timeout"},
		{Name: "hosts"},
		{Name: "path"},
		{Name: "strip_path"},
		{Name: "drain_timeout"},
		{Name: "access_log"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "resources"}, {Type: "health"}, {Type: "update"}, {Type: "drift"}, {Type: "tls"}},
}

// serviceBlocks are the schemas of the blocks a service block nests, by their path in it.
var serviceBlocks = map[string]*hcl.BodySchema{
	"resources": resourcesSchema, "health": healthSchema, "drift": driftSchema, "tls": tlsSchema,
	"update": updateSchema, "update.step": stepSchema, "update.analysis": analysisSchema, "update.analysis.query": querySchema,
}

// ServiceAttributes lists every attribute a service block takes, nested ones as
// "block.attribute" ("update.analysis.query.max"): for tests that must cover each.
func ServiceAttributes() []string {
	var out []string
	var walk func(prefix string, schema *hcl.BodySchema)
	walk = func(prefix string, schema *hcl.BodySchema) {
		for _, a := range schema.Attributes {
			out = append(out, prefix+a.Name)
		}
		for _, b := range schema.Blocks {
			walk(prefix+b.Type+".", serviceBlocks[prefix+b.Type])
		}
	}
	walk("", serviceSchema)
	return out
}

var driftSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "action"}}}

var resourcesSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "cpu"}, {Name: "memory"}, {Name: "pids"}},
}

var healthSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "http"}, {Name: "tcp"}, {Name: "interval"}, {Name: "timeout"}, {Name: "start_period"},
		{Name: "healthy_threshold"}, {Name: "unhealthy_threshold"}, {Name: "failure_threshold"},
	},
}

var updateSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "strategy"}, {Name: "max_surge"}, {Name: "max_unavailable"}, {Name: "min_healthy"},
		{Name: "progress_deadline"}, {Name: "auto_rollback"}, {Name: "keep_old"}, {Name: "sticky"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "step"}, {Type: "analysis"}}, // a canary's (canary.go)
}

func (d *decoder) service(b *hcl.Block) *Service {
	content, diags := b.Body.Content(serviceSchema)
	d.add(diags)
	a := content.Attributes
	s := &Service{
		Name: b.Labels[0], Replicas: 1, DeclRange: b.DefRange, StopTimeout: DefaultStopTimeout,
		Resources: DefaultResources, Health: DefaultHealth, Update: DefaultUpdate, Drift: DriftReplace,
		Path: "/", StripPath: true, DrainTimeout: DefaultDrainTimeout,
	}
	// where is the range of each attribute and block written, by ValidateService's
	// names, for its problems.
	where := map[string]hcl.Range{}
	note(where, "", a)
	if attr, ok := a["image"]; ok {
		s.Image = d.imageRef(attr)
	}
	if n, ok := d.wholeNumber(a, "", "replicas"); ok {
		s.Replicas = n
	}
	if n, ok := d.wholeNumber(a, "", "port"); ok {
		s.Port = n
	}
	if v, ok := d.str(a, "listen"); ok {
		s.Listen = normalListen(v) // as written when invalid: ValidateService says so
	}
	d.route(a, s)
	if _, ok := a["command"]; ok {
		s.Command = d.strList(a, "command")
	}
	if _, ok := a["args"]; ok {
		s.Args = d.strList(a, "args")
	}
	s.Env, s.SecretEnv = d.secretValues(a, "env")
	if plain, secret := d.secretValues(a, "secret_files"); len(plain)+len(secret) > 0 {
		if len(plain) > 0 {
			d.errorf(a["secret_files"].Expr.Range().Ptr(), "Invalid secret file", "secret_files maps paths to secrets (secret.NAME, or a sensitive variable); for plain files, use a file step of the image.")
		}
		s.SecretFiles = map[string]string{}
		for p, v := range secret {
			s.SecretFiles[d.absPath(a["secret_files"].Expr.Range(), "secret file path", p)] = v
		}
	}
	s.Init = d.boolean(a, "init")
	if sig, ok := d.str(a, "stop_signal"); ok {
		if n := strings.TrimPrefix(strings.ToUpper(sig), "SIG"); !stopSignals[n] {
			d.errorf(a["stop_signal"].Expr.Range().Ptr(), "Invalid stop signal", "stop_signal = %q: use a signal name such as \"SIGTERM\", \"SIGINT\", \"SIGQUIT\", \"SIGHUP\", \"SIGUSR1\" or \"SIGWINCH\".", sig)
		} else {
			s.StopSignal = "SIG" + n
		}
	}
	if v, ok := d.duration(a, "stop_timeout", 0); ok {
		if v > 10*time.Minute {
			d.errorf(a["stop_timeout"].Expr.Range().Ptr(), "Invalid stop timeout", "stop_timeout = %q: at most 10m.", v)
		} else {
			s.StopTimeout = v
		}
	}
	if u, ok := d.str(a, "user"); ok {
		uid, gid, _ := strings.Cut(u, ":")
		if _, err := strconv.ParseUint(uid, 10, 32); err != nil || (gid != "" && !isUint(gid)) {
			d.errorf(a["user"].Expr.Range().Ptr(), "Invalid user", "user = %q: write a numeric \"uid:gid\", like \"65532:65532\", or \"0:0\" to run as root.", u)
		} else {
			s.User = u
		}
	}
	for _, w := range d.strList(a, "writable") {
		s.Writable = append(s.Writable, d.absPath(a["writable"].Expr.Range(), "writable path", w))
	}

	seen := map[string]hcl.Range{}
	for _, sb := range content.Blocks {
		if first, dup := seen[sb.Type]; dup {
			d.errorf(sb.DefRange.Ptr(), "Duplicate "+sb.Type+" block", "A %s block was already declared at %s; a service has at most one.", sb.Type, first)
			continue
		}
		seen[sb.Type] = sb.DefRange
		where[sb.Type] = sb.DefRange
		switch sb.Type {
		case "resources":
			d.resources(sb, &s.Resources)
		case "health":
			d.health(sb, &s.Health, where)
		case "update":
			d.update(sb, &s.Update, where)
		case "drift":
			content, diags := sb.Body.Content(driftSchema)
			d.add(diags)
			note(where, "drift", content.Attributes)
			if v, ok := d.str(content.Attributes, "action"); ok {
				s.Drift = v
			}
		case "tls":
			s.TLS = d.tls(sb, where)
		}
	}
	defaultRedirect(s)
	if d.where == nil {
		d.where = map[*Service]map[string]hcl.Range{}
	}
	d.where[s] = where
	// A value that did not decode is left at its default or zero, which ValidateService
	// may refuse too: the place has its error already.
	decoded := d.diags
	for _, p := range ValidateService(s) {
		if rng, ok := where[p.Attribute]; ok && reported(decoded, rng) {
			continue
		}
		d.errorAt(s, p.Attribute, p.Summary, p.Detail)
	}
	return s
}

// reported reports whether diags has an error at rng.
func reported(diags hcl.Diagnostics, rng hcl.Range) bool {
	return slices.ContainsFunc(diags, func(diag *hcl.Diagnostic) bool {
		return diag.Severity == hcl.DiagError && diag.Subject != nil && *diag.Subject == rng
	})
}

// errorAt reports a problem of service s at the range of attribute (as Problem names
// it, "update.step[1].weight"), else of the nearest block around it that has one
// ("update.step[1]", then "update"), else of the service block.
func (d *decoder) errorAt(s *Service, attribute, summary, detail string) {
	where := d.where[s]
	rng, ok := where[attribute]
	for a := attribute; !ok; {
		i := strings.LastIndex(a, ".")
		if i < 0 {
			rng = s.DeclRange
			break
		}
		a = a[:i]
		rng, ok = where[a]
	}
	d.errorf(&rng, summary, "%s", detail)
}

// note records in where the range of each attribute of a block (prefix its type, ""
// for the service block), as "prefix.name".
func note(where map[string]hcl.Range, prefix string, attrs hcl.Attributes) {
	for name, a := range attrs {
		if prefix != "" {
			name = prefix + "." + name
		}
		where[name] = a.Expr.Range()
	}
}

// wholeNumber decodes one of ValidateService's whole-number attributes (in block
// prefix, "" for the service block). It reports a value that is not a whole number;
// ValidateService, one out of bounds.
func (d *decoder) wholeNumber(a hcl.Attributes, prefix, name string) (int, bool) {
	attribute := name
	if prefix != "" {
		attribute = prefix + "." + name
	}
	i := slices.IndexFunc(wholeNumbers, func(n numberRule) bool { return n.attribute == attribute })
	attr, ok := a[name]
	if !ok || i < 0 {
		return 0, false
	}
	return d.whole(attr, attribute, wholeNumbers[i].lo, wholeNumbers[i].hi)
}

// whole decodes attr, which ValidateService names attribute and bounds by lo and hi,
// as a whole number: it reports a value that is not one, as wholeNumberProblem says.
func (d *decoder) whole(attr *hcl.Attribute, attribute string, lo, hi int) (int, bool) {
	v, ok := d.eval(attr, cty.Number)
	if !ok {
		return 0, false
	}
	bf := v.AsBigFloat()
	n, acc := bf.Int64()
	if !bf.IsInt() || acc != 0 || n < math.MinInt32 || n > math.MaxInt32 {
		p := wholeNumberProblem(attribute, lo, hi)
		d.errorf(attr.Expr.Range().Ptr(), p.Summary, "%s", p.Detail)
		return 0, false
	}
	return int(n), true
}

// imageRef decodes a service's image: image.NAME, or an image of the store named by
// digest ("sha256:..." or "NAME@sha256:...").
func (d *decoder) imageRef(attr *hcl.Attribute) ImageRef {
	rng := attr.Expr.Range()
	if tr, diags := hcl.AbsTraversalForExpr(attr.Expr); !diags.HasErrors() && tr.RootName() == "image" {
		if a, ok := tr[len(tr)-1].(hcl.TraverseAttr); ok && len(tr) == 2 {
			return ImageRef{Image: a.Name, Range: rng}
		}
		d.errorf(&rng, "Invalid image reference", "Refer to an image block as image.NAME.")
		return ImageRef{}
	}
	v, ok := d.str(hcl.Attributes{"image": attr}, "image")
	if !ok {
		return ImageRef{}
	}
	_, dig, _ := strings.Cut(v, "@")
	if dig == "" {
		dig = v
	}
	hex, ok := strings.CutPrefix(dig, "sha256:")
	if !ok || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		d.errorf(&rng, "Invalid image", "%q is neither image.NAME nor a digest (sha256:<64 hex digits>, as `kiln images` shows): services run images by digest, never by tag.", v)
		return ImageRef{}
	}
	return ImageRef{Digest: dig, Range: rng}
}

func (d *decoder) integer(a hcl.Attributes, name string, lo, hi int) (int, bool) {
	attr, ok := a[name]
	if !ok {
		return 0, false
	}
	v, ok := d.eval(attr, cty.Number)
	if !ok {
		return 0, false
	}
	bf := v.AsBigFloat()
	n, acc := bf.Int64()
	if !bf.IsInt() || acc != 0 || n < int64(lo) || n > int64(hi) {
		d.errorf(attr.Expr.Range().Ptr(), "Invalid "+strings.ReplaceAll(name, "_", " "), "%s must be a whole number from %d to %d.", name, lo, hi)
		return 0, false
	}
	return int(n), true
}

func (d *decoder) duration(a hcl.Attributes, name string, min time.Duration) (time.Duration, bool) {
	s, ok := d.str(a, name)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < min {
		d.errorf(a[name].Expr.Range().Ptr(), "Invalid duration", "%s = %q: write a duration of at least %s, like \"500ms\", \"2s\" or \"1m\".", name, s, min)
		return 0, false
	}
	return v, true
}

func (d *decoder) resources(b *hcl.Block, r *Resources) {
	content, diags := b.Body.Content(resourcesSchema)
	d.add(diags)
	a := content.Attributes
	if attr, ok := a["cpu"]; ok {
		if v, ok := d.eval(attr, cty.Number); ok {
			f, _ := v.AsBigFloat().Float64()
			if f <= 0 || f > 1024 {
				d.errorf(attr.Expr.Range().Ptr(), "Invalid cpu", "cpu is a number of cores greater than 0, like 0.5 or 2.")
			} else {
				r.CPUs = f
			}
		}
	}
	if s, ok := d.str(a, "memory"); ok {
		n, err := units.RAMInBytes(s)
		if err != nil || n < 6<<20 {
			d.errorf(a["memory"].Expr.Range().Ptr(), "Invalid memory", "memory = %q: write an amount of at least 6MiB, like \"256MiB\" or \"1GiB\".", s)
		} else {
			r.MemoryBytes = n
		}
	}
	if n, ok := d.integer(a, "pids", 8, 1<<22); ok {
		r.PIDs = int64(n)
	}
}

func (d *decoder) health(b *hcl.Block, h *Health, where map[string]hcl.Range) {
	content, diags := b.Body.Content(healthSchema)
	d.add(diags)
	a := content.Attributes
	note(where, "health", a)
	if p, ok := d.str(a, "http"); ok {
		h.HTTP = p
	}
	h.TCP = d.boolean(a, "tcp")
	if v, ok := d.duration(a, "interval", 100*time.Millisecond); ok {
		h.Interval = v
	}
	if v, ok := d.duration(a, "timeout", 10*time.Millisecond); ok {
		h.Timeout = v
	}
	if v, ok := d.duration(a, "start_period", 0); ok {
		h.StartPeriod = v
	}
	if n, ok := d.wholeNumber(a, "health", "healthy_threshold"); ok {
		h.HealthyThreshold = n
	}
	if n, ok := d.wholeNumber(a, "health", "unhealthy_threshold"); ok {
		h.UnhealthyThreshold = n
	}
	if n, ok := d.integer(a, "failure_threshold", 1, 100); ok {
		h.FailureThreshold = n
	}
}

func (d *decoder) update(b *hcl.Block, u *Update, where map[string]hcl.Range) {
	content, diags := b.Body.Content(updateSchema)
	d.add(diags)
	a := content.Attributes
	note(where, "update", a)
	if s, ok := d.str(a, "strategy"); ok {
		u.Strategy = s
	}
	if n, ok := d.wholeNumber(a, "update", "max_surge"); ok {
		u.MaxSurge = n
	}
	if n, ok := d.wholeNumber(a, "update", "max_unavailable"); ok {
		u.MaxUnavailable = n
	}
	if v, ok := d.duration(a, "min_healthy", 0); ok {
		u.MinHealthy = v
	}
	if v, ok := d.duration(a, "progress_deadline", time.Second); ok {
		u.ProgressDeadline = v
	}
	if _, ok := a["auto_rollback"]; ok {
		u.AutoRollback = d.boolean(a, "auto_rollback")
	}
	if v, ok := d.duration(a, "keep_old", 0); ok {
		u.KeepOld = v
	}
	u.Canary = d.canary(u, content, where)
}

// checkServices reports what only the whole spec can tell: services that name
// undeclared images, and front doors whose routes collide (RouteConflicts).
func (d *decoder) checkServices(cfg *Config) {
	for _, s := range cfg.Services {
		if s.Image.Image != "" && cfg.Image(s.Image.Image) == nil {
			d.errorf(s.Image.Range.Ptr(), "Reference to undeclared image", "There is no image block named %q in this spec.%s", s.Image.Image, didYouMean(s.Image.Image, imageNames(cfg)))
		}
	}
	for _, c := range RouteConflicts(cfg.Services) {
		d.errorAt(cfg.Service(c.Service), c.Attribute, c.Summary, c.Detail)
	}
}

// DefaultStopTimeout is how long a server has to stop before it is killed, as Docker's.
const DefaultStopTimeout = 10 * time.Second

// stopSignals are the signals a server may be asked to stop with.
var stopSignals = map[string]bool{"TERM": true, "INT": true, "QUIT": true, "HUP": true, "USR1": true, "USR2": true, "WINCH": true, "KILL": true}

func isUint(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}
