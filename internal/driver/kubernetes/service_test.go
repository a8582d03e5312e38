package kubernetes_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// A service's traffic: a Service without a selector and an EndpointSlice of exactly
// the rotation kiln sets, replaced in one write; removed with the service.
func TestRotation(t *testing.T) {
	e := start(t, 1)
	ctx := t.Context()
	d := e.open(t, "p", nil)
	endpoints := func() []string {
		t.Helper()
		var s discoveryv1.EndpointSlice
		if err := e.cluster.Do(ctx, "GET", "/apis/discovery.k8s.io/v1/namespaces/"+namespace+"/endpointslices/web-kiln", nil, &s); err != nil {
			t.Fatal(err)
		}
		if s.Labels[discoveryv1.LabelServiceName] != "web" || len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Name != "web" {
			t.Errorf("the slice is not the Service's: labels %v, owners %+v", s.Labels, s.OwnerReferences)
		}
		var out []string
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready == nil || !*ep.Conditions.Ready {
				t.Errorf("endpoint %v is not ready", ep.Addresses)
			}
			for _, a := range ep.Addresses {
				out = append(out, fmt.Sprintf("%s:%d", a, *s.Ports[0].Port))
			}
		}
		slices.Sort(out)
		return out
	}
	blue := []string{"10.244.0.5:8080", "10.244.0.6:8080"}
	if err := d.SetRotation(ctx, "p", "web", 80, blue); err != nil {
		t.Fatal(err)
	}
	var svc corev1.Service
	if err := e.cluster.Do(ctx, "GET", "/api/v1/namespaces/"+namespace+"/services/web", nil, &svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || len(svc.Spec.Selector) != 0 || svc.Spec.Ports[0].Port != 80 || svc.Spec.ClusterIP == "" {
		t.Errorf("Service = %+v, want a ClusterIP Service of port 80 without a selector", svc.Spec)
	}
	if got := endpoints(); !slices.Equal(got, blue) {
		t.Errorf("endpoints = %v, want %v", got, blue)
	}
	green := []string{"10.244.0.7:8080", "10.244.0.8:8080"}
	if err := d.SetRotation(ctx, "p", "web", 80, green); err != nil {
		t.Fatal(err)
	}
	if got := endpoints(); !slices.Equal(got, green) {
		t.Errorf("endpoints after the switch = %v, want %v", got, green)
	}
	if err := d.SetRotation(ctx, "p", "web", 80, nil); err != nil {
		t.Fatal(err)
	}
	if got := endpoints(); len(got) != 0 {
		t.Errorf("endpoints of an empty rotation = %v", got)
	}
	if err := d.SetRotation(ctx, "p", "web", 80, []string{"not-an-address"}); err == nil {
		t.Error("SetRotation took an address that is no IP:port")
	}
	if err := d.RemoveService(ctx, "p", "web"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		errSvc := e.cluster.Do(ctx, "GET", "/api/v1/namespaces/"+namespace+"/services/web", nil, nil)
		errSlice := e.cluster.Do(ctx, "GET", "/apis/discovery.k8s.io/v1/namespaces/"+namespace+"/endpointslices/web-kiln", nil, nil)
		if errSvc != nil && errSlice != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Service or its slice outlived RemoveService: %v, %v", errSvc, errSlice)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := d.RemoveService(ctx, "p", "web"); err != nil {
		t.Errorf("RemoveService of a removed service: %v", err)
	}
}
