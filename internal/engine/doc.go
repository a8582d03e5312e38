// Package engine is what kiln does, behind both the CLI and the HTTP API: plan, apply a
// new revision by rollout (rolling back on failure), roll back, destroy, report status,
// and, on start, resume interrupted rollouts and re-adopt running servers.
package engine
