// Package monitor probes the servers in rotation at their service's health interval,
// with at most one probe in flight per server, and reports a server that fails its
// unhealthy threshold of probes in a row.
package monitor
