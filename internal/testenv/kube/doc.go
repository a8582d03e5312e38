// Package kube runs a real Kubernetes control plane on loopback for a test: etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler of one release, with
// kwok, whose fake nodes run pods without containers (for rollouts at scale), and a
// real node (StartNode): a kubelet on a containerd of its own, and kube-proxy, whose
// pods serve for real. The binaries are built from the Go module proxy by the module
// in ./build, once per machine, and kept in $XDG_CACHE_HOME/kiln-test/kube-<key>/,
// key the hash of that module's go.mod and go.sum: `go run
// ./internal/testenv/kube/cmd/kube-build` (6–8 minutes on two cores the first time;
// scripts/test runs it).
package kube
