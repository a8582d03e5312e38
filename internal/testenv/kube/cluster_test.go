package kube

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// The control plane is a real one: a ReplicaSet's pods are created by the controller
// manager, scheduled onto kwok's nodes by the scheduler and made Ready by kwok, and a
// deleted pod is replaced.
func TestClusterRunsReplicaSets(t *testing.T) {
	c := Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := c.AddNodes(ctx, 2); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app.kubernetes.io/name": "web"}
	rs := map[string]any{
		"apiVersion": "apps/v1", "kind": "ReplicaSet",
		"metadata": map[string]any{"name": "web", "labels": labels},
		"spec": map[string]any{
			"replicas": 3,
			"selector": map[string]any{"matchLabels": labels},
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels},
				"spec": map[string]any{"containers": []any{map[string]any{
					"name": "web", "image": "kiln.test/web@sha256:" + fmt.Sprintf("%064d", 1)}}},
			},
		},
	}
	if err := c.Do(ctx, http.MethodPost, "/apis/apps/v1/namespaces/default/replicasets", rs, nil); err != nil {
		t.Fatal(err)
	}
	ready := func(obj map[string]any) bool {
		st, _ := obj["status"].(map[string]any)
		n, _ := st["readyReplicas"].(float64)
		return n == 3
	}
	start := time.Now()
	if err := c.Wait(ctx, "/apis/apps/v1/namespaces/default/replicasets/web", ready); err != nil {
		t.Fatalf("3 ready replicas: %v", err)
	}
	t.Logf("3 pods Ready on kwok nodes %s after the ReplicaSet was created", time.Since(start).Round(time.Millisecond))

	var pods struct {
		Items []struct {
			Metadata struct{ Name, UID string }
			Spec     struct{ NodeName string }
		}
	}
	if err := c.Do(ctx, http.MethodGet, "/api/v1/namespaces/default/pods?labelSelector=app.kubernetes.io/name%3Dweb", nil, &pods); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 3 {
		t.Fatalf("%d pods, want 3", len(pods.Items))
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName == "" {
			t.Errorf("pod %s not scheduled", p.Metadata.Name)
		}
	}
	gone := pods.Items[0].Metadata
	if err := c.Do(ctx, http.MethodDelete, "/api/v1/namespaces/default/pods/"+gone.Name+"?gracePeriodSeconds=0", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx, "/api/v1/namespaces/default/pods?labelSelector=app.kubernetes.io/name%3Dweb", func(obj map[string]any) bool {
		items, _ := obj["items"].([]any)
		fresh := 0
		for _, it := range items {
			p, _ := it.(map[string]any)
			meta, _ := p["metadata"].(map[string]any)
			if meta["uid"] != gone.UID && meta["deletionTimestamp"] == nil && ConditionTrue(p, "Ready") {
				fresh++
			}
		}
		return fresh == 3
	}); err != nil {
		t.Fatalf("the deleted pod was not replaced: %v", err)
	}
}

// The real node runs pods: the pause image, pulled from a registry on loopback by the
// node's containerd, Running with an address on the node's bridge.
func TestRealNodeRunsPods(t *testing.T) {
	c := Start(t)
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	start := time.Now()
	c.StartNode(t, host)
	t.Logf("real node Ready in %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "pause"},
		"spec":     map[string]any{"containers": []any{map[string]any{"name": "pause", "image": host + "/kiln-test/pause:1"}}},
	}
	if err := c.Do(ctx, http.MethodPost, "/api/v1/namespaces/default/pods", pod, nil); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	var ip string
	if err := c.Wait(ctx, "/api/v1/namespaces/default/pods/pause", func(obj map[string]any) bool {
		st, _ := obj["status"].(map[string]any)
		ip, _ = st["podIP"].(string)
		return ConditionTrue(obj, "Ready")
	}); err != nil {
		t.Fatalf("the pod never Ready: %v", err)
	}
	t.Logf("pod Ready on the real node in %v, at %s", time.Since(start).Round(time.Millisecond), ip)
	if _, subnet, _ := net.ParseCIDR(PodCIDR); !subnet.Contains(net.ParseIP(ip)) {
		t.Errorf("pod IP %q is not on the node's bridge (%s)", ip, PodCIDR)
	}
}
