// Package kube runs a real Kubernetes control plane on loopback for a test: etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler of one release, and kwok,
// whose fake nodes run pods without containers (for rollouts at scale). The binaries
// are built from the Go module proxy by the module in ./build, once per machine, and
// kept in $XDG_CACHE_HOME/kiln-test/kube-<key>/, key the hash of that module's go.mod
// and go.sum: `go run ./internal/testenv/kube/cmd/kube-build` (25–30 minutes on two
// cores the first time; scripts/test runs it).
package kube
