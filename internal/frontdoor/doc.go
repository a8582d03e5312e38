// Package frontdoor keeps each service's front door: a proxy on the service's listen
// address, the servers in its rotation and the health check each passed, and the
// registry of the doors of every service, which never closes a door under its lock.
package frontdoor
