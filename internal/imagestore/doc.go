// Package imagestore is kiln's local image store: an OCI image layout in the state
// directory that bake writes and the engine, the CLI and the dashboard read.
package imagestore
