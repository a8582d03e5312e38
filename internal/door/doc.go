// Package door is kiln's data path: the front doors of a project's services, served by a
// process of their own (`kiln door`) that the daemon configures over a unix socket and
// that keeps serving the last configuration it was given, from disk after a restart,
// while the daemon is stopped, upgraded or crashed. A door routes requests by listen
// address, host and path prefix to a service's proxy (internal/proxy), checks its
// upstreams' health itself, and pauses or answers for a service in maintenance.
package door
