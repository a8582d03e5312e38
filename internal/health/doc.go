// Package health probes servers (an HTTP GET or a TCP connect) and gates a rollout on
// them; it keeps no state between calls.
package health
