// Package api holds the wire types of kiln's HTTP API and the Go client the CLI uses to
// talk to the daemon (kiln serve).
package api
