// Package daemon starts kiln's daemon for a state directory (its PID file, tokens,
// API listener, runtime driver, state store, engine and API server) and stops those
// parts in order.
package daemon
