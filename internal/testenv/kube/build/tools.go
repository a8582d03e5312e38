//go:build tools

// Package build is the module that builds the control plane of kiln's Kubernetes
// tests from the Go module proxy: kube-apiserver, kube-controller-manager,
// kube-scheduler, the kubelet and kube-proxy of one Kubernetes release, and the etcd its module
// requires (cmd/etcd). It is a module of its own so that kiln's stays free of
// Kubernetes' replace directives. internal/testenv/kube builds it and keeps the
// binaries outside the repository, keyed by this module's go.sum.
package build

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
