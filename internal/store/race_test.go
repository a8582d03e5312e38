//go:build race

package store

// raceEnabled: the race detector slows SQLite (transpiled C) about a hundredfold, so
// the kill test makes fewer kills.
const raceEnabled = true
