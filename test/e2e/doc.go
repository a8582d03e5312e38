// Package e2e drives the kiln binary as a user would, against a real Docker engine, a
// real registry and real git clones. Run with `go test ./test/e2e`.
package e2e
