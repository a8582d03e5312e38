// Package frontdoor keeps each service's front door as the daemon wants it: its
// settings, the servers in its rotation and the health check each passed, and the
// registry of the doors of every service, which configures the door process
// (internal/door) with all of them and never calls it under its lock.
package frontdoor
