// Package server is kiln's HTTP API: the handlers the CLI's client talks to, behind a
// bearer token on every route but /healthz.
package server
