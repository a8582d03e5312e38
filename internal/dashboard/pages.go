package dashboard

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/engine"
	"github.com/kiln-build/kiln/internal/store"
)

// perPage is how many rows a list shows at once.
const perPage = 50

// pager is one page of a list.
type pager struct {
	Page, Pages, From, To, Total int
	Prev, Next                   string
}

// paginate returns the page of items that ?page= asks for.
func paginate[T any](items []T, u *url.URL, per int) ([]T, pager) {
	return paginateBy(items, u, per, "page")
}

// paginateBy is paginate with the page number in ?key=, for pages with several lists.
func paginateBy[T any](items []T, u *url.URL, per int, key string) ([]T, pager) {
	p := pager{Total: len(items), Pages: max(1, (len(items)+per-1)/per)}
	p.Page, _ = strconv.Atoi(u.Query().Get(key))
	p.Page = min(max(p.Page, 1), p.Pages)
	lo, hi := (p.Page-1)*per, min(p.Page*per, len(items))
	p.From, p.To = lo+1, hi
	if p.Page > 1 {
		p.Prev = query(u, key, strconv.Itoa(p.Page-1))
	}
	if p.Page < p.Pages {
		p.Next = query(u, key, strconv.Itoa(p.Page+1))
	}
	return items[lo:hi], p
}

// sortBy sorts items by the key ?sort= names ("-key" descending), falling back to def.
func sortBy[T any](items []T, u *url.URL, def string, keys map[string]func(a, b T) int) string {
	key := u.Query().Get("sort")
	desc := strings.HasPrefix(key, "-")
	f := keys[strings.TrimPrefix(key, "-")]
	if f == nil {
		key, desc, f = def, false, keys[def]
	}
	slices.SortStableFunc(items, func(a, b T) int {
		if desc {
			return f(b, a)
		}
		return f(a, b)
	})
	return key
}

// ---- fleet

type fleetRow struct {
	api.ServiceStatus
	Traffic []api.Sample
	Cause   string // why it is degraded or healing, if known
}

type fleetData struct {
	URL                                  *url.URL
	Rows                                 []fleetRow
	Pager                                pager
	Q, Sort                              string
	Services, Servers, Healthy, Drifting int
	Rolling                              int
}

func (d *Dashboard) fleet(r *http.Request, s *session) (view, error) {
	st, err := d.eng.Status(r.Context())
	if err != nil {
		return view{}, err
	}
	data := fleetData{URL: r.URL, Q: strings.TrimSpace(r.URL.Query().Get("q"))}
	var rows []fleetRow
	for _, ss := range st.Services {
		data.Services++
		data.Servers += len(ss.Servers)
		data.Healthy += ss.Healthy
		if ss.Drift != "" {
			data.Drifting++
		}
		if ss.Rollout != "" {
			data.Rolling++
		}
		if data.Q != "" && !strings.Contains(ss.Name, data.Q) && !strings.Contains(ss.ImageName, data.Q) {
			continue
		}
		rows = append(rows, fleetRow{ServiceStatus: ss, Traffic: d.eng.Traffic(ss.Name), Cause: d.cause(r.Context(), ss)})
	}
	data.Sort = sortBy(rows, r.URL, "name", map[string]func(a, b fleetRow) int{
		"name":  func(a, b fleetRow) int { return strings.Compare(a.Name, b.Name) },
		"state": func(a, b fleetRow) int { return strings.Compare(a.State, b.State) },
		"health": func(a, b fleetRow) int {
			return cmp.Compare(ratio(a.Healthy, a.Replicas), ratio(b.Healthy, b.Replicas))
		},
		"servers": func(a, b fleetRow) int { return cmp.Compare(len(a.Servers), len(b.Servers)) },
	})
	data.Rows, data.Pager = paginate(rows, r.URL, perPage)
	return view{Template: "fleet", Title: "Fleet", Live: "*", Poll: 10000, Data: data}, nil
}

// cause says why a service is degraded or healing: the status's Cause, or, from an
// engine that does not say, the last crash-loop event of a degraded service.
func (d *Dashboard) cause(ctx context.Context, ss api.ServiceStatus) string {
	if ss.Cause != "" || ss.State != "degraded" {
		return ss.Cause
	}
	evs, err := d.eng.QueryEvents(ctx, store.EventQuery{Service: ss.Name, Type: "degraded", Limit: 1})
	if err != nil || len(evs) == 0 {
		return ""
	}
	return evs[0].Message
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

// ---- service

type serviceData struct {
	URL        *url.URL
	Name       string
	Status     *api.ServiceStatus // nil once destroyed
	Traffic    []api.Sample
	Servers    []api.Server
	Pager      pager
	Sort       string
	Filter     string
	Rollout    *rolloutView
	History    []api.Revision
	RollbackTo int64 // the revision a plain rollback goes to (History's RollbackTarget); 0 if none
	Drift      []api.Event
	Cause      string // why the service is degraded or healing, if known
	Logs       []string
	LogsError  string
	// HideChecks hides the log lines of health-check requests (?health_checks=show
	// shows them); Hidden is how many were hidden.
	HideChecks bool
	Hidden     int
}

// rolloutView is a rollout with the steps it took, from its events: the last
// maxSteps of them, and how many of each kind there were in all.
type rolloutView struct {
	store.Rollout
	Running bool
	Steps   []api.Event
	Earlier int // steps before those shown
	Counts  []stepCount
}

type stepCount struct {
	Type string
	N    int
}

const maxSteps = 40

func (d *Dashboard) service(r *http.Request, s *session) (view, error) {
	ctx := r.Context()
	name := r.PathValue("name")
	data := serviceData{URL: r.URL, Name: name, Filter: r.URL.Query().Get("health")}
	st, err := d.eng.Status(ctx)
	if err != nil {
		return view{}, err
	}
	for i := range st.Services {
		if st.Services[i].Name == name {
			data.Status = &st.Services[i]
		}
	}
	data.History, err = d.eng.History(ctx, name)
	if err != nil {
		return view{}, err // not found: no such service, ever
	}
	if data.Status != nil {
		data.Traffic = d.eng.Traffic(name)
		servers := slices.Clone(data.Status.Servers)
		if data.Filter != "" {
			servers = slices.DeleteFunc(servers, func(v api.Server) bool { return v.Health != data.Filter })
		}
		data.Sort = sortBy(servers, r.URL, "name", map[string]func(a, b api.Server) int{
			"name":     func(a, b api.Server) int { return strings.Compare(a.Name, b.Name) },
			"revision": func(a, b api.Server) int { return cmp.Compare(a.Revision, b.Revision) },
			"state":    func(a, b api.Server) int { return strings.Compare(a.State, b.State) },
			"health":   func(a, b api.Server) int { return strings.Compare(a.Health, b.Health) },
			"age":      func(a, b api.Server) int { return b.Created.Compare(a.Created) },
		})
		data.Servers, data.Pager = paginate(servers, r.URL, perPage)
		data.RollbackTo = rollbackTarget(data.History)
		data.Cause = d.cause(ctx, *data.Status)
		data.HideChecks = !showChecks(r.URL.Query())
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		// More lines than shown: health checks may be most of them.
		data.Logs, err = d.eng.RecentLogs(lctx, name, 5*maxLogLines)
		cancel()
		if err != nil {
			data.LogsError = err.Error()
		}
		if data.HideChecks {
			paths := healthPaths(*data.Status)
			before := len(data.Logs)
			data.Logs = slices.DeleteFunc(data.Logs, func(l string) bool { return mentionsAny(l, paths) })
			data.Hidden = before - len(data.Logs)
		}
		data.Logs = data.Logs[max(0, len(data.Logs)-maxLogLines):]
	}
	if rs, err := d.eng.Rollouts(ctx, name); err == nil && len(rs) > 0 {
		data.Rollout, err = d.rolloutView(ctx, rs[0])
		if err != nil {
			return view{}, err
		}
	}
	data.Drift, err = d.eng.QueryEvents(ctx, store.EventQuery{Service: name, Type: "drift", Limit: 20})
	if err != nil {
		return view{}, err
	}
	poll := 10000
	if data.Status != nil && data.Status.Canary != nil && data.Status.Canary.Outcome == "" {
		poll = 1000 // a canary's figures change every second
	}
	return view{Template: "service", Title: name, Live: name, Poll: poll, Data: data}, nil
}

// maxLogLines is how many of the servers' last lines the service page shows.
const maxLogLines = 100

// showChecks reports whether the page asks for health-check log lines. The form sends
// health_checks=show from a hidden field and health_checks=hide from its checkbox, so
// an unchecked box (which browsers do not send) still says something; with no
// parameter at all, they are hidden.
func showChecks(q url.Values) bool {
	v := q["health_checks"]
	return len(v) > 0 && !slices.Contains(v, "hide")
}

// usualHealthPaths are hidden when the status does not name the service's own.
var usualHealthPaths = []string{"/healthz", "/health", "/livez", "/readyz"}

func healthPaths(ss api.ServiceStatus) []string {
	if ss.HealthPath != "" {
		return []string{ss.HealthPath}
	}
	return usualHealthPaths
}

// mentionsAny reports whether line names one of paths as a whole path: "GET /healthz
// HTTP/1.1" and path=/healthz?x=1 do, /healthz2 and /api/healthz do not.
func mentionsAny(line string, paths []string) bool {
	for _, p := range paths {
		for i := 0; ; {
			j := strings.Index(line[i:], p)
			if j < 0 {
				break
			}
			at, end := i+j, i+j+len(p)
			if (at == 0 || !pathByte(line[at-1])) && (end == len(line) || !pathByte(line[end])) {
				return true
			}
			i = at + 1
		}
	}
	return false
}

// pathByte reports whether b may be part of a URL path.
func pathByte(b byte) bool {
	return b == '/' || b == '-' || b == '_' || b == '.' || b == '~' || b == '%' ||
		'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
}

func (d *Dashboard) rolloutView(ctx context.Context, ro store.Rollout) (*rolloutView, error) {
	v := &rolloutView{Rollout: ro, Running: ro.State == store.RolloutRunning}
	evs, err := d.eng.QueryEvents(ctx, store.EventQuery{Kind: api.SubjectService, RolloutID: ro.ID, Limit: 500})
	if err != nil {
		return nil, err
	}
	inWindow := func(api.Event) bool { return true }
	if len(evs) == 0 {
		// Recorded before events named their rollout: the service's events of its time.
		evs, err = d.eng.QueryEvents(ctx, store.EventQuery{Service: ro.Service, After: ro.Started.Add(-time.Second), Limit: 500})
		if err != nil {
			return nil, err
		}
		inWindow = func(ev api.Event) bool {
			return ev.Kind != api.SubjectPipeline && !ev.Time.Before(ro.Started.Add(-500*time.Millisecond)) &&
				(ro.Finished.IsZero() || !ev.Time.After(ro.Finished.Add(500*time.Millisecond)))
		}
	}
	for i := len(evs) - 1; i >= 0; i-- {
		ev := evs[i]
		if api.EventTypeInfo(ev.Type).Step == "" || !inWindow(ev) {
			continue
		}
		v.Steps = append(v.Steps, ev)
		if i := slices.IndexFunc(v.Counts, func(c stepCount) bool { return c.Type == ev.Type }); i >= 0 {
			v.Counts[i].N++
		} else {
			v.Counts = append(v.Counts, stepCount{ev.Type, 1})
		}
	}
	if len(v.Steps) > maxSteps {
		v.Earlier = len(v.Steps) - maxSteps
		v.Steps = v.Steps[v.Earlier:]
	}
	return v, nil
}

// ---- events

type eventsData struct {
	URL                  *url.URL
	Events               []api.Event
	Service, Type, Since string
	Services, Types      []string
	Older, Newest        string
	SinceChoices         []string
}

var sinceChoices = map[string]time.Duration{"15m": 15 * time.Minute, "1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour}

func (d *Dashboard) events(r *http.Request, s *session) (view, error) {
	ctx := r.Context()
	q := r.URL.Query()
	data := eventsData{URL: r.URL, Service: q.Get("service"), Type: q.Get("type"), Since: q.Get("since"),
		SinceChoices: []string{"15m", "1h", "24h", "7d"}}
	eq := store.EventQuery{Service: data.Service, Type: data.Type, Limit: 100 + 1}
	if d, ok := sinceChoices[data.Since]; ok {
		eq.After = time.Now().Add(-d)
	}
	eq.Before, _ = strconv.ParseInt(q.Get("before"), 10, 64)
	evs, err := d.eng.QueryEvents(ctx, eq)
	if err != nil {
		return view{}, err
	}
	if len(evs) > 100 {
		evs = evs[:100]
		data.Older = query(r.URL, "before", strconv.FormatInt(evs[len(evs)-1].ID, 10))
	}
	if eq.Before > 0 {
		data.Newest = query(r.URL, "before", "")
	}
	data.Events = evs
	if data.Types, err = d.eng.EventTypes(ctx); err != nil {
		return view{}, err
	}
	st, err := d.eng.Status(ctx)
	if err != nil {
		return view{}, err
	}
	for _, ss := range st.Services {
		data.Services = append(data.Services, ss.Name)
	}
	if ps, err := d.opts.Pipelines.Pipelines(ctx); err == nil {
		for _, p := range ps {
			data.Services = append(data.Services, p.Name)
		}
	}
	slices.Sort(data.Services)
	data.Services = slices.Compact(data.Services)
	live := "*"
	if eq.Before > 0 {
		live = "" // an older page does not change
	} else if data.Service != "" {
		live = data.Service
	}
	return view{Template: "events", Title: "Events", Live: live, Data: data}, nil
}

// ---- pipelines and runs

type pipelinesData struct {
	URL       *url.URL
	Pipelines []pipelineRows
}

type pipelineRows struct {
	api.Pipeline
	Runs  []api.Run
	Pager pager
}

func (d *Dashboard) pipelines(r *http.Request, s *session) (view, error) {
	ctx := r.Context()
	ps, err := d.opts.Pipelines.Pipelines(ctx)
	if err != nil {
		return view{}, err
	}
	data := pipelinesData{URL: r.URL}
	for _, p := range ps {
		runs, err := d.opts.Pipelines.Runs(ctx, p.Name)
		if err != nil {
			return view{}, err
		}
		pr := pipelineRows{Pipeline: p}
		pr.Runs, pr.Pager = paginateBy(runs, r.URL, 20, "page-"+p.Name)
		for i, run := range pr.Runs { // with their stages, for the summary
			if sts, err := d.opts.Pipelines.RunStages(ctx, run.ID); err == nil {
				pr.Runs[i].Stages = sts
			}
		}
		data.Pipelines = append(data.Pipelines, pr)
	}
	return view{Template: "pipelines", Title: "Pipelines", Live: "*", Data: data}, nil
}

func (d *Dashboard) run(r *http.Request, s *session) (view, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return view{}, httpError{http.StatusNotFound, "a run is named by its number"}
	}
	run, err := d.opts.Pipelines.Run(r.Context(), id)
	if err != nil {
		return view{}, err
	}
	return view{Template: "run", Title: fmt.Sprintf("Run %d", id), Live: run.Pipeline, Data: run}, nil
}

// ---- images

type imagesData struct {
	URL    *url.URL
	Q      string
	Images []engine.Image
	Pager  pager
}

func (d *Dashboard) images(r *http.Request, s *session) (view, error) {
	imgs, err := d.eng.Images(r.Context())
	if err != nil {
		return view{}, err
	}
	data := imagesData{URL: r.URL, Q: strings.TrimSpace(r.URL.Query().Get("q"))}
	if data.Q != "" {
		imgs = slices.DeleteFunc(imgs, func(i engine.Image) bool {
			return !strings.Contains(i.Name, data.Q) && !strings.Contains(i.Digest, data.Q) && !strings.HasPrefix(i.Revision, data.Q)
		})
	}
	data.Images, data.Pager = paginate(imgs, r.URL, perPage)
	return view{Template: "images", Title: "Images", Data: data}, nil
}

type sbomData struct {
	Digest     string
	Name       string
	Components []sbomComponent
	JSON       string
}

type sbomComponent struct {
	Type    string `json:"type"`
	Name    string `json:"name"`
	Version string `json:"version"`
	PURL    string `json:"purl"`
}

func (d *Dashboard) sbom(r *http.Request, s *session) (view, error) {
	digest := r.PathValue("digest")
	var b bytes.Buffer
	if err := d.eng.SBOM(digest, &b); err != nil {
		return view{}, err
	}
	var doc struct {
		Metadata struct {
			Component sbomComponent `json:"component"`
		} `json:"metadata"`
		Components []sbomComponent `json:"components"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		return view{}, fmt.Errorf("the SBOM of %s is not CycloneDX JSON: %w", digest, err)
	}
	var pretty bytes.Buffer
	json.Indent(&pretty, b.Bytes(), "", "  ")
	return view{Template: "sbom", Title: "SBOM of " + short(digest), Data: sbomData{Digest: digest, Name: doc.Metadata.Component.Name,
		Components: doc.Components, JSON: pretty.String()}}, nil
}

// ---- changes: each has a confirmation page (GET) and the change (POST)

type confirmData struct {
	Action  string // rollback, destroy, trigger
	Name    string
	From    int64
	To      int64
	Servers int
	Branch  string
	Repo    string
}

func (d *Dashboard) confirmRollback(r *http.Request, s *session) (view, error) {
	name := r.PathValue("name")
	hist, err := d.eng.History(r.Context(), name)
	if err != nil {
		return view{}, err
	}
	data := confirmData{Action: "rollback", Name: name}
	for _, rev := range hist {
		if rev.Current {
			data.From = rev.Number
		}
	}
	data.To, _ = strconv.ParseInt(r.URL.Query().Get("to"), 10, 64)
	if data.To == 0 {
		data.To = rollbackTarget(hist)
	}
	if data.To == 0 {
		return view{}, httpError{http.StatusConflict, fmt.Sprintf("service %s has no earlier deployed revision to roll back to", name)}
	}
	return view{Template: "confirm", Title: "Roll back " + name, Data: data}, nil
}

// rollbackTarget is the revision the engine rolls back to when given none, as the
// history marks it; 0 if none.
func rollbackTarget(hist []api.Revision) int64 {
	for _, rev := range hist {
		if rev.RollbackTarget {
			return rev.Number
		}
	}
	return 0
}

func (d *Dashboard) rollback(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	name := r.PathValue("name")
	to, err := strconv.ParseInt(r.PostFormValue("to"), 10, 64)
	if err != nil || to <= 0 {
		return "", httpError{http.StatusBadRequest, "which revision to roll back to is missing"}
	}
	// Detached: the rollout runs under the daemon, and the service page shows it live.
	if _, err := d.eng.Rollback(context.WithoutCancel(r.Context()), name, api.RollbackRequest{To: to, User: "dashboard", Detach: true}); err != nil {
		return "", err
	}
	return "/services/" + url.PathEscape(name), nil
}

// steer is the handler of a service page's promote and abort buttons: f is the
// engine's.
func (d *Dashboard) steer(f func(ctx context.Context, service, user string) error) func(http.ResponseWriter, *http.Request, *session) (string, error) {
	return func(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
		name := r.PathValue("name")
		if err := f(r.Context(), name, "dashboard"); err != nil {
			return "", httpError{http.StatusConflict, err.Error()}
		}
		return "/services/" + url.PathEscape(name), nil
	}
}

func (d *Dashboard) confirmDestroy(r *http.Request, s *session) (view, error) {
	name := r.PathValue("name")
	st, err := d.eng.Status(r.Context())
	if err != nil {
		return view{}, err
	}
	for _, ss := range st.Services {
		if ss.Name == name {
			return view{Template: "confirm", Title: "Destroy " + name, Data: confirmData{Action: "destroy", Name: name, From: ss.Revision, Servers: len(ss.Servers)}}, nil
		}
	}
	return view{}, httpError{http.StatusNotFound, fmt.Sprintf("no service %q is running", name)}
}

func (d *Dashboard) destroy(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	name := r.PathValue("name")
	if r.PostFormValue("confirm") != name {
		return "", httpError{http.StatusBadRequest, fmt.Sprintf("type the service's name (%s) to confirm that it is to be destroyed", name)}
	}
	if _, err := d.eng.Destroy(context.WithoutCancel(r.Context()), name); err != nil {
		return "", err
	}
	return "/", nil
}

func (d *Dashboard) confirmTrigger(r *http.Request, s *session) (view, error) {
	name := r.PathValue("name")
	ps, err := d.opts.Pipelines.Pipelines(r.Context())
	if err != nil {
		return view{}, err
	}
	for _, p := range ps {
		if p.Name == name {
			return view{Template: "confirm", Title: "Run " + name, Data: confirmData{Action: "trigger", Name: name, Branch: p.Branch, Repo: p.Repo}}, nil
		}
	}
	return view{}, httpError{http.StatusNotFound, fmt.Sprintf("no pipeline %q", name)}
}

func (d *Dashboard) trigger(w http.ResponseWriter, r *http.Request, s *session) (string, error) {
	run, err := d.opts.Pipelines.Trigger(context.WithoutCancel(r.Context()), r.PathValue("name"), "", "manual (dashboard)")
	switch {
	case errors.Is(err, store.ErrRunExists) && run.ID == 0:
		return "/pipelines", nil // the head commit has its run already
	case err != nil && !errors.Is(err, store.ErrRunExists):
		return "", err
	}
	return fmt.Sprintf("/runs/%d", run.ID), nil
}
