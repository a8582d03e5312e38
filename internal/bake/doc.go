// Package bake turns the image blocks of a spec into reproducible OCI images: it runs
// each step (go build, copy, file) into a deterministic layer, caches layers by the hash
// of their inputs, keeps images in a local OCI image layout (the store), writes an SBOM
// beside each, and publishes images to a registry or a Docker engine.
package bake
