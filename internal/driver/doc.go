// Package driver is the contract between kiln and a runtime that runs servers (Docker
// now, Kubernetes next): create a server from a server spec, destroy it, and list what
// is running. There is no update: a changed server is a new server.
package driver
