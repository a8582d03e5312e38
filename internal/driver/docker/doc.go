// Package docker is the driver that runs servers as containers of a Docker Engine,
// locked down (read-only root, no capabilities, resource limits) and labelled so that
// a restarted kiln finds them again.
package docker
