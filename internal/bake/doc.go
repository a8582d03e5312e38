// Package bake turns the image blocks of a spec into reproducible OCI images: it runs
// each step (go build, copy, file) into a deterministic layer, caches layers by the hash
// of their inputs, writes the images and an SBOM beside each into the image store
// (internal/imagestore), and pushes images to a registry.
package bake
