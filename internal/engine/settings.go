package engine

import (
	"fmt"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/api"
	"github.com/kiln-build/kiln/internal/plan"
)

// settingChanges lists how new differs from old in the settings of a service that are
// not part of its servers' spec: its front door, health check, update and drift
// settings. Plan shows them (and counts them as changes) because apply records them in
// a new revision and acts on them, though no server is replaced for them. Every field
// of api.Service is either part of the server spec (engine.serverSpec) or compared
// here; TestEverySettingShows holds that true.
func settingChanges(old, new api.Service) []string {
	var out []string
	add := func(name string, o, n any) {
		if o != n {
			out = append(out, fmt.Sprintf("%s %v → %v", name, show(o), show(n)))
		}
	}
	add("listen", old.Listen, new.Listen)
	add("image name", old.ImageName, new.ImageName)
	oh, nh := old.Health, new.Health
	add("health http", oh.HTTP, nh.HTTP)
	add("health tcp", oh.TCP, nh.TCP)
	add("health interval", oh.Interval, nh.Interval)
	add("health timeout", oh.Timeout, nh.Timeout)
	add("health start_period", oh.StartPeriod, nh.StartPeriod)
	add("health healthy_threshold", oh.HealthyThreshold, nh.HealthyThreshold)
	add("health unhealthy_threshold", oh.UnhealthyThreshold, nh.UnhealthyThreshold)
	add("health failure_threshold", oh.FailureThreshold, nh.FailureThreshold)
	ou, nu := old.Update, new.Update
	add("update strategy", ou.Strategy, nu.Strategy)
	add("update max_surge", ou.MaxSurge, nu.MaxSurge)
	add("update max_unavailable", ou.MaxUnavailable, nu.MaxUnavailable)
	add("update min_healthy", ou.MinHealthy, nu.MinHealthy)
	add("update progress_deadline", ou.ProgressDeadline, nu.ProgressDeadline)
	add("update auto_rollback", ou.AutoRollback, nu.AutoRollback)
	add("update keep_old", ou.KeepOld, nu.KeepOld)
	oc, nc := canaryOf(ou), canaryOf(nu)
	add("update steps", canarySteps(oc.Steps), canarySteps(nc.Steps))
	add("update sticky", oc.Sticky, nc.Sticky)
	oa, na := oc.Analysis, nc.Analysis
	add("update analysis interval", oa.Interval, na.Interval)
	add("update analysis min_requests", oa.MinRequests, na.MinRequests)
	add("update analysis max_error_ratio", oa.MaxErrorRatio, na.MaxErrorRatio)
	add("update analysis max_error_ratio_over_stable", oa.MaxErrorRatioOverStable, na.MaxErrorRatioOverStable)
	add("update analysis max_p50", oa.MaxP50, na.MaxP50)
	add("update analysis max_p99", oa.MaxP99, na.MaxP99)
	add("update analysis max_p50_over_stable", oa.MaxP50OverStable, na.MaxP50OverStable)
	add("update analysis max_p99_over_stable", oa.MaxP99OverStable, na.MaxP99OverStable)
	add("update analysis prometheus", oa.Prometheus, na.Prometheus)
	add("update analysis queries", canaryQueries(oa.Queries), canaryQueries(na.Queries))
	add("drift action", cmpDrift(old.Drift), cmpDrift(new.Drift))
	return append(out, plan.DoorChanges(planDoor(old), planDoor(new))...)
}

// planDoor is the part of svc's settings plan.DoorChanges compares.
func planDoor(svc api.Service) plan.Door {
	d := plan.Door{Hosts: svc.Hosts, Path: svc.Path, StripPath: svc.StripPath, DrainTimeout: svc.DrainTimeout, AccessLog: svc.AccessLog}
	if svc.TLS != nil {
		t := plan.DoorTLS(*svc.TLS)
		d.TLS = &t
	}
	return d
}

func cmpDrift(s string) string {
	if s == "" {
		return "replace"
	}
	return s
}

func show(v any) any {
	switch v := v.(type) {
	case string:
		if v == "" {
			return `""`
		}
		return v
	case time.Duration:
		return v.String()
	}
	return v
}

// canaryOf is u's canary settings, the zero value when it has none.
func canaryOf(u api.Update) api.Canary {
	if u.Canary == nil {
		return api.Canary{}
	}
	return *u.Canary
}

// canarySteps shows a canary's steps, as plan does: "5% for 1m → pause until kiln
// promote → 50% for 30s".
func canarySteps(steps []api.CanaryStep) string {
	var out []string
	for _, st := range steps {
		if st.Pause {
			out = append(out, "pause until kiln promote")
		} else {
			out = append(out, fmt.Sprintf("%g%% for %s", st.Weight, st.Duration))
		}
	}
	return strings.Join(out, " → ")
}

// canaryQueries shows a canary's Prometheus queries with their bounds.
func canaryQueries(qs []api.Query) string {
	var out []string
	for _, q := range qs {
		s := fmt.Sprintf("%s: %s", q.Name, q.Query)
		if q.Min != nil {
			s += fmt.Sprintf(" ≥ %g", *q.Min)
		}
		if q.Max != nil {
			s += fmt.Sprintf(" ≤ %g", *q.Max)
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}
