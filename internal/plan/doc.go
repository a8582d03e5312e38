// Package plan computes what must happen to make the servers a runtime reports match
// the desired state: which servers to create, replace and destroy, and why. Compute is
// pure (no I/O, no clock); kiln plan, kiln apply, healing and drift detection all use it.
package plan
