// Package reconcile runs a level-based reconcile loop: a keyed work queue (a key is
// never handed to two workers at once, and adding a queued key again coalesces),
// periodic resyncs of every key, and retries with per-key exponential backoff.
package reconcile
