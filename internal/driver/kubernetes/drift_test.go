package kubernetes_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/drivertest"
	"github.com/kiln-build/kiln/internal/driver/kubernetes"
	"github.com/kiln-build/kiln/internal/testenv/kube"
)

// eventually polls cond every 100ms until it holds, failing t after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s: %s", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func joined(drifts []driver.Drift) string {
	var parts []string
	for _, d := range drifts {
		parts = append(parts, string(d.Kind)+": "+d.Detail)
	}
	return strings.Join(parts, "; ")
}

// runningSet pushes the suite's image and makes a set of service, revision 1, of n
// members, returning once all n run.
func runningSet(t *testing.T, d *kubernetes.Driver, service string, n int) (driver.ServerSpec, []driver.Server) {
	t.Helper()
	ctx := t.Context()
	img := drivertest.HelloImage(t)
	if err := d.EnsureImage(ctx, img.Digest, func() (v1.Image, error) { return img.Image, nil }); err != nil {
		t.Fatal(err)
	}
	spec := driver.ServerSpec{Project: "p", Service: service, Revision: 1, Image: img.Digest, Port: 8080, Resources: driver.DefaultResources}
	if err := d.EnsureSet(ctx, spec, n); err != nil {
		t.Fatal(err)
	}
	var members []driver.Server
	eventually(t, 30*time.Second, fmt.Sprintf("%d running members", n), func() (bool, string) {
		members, _ = d.Members(ctx, driver.SetOf(spec))
		running := 0
		for _, m := range members {
			if m.State == driver.StateRunning {
				running++
			}
		}
		return running == n, fmt.Sprint(members)
	})
	return spec, members
}

// Drift on a cluster: the admission policy kiln installs denies exec, attach,
// port-forward and ephemeral containers to all but the break-glass group; what gets
// through, or is done with kubectl's other verbs, Diff names with who did it.
func TestDrift(t *testing.T) {
	e := start(t, 2)
	ctx := t.Context()
	d := e.open(t, "p", nil)
	spec, members := runningSet(t, d, "web", 3)
	ref := driver.SetOf(spec)
	diff := func(s driver.Server) string {
		t.Helper()
		drifts, err := d.Diff(ctx, s)
		if err != nil {
			t.Fatalf("Diff(%s): %v", s.ID, err)
		}
		return joined(drifts)
	}
	for _, m := range members {
		if got := diff(m); got != "" {
			t.Errorf("a fresh member drifts: %s", got)
		}
	}
	pod := "/api/v1/namespaces/" + namespace + "/pods/" + string(members[0].ID)
	c := e.cluster

	// Prevented: exec, attach, port-forward, for an admin too; not for break-glass.
	for _, sub := range []string{"exec?command=id&stdout=true", "attach?stdout=true", "portforward?ports=8080"} {
		eventually(t, 20*time.Second, "the policy denies "+sub, func() (bool, string) {
			err := c.DoWith(ctx, c.Token, "POST", pod+"/"+sub, "application/json", nil, nil)
			return err != nil && strings.Contains(err.Error(), kubernetes.DeniedMessage), fmt.Sprint(err)
		})
		err := c.DoWith(ctx, c.BreakGlassToken, "POST", pod+"/"+sub, "application/json", nil, nil)
		if err != nil && strings.Contains(err.Error(), kubernetes.DeniedMessage) {
			t.Errorf("%s by a member of %s: %v, want it let through", sub, kube.BreakGlassGroup, err)
		}
	}
	// One that the restricted profile lets through, so that only the policy stops it.
	debug := map[string]any{"spec": map[string]any{"ephemeralContainers": []any{map[string]any{
		"name": "debugger", "image": "busybox", "targetContainerName": "server",
		"securityContext": map[string]any{"allowPrivilegeEscalation": false, "runAsNonRoot": true, "runAsUser": 1000,
			"capabilities": map[string]any{"drop": []string{"ALL"}}}}}}}
	err := c.DoWith(ctx, c.Token, "PATCH", pod+"/ephemeralcontainers?fieldManager=kubectl-debug", "application/strategic-merge-patch+json", debug, nil)
	if err == nil || !strings.Contains(err.Error(), kubernetes.DeniedMessage) {
		t.Errorf("an ephemeral container by an admin: %v, want it denied", err)
	}
	// Detected: a break-glass debug container.
	if err := c.DoWith(ctx, c.BreakGlassToken, "PATCH", pod+"/ephemeralcontainers?fieldManager=kubectl-debug", "application/strategic-merge-patch+json", debug, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "Diff after kubectl debug", func() (bool, string) {
		got := diff(members[0])
		return strings.Contains(got, "exec: an ephemeral container debugger (busybox) was added") && strings.Contains(got, "kubectl-debug"), got
	})

	// kubectl set image on a pod.
	other := "registry.example/other@sha256:" + strings.Repeat("b", 64)
	setImage := map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "server", "image": other}}}}
	if err := c.DoWith(ctx, c.Token, "PATCH", "/api/v1/namespaces/"+namespace+"/pods/"+string(members[1].ID)+"?fieldManager=kubectl-set",
		"application/strategic-merge-patch+json", setImage, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "Diff after kubectl set image", func() (bool, string) {
		got := diff(members[1])
		return strings.Contains(got, "config: the pod runs "+other) && strings.Contains(got, "(by kubectl-set)"), got
	})

	// kubectl scale of the ReplicaSet: every member says so, until kiln's next apply
	// takes the size back.
	rs := "/apis/apps/v1/namespaces/" + namespace + "/replicasets/web-r1"
	if err := c.DoWith(ctx, c.Token, "PATCH", rs+"/scale?fieldManager=kubectl", "application/merge-patch+json",
		map[string]any{"spec": map[string]any{"replicas": 5}}, nil); err != nil {
		t.Fatal(err)
	}
	want := "set: its ReplicaSet web-r1 was changed by kubectl (.spec.replicas, by the scale subresource (kubectl scale))"
	// A ReplicaSet read for a diff serves its members' diffs for a second.
	eventually(t, 10*time.Second, "Diff after kubectl scale", func() (bool, string) {
		got := diff(members[2])
		return strings.Contains(got, want), got
	})
	if err := d.EnsureSet(ctx, spec, 3); err != nil {
		t.Fatal(err)
	}
	if got := diff(members[2]); strings.Contains(got, "ReplicaSet") {
		t.Errorf("Diff after kiln applied its set again = %q, want no drift of the set", got)
	}
	sets, _ := d.Sets(ctx, driver.Selector{Service: "web"})
	if len(sets) != 1 || sets[0].Replicas != 3 {
		t.Errorf("the set after kiln's apply = %+v, want size 3", sets)
	}

	// A pod relabelled out of its set (one of those the set kept when it shrank back).
	eventually(t, 30*time.Second, "the set back at 3 members", func() (bool, string) {
		members, _ = d.Members(ctx, ref)
		return len(members) == 3, fmt.Sprint(members)
	})
	relabelled := members[0]
	relabel := map[string]any{"metadata": map[string]any{"labels": map[string]any{"kiln.dev/revision": "99"}}}
	if err := c.DoWith(ctx, c.Token, "PATCH", "/api/v1/namespaces/"+namespace+"/pods/"+string(relabelled.ID)+"?fieldManager=kubectl-label",
		"application/merge-patch+json", relabel, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the relabelled pod's drift", func() (bool, string) {
		got := diff(relabelled)
		return strings.Contains(got, "the pod was taken out of its ReplicaSet (relabelled) (by kubectl-label)"), got
	})
	ctx2, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d.DeleteSet(ctx2, ref)
	d.Destroy(ctx2, relabelled.ID)
}
