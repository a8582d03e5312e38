// Package canary judges a canary release: from the front door's per-group counters
// (door.GroupStats) it measures the canary and the stable set over the same window
// (requests, error ratio, p50, p99), checks them against a spec's analysis
// (spec.Analysis) and the business metrics of a Prometheus, and says pass, fail or
// wait. It does no rollout: the rollout executor moves the steps, the engine runs
// the analysis of each one.
package canary
