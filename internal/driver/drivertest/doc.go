// Package drivertest is the conformance suite every driver passes, run against the real
// runtime with a real HTTP server image built from examples/hello.
package drivertest
