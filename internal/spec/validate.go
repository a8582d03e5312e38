package spec

import (
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Problem is one rule a service's values break. Attribute is where a spec writes the
// value, "replicas", "health.http" or "update.step[0].weight" (the first step block's;
// a block's name, "update" or "update.step[0]", for a rule on the block); Summary and
// Detail are what kiln validate says.
type Problem struct {
	Attribute string
	Summary   string
	Detail    string
}

// Error is the problem as an API client is told it: kiln validate's message without
// the file position.
func (p Problem) Error() string { return p.Summary + ": " + p.Detail }

// numberRule bounds a whole-number setting of a service.
type numberRule struct {
	attribute string
	lo, hi    int
	value     func(*Service) int
}

// wholeNumbers are the whole-number settings ValidateService checks.
var wholeNumbers = []numberRule{
	{"replicas", 0, 1000, func(s *Service) int { return s.Replicas }},
	{"port", 1, 65535, func(s *Service) int { return s.Port }},
	{"health.healthy_threshold", 1, 100, func(s *Service) int { return s.Health.HealthyThreshold }},
	{"health.unhealthy_threshold", 1, 100, func(s *Service) int { return s.Health.UnhealthyThreshold }},
	{"update.max_surge", 0, 1000, func(s *Service) int { return s.Update.MaxSurge }},
	{"update.max_unavailable", 0, 1000, func(s *Service) int { return s.Update.MaxUnavailable }},
}

// ValidateService checks the rules on a service's values that a spec and the daemon
// share: the daemon checks with it what an API client sends, so that both refuse the
// same service with the same message. It checks the whole numbers (replicas, port,
// thresholds, max_surge, max_unavailable), the listen address, the health check (one
// of http and tcp; http a path), the update strategy and a canary's settings (steps,
// sticky, analysis: validateCanary), the drift action ("" is the default) and the
// front door's settings (hosts, path, drain_timeout, the tls block; a Path of "" is
// "/"). What only a spec's text can get wrong (a duration or amount as written, a
// path) is checked where it is decoded; what only the set of services can get wrong,
// by RouteConflicts. It returns every problem found, none for a valid service.
func ValidateService(s *Service) []Problem {
	var out []Problem
	for _, n := range wholeNumbers {
		if v := n.value(s); v < n.lo || v > n.hi {
			out = append(out, wholeNumberProblem(n.attribute, n.lo, n.hi))
		}
	}
	if !validListen(s.Listen) {
		out = append(out, Problem{"listen", "Invalid listen address", fmt.Sprintf("%q is not a host:port address, like \"127.0.0.1:8080\" or \":8080\".", s.Listen)})
	}
	h := s.Health
	if h.HTTP != "" && !path.IsAbs(h.HTTP) {
		out = append(out, Problem{"health.http", "Invalid health check path", fmt.Sprintf("http = %q must be a path starting with \"/\", like \"/healthz\".", h.HTTP)})
	}
	if (h.HTTP == "") == !h.TCP {
		out = append(out, Problem{"health", "Invalid health check", "Give exactly one of http = \"/path\" or tcp = true."})
	}
	u := s.Update
	strategies := []string{StrategyRolling, StrategyBlueGreen, StrategyCanary}
	if !slices.Contains(strategies, u.Strategy) {
		out = append(out, Problem{"update.strategy", "Invalid update strategy", fmt.Sprintf("strategy = %q: use %q, %q or %q.%s", u.Strategy, StrategyRolling, StrategyBlueGreen, StrategyCanary, didYouMean(u.Strategy, strategies))})
	}
	// An unknown strategy counts as the default, rolling.
	if u.Strategy != StrategyBlueGreen && u.Strategy != StrategyCanary && u.MaxSurge == 0 && u.MaxUnavailable == 0 {
		out = append(out, Problem{"update", "Invalid update settings", "max_surge and max_unavailable are both 0, so a rolling update could never replace a server: raise one of them (max_surge = 1 keeps full capacity)."})
	}
	out = append(out, validateCanary(u)...)
	if s.Drift != "" && s.Drift != DriftReplace && s.Drift != DriftReport {
		out = append(out, Problem{"drift.action", "Invalid drift action", fmt.Sprintf("action = %q: use %q (replace drifted servers) or %q (only record the drift).", s.Drift, DriftReplace, DriftReport)})
	}
	return append(out, validateRoute(s)...)
}

// wholeNumberProblem is what is said of a whole-number attribute out of its bounds, or
// not a whole number.
func wholeNumberProblem(attribute string, lo, hi int) Problem {
	name := attribute[strings.LastIndex(attribute, ".")+1:]
	return Problem{attribute, "Invalid " + strings.ReplaceAll(name, "_", " "), fmt.Sprintf("%s must be a whole number from %d to %d.", name, lo, hi)}
}

// validListen reports whether v is a host:port address with a numeric port (0 picks
// a free one).
func validListen(v string) bool {
	_, port, err := net.SplitHostPort(v)
	n, perr := strconv.Atoi(port)
	return err == nil && perr == nil && n >= 0 && n <= 65535
}
