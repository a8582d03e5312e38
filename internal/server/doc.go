// Package server is kiln's HTTP API: the handlers the CLI's client talks to and the
// dashboard's, all declared in one table (routes.go) with the credential each needs.
package server
