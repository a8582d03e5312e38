// Package resolve turns a spec's services into the services the daemon takes, each with
// the digest of its image, baked or found in the image store: the one resolution behind
// kiln apply, plan and up, and behind pipelines.
package resolve
