package api

import "time"

// Service is the fully resolved desired state of one service: what a revision records.
type Service struct {
	Name      string            `json:"name"`
	Image     string            `json:"image"` // manifest digest in the local image store
	ImageName string            `json:"image_name"`
	Replicas  int               `json:"replicas"`
	Port      int               `json:"port"`
	Listen    string            `json:"listen"`
	Command   []string          `json:"command,omitempty"`
	Args      []string          `json:"args,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	// SecretEnv and SecretFiles (by absolute path in the server) are the service's
	// secrets; see SecretValue.
	SecretEnv   map[string]SecretValue `json:"secret_env,omitempty"`
	SecretFiles map[string]SecretValue `json:"secret_files,omitempty"`
	// User runs the servers as "uid[:gid]"; "" means the image's user, or 65532 when
	// the image names none.
	User string `json:"user,omitempty"`
	// Init, StopSignal and StopTimeout: see spec.Service.
	Init        bool          `json:"init,omitempty"`
	StopSignal  string        `json:"stop_signal,omitempty"`
	StopTimeout time.Duration `json:"stop_timeout,omitempty"`
	Writable    []string      `json:"writable,omitempty"`
	Resources   Resources     `json:"resources"`
	Health      Health        `json:"health"`
	Update      Update        `json:"update"`
	Drift       string        `json:"drift,omitempty"` // "replace" (default) or "report"

	// The front door's settings for the service: none is part of its servers' spec,
	// and each zero value is the door as it was before they existed (every host, every
	// path, plain HTTP). See spec.Service for the rules.
	//
	// Hosts are the host names the door routes to the service (lowercase ASCII, a
	// leading "*." for one label of wildcard); none routes every host. Path is the
	// prefix of the paths it routes ("" is "/"); StripPath removes it before a request
	// is forwarded. Of the routes of one address, the door picks by host (exact name,
	// then wildcard, then a service without hosts), then by the longest path prefix.
	Hosts     []string `json:"hosts,omitempty"`
	Path      string   `json:"path,omitempty"`
	StripPath bool     `json:"strip_path,omitempty"`
	// DrainTimeout is how long the door lets the requests, streams and WebSockets to a
	// server leaving its rotation finish: 0 is DefaultDrainTimeout, NoDrain (or any
	// negative value) none. Drain returns the duration meant.
	DrainTimeout time.Duration `json:"drain_timeout,omitempty"`
	// AccessLog has the door log one structured (JSON) line per request.
	AccessLog bool `json:"access_log,omitempty"`
	// TLS, when set, has the door serve HTTPS on Listen.
	TLS *TLS `json:"tls,omitempty"`
}

// DefaultDrainTimeout is the drain a zero Service.DrainTimeout means; NoDrain is none.
const (
	DefaultDrainTimeout = 30 * time.Second
	NoDrain             = time.Duration(-1)
)

// Drain is how long the door waits for the requests to a server leaving its rotation:
// DrainTimeout with its zero and negative values read.
func (s Service) Drain() time.Duration {
	switch {
	case s.DrainTimeout == 0:
		return DefaultDrainTimeout
	case s.DrainTimeout < 0:
		return 0
	}
	return s.DrainTimeout
}

// TLS is how a service's door serves HTTPS: with the certificate and key in CertFile
// and KeyFile (PEM, absolute paths, read by the door), or with certificates an ACME CA
// issues for the service's Hosts.
type TLS struct {
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	ACME     bool   `json:"acme,omitempty"`
	// ACMEEmail is the contact given to the CA ("" gives none); ACMEDirectory the CA's
	// directory URL (set whenever ACME is: the spec fills in Let's Encrypt's
	// production one); ACMERoots a PEM file (absolute) of the CAs trusted for the ACME
	// server's own HTTPS, "" for the system's.
	ACMEEmail     string `json:"acme_email,omitempty"`
	ACMEDirectory string `json:"acme_directory,omitempty"`
	ACMERoots     string `json:"acme_roots,omitempty"`
	// RedirectHTTP is a plain-HTTP address (host:port) whose requests the door
	// redirects to HTTPS on Listen; "" for none. The spec's default is already applied
	// (the listen host's port 80 when Listen's port is 443).
	RedirectHTTP string `json:"redirect_http,omitempty"`
	// NoRedirect turns off the redirects to HTTPS: of plain HTTP on Listen itself, and
	// (RedirectHTTP is then "") of another address.
	NoRedirect bool `json:"no_redirect,omitempty"`
	// HSTS, when positive, is the max-age of the Strict-Transport-Security header the
	// door adds to its HTTPS answers; 0 adds none.
	HSTS time.Duration `json:"hsts,omitempty"`
}

// SecretValue is one secret of a service. A client sends Template (the spec's value,
// with placeholders for secret blocks; see spec.ExpandSecrets); the daemon resolves it
// and keeps only Digest (a keyed digest: equal values, equal digests) and Sealed (the
// value encrypted with the state directory's key). A Template is never stored, and
// nothing the API returns holds one.
type SecretValue struct {
	Template string `json:"template,omitempty"`
	Digest   string `json:"digest,omitempty"`
	Sealed   string `json:"sealed,omitempty"`
}

// SecretSource is a secret block: where the daemon reads a secret's value, exactly one
// of File, Env (the daemon's environment) and Command (run in Dir).
type SecretSource struct {
	Name    string   `json:"name"`
	File    string   `json:"file,omitempty"`
	Env     string   `json:"env,omitempty"`
	Command []string `json:"command,omitempty"`
	Dir     string   `json:"dir,omitempty"`
}

type Resources struct {
	CPUs        float64 `json:"cpus,omitempty"`
	MemoryBytes int64   `json:"memory_bytes"`
	PIDs        int64   `json:"pids"`
}

type Health struct {
	HTTP               string        `json:"http,omitempty"`
	TCP                bool          `json:"tcp,omitempty"`
	Interval           time.Duration `json:"interval"`
	Timeout            time.Duration `json:"timeout"`
	StartPeriod        time.Duration `json:"start_period"`
	HealthyThreshold   int           `json:"healthy_threshold"`
	UnhealthyThreshold int           `json:"unhealthy_threshold"`
	FailureThreshold   int           `json:"failure_threshold,omitempty"`
}

type Update struct {
	Strategy         string        `json:"strategy"`
	MaxSurge         int           `json:"max_surge"`
	MaxUnavailable   int           `json:"max_unavailable"`
	MinHealthy       time.Duration `json:"min_healthy"`
	ProgressDeadline time.Duration `json:"progress_deadline"`
	AutoRollback     bool          `json:"auto_rollback"`
	KeepOld          time.Duration `json:"keep_old"`
	// Canary is set for the canary strategy (see spec.Canary).
	Canary *Canary `json:"canary,omitempty"`
}

// Canary is a canary update's steps and analysis; see spec.Canary.
type Canary struct {
	Steps    []CanaryStep `json:"steps"`
	Sticky   string       `json:"sticky,omitempty"`
	Analysis Analysis     `json:"analysis"`
}

// CanaryStep is one step of a canary; see spec.CanaryStep.
type CanaryStep struct {
	Weight   float64       `json:"weight,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	Pause    bool          `json:"pause,omitempty"`
}

// Analysis is what a canary must show at each step; see spec.Analysis.
type Analysis struct {
	Interval                time.Duration `json:"interval"`
	MinRequests             int           `json:"min_requests"`
	MaxErrorRatio           float64       `json:"max_error_ratio,omitempty"`
	MaxErrorRatioOverStable float64       `json:"max_error_ratio_over_stable,omitempty"`
	MaxP50                  time.Duration `json:"max_p50,omitempty"`
	MaxP99                  time.Duration `json:"max_p99,omitempty"`
	MaxP50OverStable        time.Duration `json:"max_p50_over_stable,omitempty"`
	MaxP99OverStable        time.Duration `json:"max_p99_over_stable,omitempty"`
	Prometheus              string        `json:"prometheus,omitempty"`
	Queries                 []Query       `json:"queries,omitempty"`
}

// Query is a canary's Prometheus query; see spec.Query.
type Query struct {
	Name  string   `json:"name"`
	Query string   `json:"query"`
	Max   *float64 `json:"max,omitempty"`
	Min   *float64 `json:"min,omitempty"`
}

// Pipeline is a pipeline's definition as applied (see spec.Pipeline).
type Pipeline struct {
	Name          string        `json:"name"`
	Repo          string        `json:"repo"`
	Branch        string        `json:"branch"`
	Poll          time.Duration `json:"poll"`
	Services      []string      `json:"services"`
	Promote       []string      `json:"promote,omitempty"`
	WebhookSecret string        `json:"webhook_secret,omitempty"`
	// Webhook says whether the pipeline takes webhooks (its secret is never shown).
	Webhook     bool          `json:"webhook,omitempty"`
	TestTimeout time.Duration `json:"test_timeout"`
	Checks      []Check       `json:"checks,omitempty"`
	// SpecPath is the spec file's path inside the repository.
	SpecPath string `json:"spec_path"`
	// Vars are the variables set (by -var or KILN_VAR_) when the pipeline was applied;
	// each commit's spec is evaluated with them. Like WebhookSecret and Secrets, the
	// API never returns them.
	Vars map[string]string `json:"vars,omitempty"`
	// Sensitive names the variables the applied spec declared sensitive: they stay
	// sensitive in every commit's spec.
	Sensitive []string `json:"sensitive,omitempty"`
	// Secrets are the applied spec's secret blocks: a commit's spec may refer to them
	// by name but never says where they come from.
	Secrets []SecretSource `json:"secrets,omitempty"`
}

// Check is a test of candidate servers: an HTTP expectation or a host command.
type Check struct {
	Name    string   `json:"name"`
	Path    string   `json:"path,omitempty"`
	Status  int      `json:"status,omitempty"`
	Body    string   `json:"body,omitempty"`
	Command []string `json:"command,omitempty"`
}

// TriggerRequest asks a pipeline to run a commit (the branch's head when empty).
type TriggerRequest struct {
	Commit string `json:"commit,omitempty"`
}

// PlanRequest asks what applying Services would do.
type PlanRequest struct {
	Services []Service `json:"services"`
	// Secrets are the secret blocks the services' SecretValue templates refer to.
	Secrets []SecretSource `json:"secrets,omitempty"`
	// Prune plans the removal of services the daemon runs that are not in Services.
	Prune bool `json:"prune"`
	// Runtime is the runtime the spec names (its runtime block), "" when it names
	// none: a daemon that runs servers on another refuses the request.
	Runtime string `json:"runtime,omitempty"`
}

// ApplyRequest records a new revision of each changed service and rolls it out.
type ApplyRequest struct {
	Services []Service      `json:"services"`
	Secrets  []SecretSource `json:"secrets,omitempty"`
	Prune    bool           `json:"prune"`
	Source   string         `json:"source"` // the spec file, recorded with each revision
	Commit   string         `json:"commit,omitempty"`
	User     string         `json:"user"`
	// Detach returns as soon as the revisions are recorded; the rollouts go on.
	Detach bool `json:"detach"`
	// Pipelines are recorded and started (or updated) as given.
	Pipelines []Pipeline `json:"pipelines,omitempty"`
	// Runtime is as PlanRequest's.
	Runtime string `json:"runtime,omitempty"`
}

// RollbackRequest rolls a service back to revision To, or to the last deployed revision
// before the current one when To is 0.
type RollbackRequest struct {
	To     int64  `json:"to"`
	User   string `json:"user"`
	Detach bool   `json:"detach"`
}

// Message is one line of the NDJSON stream that apply, rollback and destroy answer with:
// events as they happen, then one result.
type Message struct {
	Type   string  `json:"type"` // "event" or "result"
	Event  *Event  `json:"event,omitempty"`
	Result *Result `json:"result,omitempty"`
}

// Event is something that happened to a service or a server.
type Event struct {
	ID   int64     `json:"id"`
	Time time.Time `json:"time"`
	// Kind is the subject's kind (SubjectService, SubjectPipeline) and Service its name.
	Kind     string `json:"kind,omitempty"`
	Service  string `json:"service"`
	ServerID string `json:"server_id,omitempty"`
	// RolloutID is the rollout the event is a step of, 0 for none.
	RolloutID int64  `json:"rollout_id,omitempty"`
	Type      string `json:"type"` // one of the Event* types
	// Step names the event as a rollout's step, Tone its colour (see EventTypeInfo).
	Step    string `json:"step,omitempty"`
	Tone    string `json:"tone,omitempty"`
	Message string `json:"message"`
}

// Result is the outcome of an apply, rollback or destroy.
type Result struct {
	OK       bool            `json:"ok"`
	Services []ServiceResult `json:"services"`
}

// ServiceResult is what happened to one service.
type ServiceResult struct {
	Service  string `json:"service"`
	Revision int64  `json:"revision"`
	Changed  bool   `json:"changed"` // false: the revision already ran and nothing was done
	Outcome  string `json:"outcome"` // deployed, failed, rolled_back, destroyed, pending (detached)
	Detail   string `json:"detail,omitempty"`
	URL      string `json:"url,omitempty"`
}

// Status is the state of every service.
type Status struct {
	Services []ServiceStatus `json:"services"`
}

type ServiceStatus struct {
	Name      string   `json:"name"`
	Revision  int64    `json:"revision"`
	Image     string   `json:"image"`
	ImageName string   `json:"image_name"`
	URL       string   `json:"url"`
	Replicas  int      `json:"replicas"`
	Healthy   int      `json:"healthy"` // servers in rotation (a canary's are not counted)
	Servers   []Server `json:"servers"`
	Rollout   string   `json:"rollout,omitempty"` // the running rollout, if any
	// Canary is the service's canary: on trial now, or the last one, with its outcome.
	Canary *CanaryStatus `json:"canary,omitempty"`
	State  string        `json:"state"` // healthy, healing, degraded, rolling out
	// Cause says why a service is degraded or healing: the last failure, with the
	// server's exit code and last log lines when it exited.
	Cause string `json:"cause,omitempty"`
	Drift string `json:"drift,omitempty"` // the last drift found, if any
	// HealthPath is the path of the current revision's HTTP health check ("" for a TCP
	// check): the dashboard hides the log lines of these requests.
	HealthPath string `json:"health_path,omitempty"`
}

// CanaryStatus is a canary's trial as it stands: its step, its share of the requests,
// its figures beside the stable set's over the step so far, and the last judgement.
type CanaryStatus struct {
	Revision int64 `json:"revision"` // on trial
	From     int64 `json:"from"`     // the stable set's
	Step     int   `json:"step"`     // from 1
	Steps    int   `json:"steps"`
	// Weight is the canary's share of the requests (percent); Pause, that the step
	// waits for kiln promote.
	Weight       float64        `json:"weight"`
	Pause        bool           `json:"pause,omitempty"`
	Servers      int            `json:"servers"`
	StepStarted  time.Time      `json:"step_started"`
	StepDuration time.Duration  `json:"step_duration,omitempty"`
	Canary       CanaryFigures  `json:"canary"`
	Stable       CanaryFigures  `json:"stable"`
	Metrics      []CanaryMetric `json:"metrics,omitempty"`
	Decision     string         `json:"decision"` // the last judgement: pass, fail or wait
	Why          []string       `json:"why,omitempty"`
	Outcome      string         `json:"outcome,omitempty"` // once over: promoted, aborted or failed
}

// CanaryFigures are one side's measurements over a canary's step so far.
type CanaryFigures struct {
	Requests   uint64        `json:"requests"`
	Errors     uint64        `json:"errors"`
	ErrorRatio float64       `json:"error_ratio"`
	P50        time.Duration `json:"p50"`
	P99        time.Duration `json:"p99"`
}

// CanaryMetric is a Prometheus query's last result in a canary's analysis.
type CanaryMetric struct {
	Name  string   `json:"name"`
	Value float64  `json:"value"`
	Max   *float64 `json:"max,omitempty"`
	Min   *float64 `json:"min,omitempty"`
	Error string   `json:"error,omitempty"`
}

type Server struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Revision  int64     `json:"revision"`
	Address   string    `json:"address"`
	Node      string    `json:"node,omitempty"` // the machine it runs on, on a runtime of several (a Kubernetes node)
	State     string    `json:"state"`
	InService bool      `json:"in_service"`
	Canary    bool      `json:"canary,omitempty"` // in service as the canary
	Created   time.Time `json:"created"`
	SpecHash  string    `json:"spec_hash"`
	// Health is "healthy" (in rotation), "failing" (its last checks failed),
	// "stopping" (out of rotation, being stopped and removed) or "waiting" (not
	// admitted yet).
	Health string `json:"health"`
	Drift  string `json:"drift,omitempty"` // the last drift found in it, if any
}

// Sample is a front door's traffic over one interval.
type Sample struct {
	Time     time.Time `json:"time"` // the interval's end
	Requests int64     `json:"requests"`
	Errors   int64     `json:"errors"` // answered 5xx
}

// Revision is one entry of a service's history.
type Revision struct {
	Number    int64     `json:"number"`
	Image     string    `json:"image"`
	ImageName string    `json:"image_name"`
	Created   time.Time `json:"created"`
	AppliedBy string    `json:"applied_by"`
	Commit    string    `json:"commit,omitempty"`
	Outcome   string    `json:"outcome"`
	Detail    string    `json:"detail,omitempty"`
	Current   bool      `json:"current"`
	// Rollback is set on a revision a rollback recorded: which revision it went back
	// to, and who rolled back.
	Rollback *RollbackRecord `json:"rollback,omitempty"`
	// RollbackTarget marks the revision a rollback with no revision given (kiln
	// rollback SERVICE, RollbackRequest.To 0) goes back to: at most one revision of a
	// history, none when there is nothing to roll back to.
	RollbackTarget bool `json:"rollback_target,omitempty"`
}

// RollbackRecord is what a revision recorded by a rollback says of it.
type RollbackRecord struct {
	To int64  `json:"to"` // the revision it went back to
	By string `json:"by"` // who rolled back (RollbackRequest.User)
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// Run is a pipeline run: one commit through bake, test, deploy and promote.
type Run struct {
	ID       int64     `json:"id"`
	Pipeline string    `json:"pipeline"`
	Commit   string    `json:"commit"`
	Message  string    `json:"message,omitempty"`
	Trigger  string    `json:"trigger"`
	State    string    `json:"state"` // queued, running, succeeded, failed, superseded, interrupted
	Detail   string    `json:"detail,omitempty"`
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Stages   []Stage   `json:"stages,omitempty"`
}

// Stage is one stage of a run, with its log.
type Stage struct {
	Name     string    `json:"name"`
	State    string    `json:"state"`
	Log      string    `json:"log,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
}

// PauseRequest pauses a service's front door; see Client.Pause.
type PauseRequest struct {
	Maintenance string `json:"maintenance,omitempty"`
}

// CanaryRequest promotes or aborts a service's canary; User is who, for the record.
type CanaryRequest struct {
	User string `json:"user,omitempty"`
}
