package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/kiln-build/kiln/internal/testenv/kube"
)

// kubeDeployment is the example deployed by kiln onto a real control plane whose nodes
// are kwok's (they run no process: pods are Running and Ready once scheduled), its
// images pushed to a registry on loopback.
type kubeDeployment struct {
	*deployment
	cluster   *kube.Cluster
	namespace string
}

func newKubeDeployment(t *testing.T, nodes int) *kubeDeployment {
	return newKubeDeploymentWith(t, func(c *kube.Cluster, _ string) map[string]string {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := c.AddNodes(ctx, nodes); err != nil {
			t.Fatal(err)
		}
		return nil
	}, nil)
}

// newKubeDeploymentWith is newKubeDeployment with the cluster's nodes made by
// addNodes, given the registry (host:port), which returns more options of the runtime
// block; prepare (unless nil) changes the example's directory before the runtime block
// is added to its kiln.hcl.
func newKubeDeploymentWith(t *testing.T, addNodes func(c *kube.Cluster, registry string) map[string]string, prepare func(dir string)) *kubeDeployment {
	c := kube.Start(t)
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	more := addNodes(c, host)
	b := make([]byte, 3)
	rand.Read(b)
	k := &kubeDeployment{deployment: newDeployment(t), cluster: c, namespace: "kiln-e2e-" + hex.EncodeToString(b)}
	if prepare != nil {
		prepare(k.dir)
	}
	f, err := os.OpenFile(filepath.Join(k.dir, "kiln.hcl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\nruntime \"kubernetes\" {\n  kubeconfig = %q\n  namespace  = %q\n  registry   = %q\n", c.Kubeconfig, k.namespace, host)
	for _, name := range slices.Sorted(maps.Keys(more)) {
		fmt.Fprintf(f, "  %s = %q\n", name, more[name])
	}
	fmt.Fprintf(f, "}\n")
	f.Close()
	return k
}

type podList struct {
	Items []struct {
		Metadata struct {
			Name, UID         string
			Labels            map[string]string
			DeletionTimestamp *time.Time
			OwnerReferences   []struct{ Kind, Name string }
		}
		Spec struct {
			NodeName   string
			Containers []struct{ Image string }
		}
		Status struct{ Phase, PodIP string }
	}
}

// pods are the service's pods that are not being removed, by name: their revision.
func (k *kubeDeployment) pods() map[string]string {
	k.t.Helper()
	var l podList
	if err := k.cluster.Do(k.t.Context(), "GET", "/api/v1/namespaces/"+k.namespace+"/pods?labelSelector=kiln.dev/service="+k.service, nil, &l); err != nil {
		k.t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range l.Items {
		if p.Metadata.DeletionTimestamp == nil {
			out[p.Metadata.Name] = p.Metadata.Labels["kiln.dev/revision"]
		}
	}
	return out
}

type rsList struct {
	Items []struct {
		Metadata struct {
			Name            string
			Labels          map[string]string
			OwnerReferences []struct{ Kind, Name string }
		}
		Spec struct{ Replicas int }
	}
}

// sets are the service's ReplicaSets: their size by revision.
func (k *kubeDeployment) sets() map[string]int {
	k.t.Helper()
	var l rsList
	if err := k.cluster.Do(k.t.Context(), "GET", "/apis/apps/v1/namespaces/"+k.namespace+"/replicasets?labelSelector=kiln.dev/service="+k.service, nil, &l); err != nil {
		k.t.Fatal(err)
	}
	out := map[string]int{}
	for _, rs := range l.Items {
		if len(rs.Metadata.OwnerReferences) != 1 || rs.Metadata.OwnerReferences[0].Kind != "ConfigMap" {
			k.t.Errorf("ReplicaSet %s is owned by %+v, want its service's ConfigMap", rs.Metadata.Name, rs.Metadata.OwnerReferences)
		}
		out[rs.Metadata.Labels["kiln.dev/revision"]] = rs.Spec.Replicas
	}
	return out
}

// endpoints are the pod IPs behind the service's Service (its kiln-written
// EndpointSlice), sorted; the pods' IPs by name come from podIPs.
func (k *kubeDeployment) endpoints() []string {
	k.t.Helper()
	var s struct {
		Endpoints []struct{ Addresses []string }
	}
	if err := k.cluster.Do(k.t.Context(), "GET", "/apis/discovery.k8s.io/v1/namespaces/"+k.namespace+"/endpointslices/"+k.service+"-kiln", nil, &s); err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, ep := range s.Endpoints {
		out = append(out, ep.Addresses...)
	}
	slices.Sort(out)
	return out
}

// podIPs are the IPs of the service's pods of revision rev, sorted.
func (k *kubeDeployment) podIPs(rev string) []string {
	k.t.Helper()
	var l podList
	if err := k.cluster.Do(k.t.Context(), "GET", "/api/v1/namespaces/"+k.namespace+"/pods?labelSelector=kiln.dev/service="+k.service, nil, &l); err != nil {
		k.t.Fatal(err)
	}
	var out []string
	for _, p := range l.Items {
		if p.Metadata.Labels["kiln.dev/revision"] == rev && p.Metadata.DeletionTimestamp == nil {
			out = append(out, p.Status.PodIP)
		}
	}
	slices.Sort(out)
	return out
}

func (k *kubeDeployment) waitFor(what string, timeout time.Duration, cond func() bool) {
	k.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			k.t.Fatalf("after %v: %s; pods %v, sets %v\nevents:\n%s", timeout, what, k.pods(), k.sets(), k.events())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestKubernetesLifecycle: the example's kiln.hcl, with a runtime block and no other
// change, deployed onto a cluster: a ReplicaSet per revision owned by the service's
// ConfigMap, pods by digest from the registry; a rolling update, a blue-green switch, a
// version that cannot be scheduled rolled back automatically; with kiln stopped a
// deleted pod comes back (the ReplicaSet), and a restarted kiln re-adopts every pod
// without replacing one.
func TestKubernetesLifecycle(t *testing.T) {
	k := newKubeDeployment(t, 3)
	k.startDaemon("revision 1 deployed", "up")
	if got := k.sets(); len(got) != 1 || got["1"] != 2 {
		t.Fatalf("ReplicaSets after up = %v, want revision 1 of size 2", got)
	}
	first := k.pods()
	if len(first) != 2 {
		t.Fatalf("pods after up = %v, want 2", first)
	}
	var l podList
	k.cluster.Do(t.Context(), "GET", "/api/v1/namespaces/"+k.namespace+"/pods?labelSelector=kiln.dev/service="+k.service, nil, &l)
	for _, p := range l.Items {
		if img := p.Spec.Containers[0].Image; !strings.Contains(img, "/kiln@sha256:") {
			t.Errorf("pod %s runs %q, want an image by digest from the registry", p.Metadata.Name, img)
		}
	}
	st := k.status()
	if len(st.Services) != 1 || st.Services[0].Healthy != 2 || len(st.Services[0].Servers) != 2 {
		t.Fatalf("kiln status = %+v, want 2 healthy servers", st)
	}
	// The Service carries exactly kiln's rotation.
	k.waitFor("the Service's endpoints to be revision 1's pods", 10*time.Second, func() bool {
		return slices.Equal(k.endpoints(), k.podIPs("1"))
	})
	if out := k.kiln(nil, "status").stdout; !strings.Contains(out, "NODE") || !strings.Contains(out, "kwok-") || !strings.Contains(out, "10.244.") {
		t.Errorf("kiln status does not show each pod's IP and node:\n%s", out)
	}

	// A rolling update: a new revision's set grows as the old one shrinks.
	start := time.Now()
	k.kiln([]string{"KILN_VAR_version=v2"}, "apply")
	k.waitFor("revision 2 serving alone", 2*time.Minute, func() bool {
		s := k.sets()
		return len(s) == 1 && s["2"] == 2 && len(k.pods()) == 2
	})
	t.Logf("rolling update of 2 pods on kwok: %v", time.Since(start).Round(time.Millisecond))
	if ev := k.events(); !strings.Contains(ev, "revision 2 is deployed") {
		t.Errorf("no deployed event for revision 2:\n%s", ev)
	}

	// A blue-green switch: the new set at full size before the old one goes.
	editSpec(t, k.dir, `strategy          = "rolling"`, `strategy          = "blue-green"`)
	start = time.Now()
	if r := k.kiln([]string{"KILN_VAR_version=v3"}, "apply"); r.code != 0 {
		t.Fatalf("blue-green apply: %d\n%s", r.code, r.stderr)
	}
	k.waitFor("revision 3 serving alone", 2*time.Minute, func() bool {
		s := k.sets()
		return len(s) == 1 && s["3"] == 2 && len(k.pods()) == 2
	})
	t.Logf("blue-green switch of 2 pods on kwok: %v", time.Since(start).Round(time.Millisecond))
	k.waitFor("the Service's endpoints to be revision 3's pods", 10*time.Second, func() bool {
		return slices.Equal(k.endpoints(), k.podIPs("3"))
	})

	// A version no node can take: its pods stay Pending, the progress deadline passes,
	// and kiln rolls back to revision 3 on its own.
	editSpec(t, k.dir, `progress_deadline = "30s"`, `progress_deadline = "4s"`)
	editSpec(t, k.dir, `writable = ["/tmp"]`, "writable = [\"/tmp\"]\n  resources {\n    memory = \"900GiB\"\n  }")
	r := k.kiln([]string{"KILN_VAR_version=v4"}, "apply")
	if r.code == 0 {
		t.Errorf("apply of an unschedulable version succeeded:\n%s", r.stdout)
	}
	k.waitFor("revision 4 rolled back", 2*time.Minute, func() bool {
		s := k.sets()
		return len(s) == 1 && s["3"] == 2 && len(k.pods()) == 2 && !slices.Contains(mapsValues(k.pods()), "4")
	})
	ev := k.events()
	t.Logf("events of the failed version:\n%s", ev[max(0, strings.Index(ev, "revision 4 recorded")):])
	if !strings.Contains(ev, "revision 4 failed and was rolled back; revision 3 is serving") || !strings.Contains(ev, "Insufficient memory") {
		t.Errorf("no rollback event saying why revision 4 failed (no node has the memory):\n%s", ev)
	}

	// kiln stopped: the ReplicaSet keeps the fleet; a deleted pod comes back.
	k.stopDaemon(syscall.SIGTERM)
	before := k.pods()
	var victim string
	for name := range before {
		victim = name
		break
	}
	if err := k.cluster.Do(t.Context(), "DELETE", "/api/v1/namespaces/"+k.namespace+"/pods/"+victim, nil, nil); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	k.waitFor("the deleted pod replaced by its ReplicaSet", time.Minute, func() bool {
		p := k.pods()
		_, gone := p[victim]
		return len(p) == 2 && !gone
	})
	t.Logf("with kiln stopped, a deleted pod replaced in %v", time.Since(start).Round(time.Millisecond))
	adopted := k.pods()
	k.startDaemon("kiln serve: API", "serve")
	k.waitFor("kiln to see 2 healthy servers", time.Minute, func() bool {
		st := k.status()
		return len(st.Services) == 1 && st.Services[0].Healthy == 2
	})
	time.Sleep(2 * time.Second) // a resync of the controller, which would replace a pod it did not own
	if now := k.pods(); !mapsEqual(now, adopted) {
		t.Errorf("a restarted kiln changed the pods: %v, were %v", now, adopted)
	}

	// Drift: kubectl set image on a pod; the pod is replaced and the event says what
	// changed and who changed it.
	for name := range adopted {
		victim = name
		break
	}
	setImage := map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "server",
		"image": "registry.example/other@sha256:" + strings.Repeat("b", 64)}}}}
	start = time.Now()
	if err := k.cluster.DoWith(t.Context(), k.cluster.Token, "PATCH", "/api/v1/namespaces/"+k.namespace+"/pods/"+victim+"?fieldManager=kubectl-set",
		"application/strategic-merge-patch+json", setImage, nil); err != nil {
		t.Fatal(err)
	}
	k.waitFor("the pod whose image was set by hand replaced", time.Minute, func() bool {
		p := k.pods()
		_, still := p[victim]
		return !still && len(p) == 2 && strings.Contains(k.events(), "replacing server "+victim+": drift")
	})
	t.Logf("kubectl set image on a pod: detected and the pod replaced in %v", time.Since(start).Round(time.Millisecond))
	if ev := k.events(); !strings.Contains(ev, "drift in server "+victim+": config: the pod runs registry.example/other@sha256:") || !strings.Contains(ev, "(by kubectl-set)") {
		t.Errorf("no drift event naming the image and who set it:\n%s", ev)
	}

	// kubectl scale of the revision's ReplicaSet: kiln takes the size back.
	start = time.Now()
	if err := k.cluster.DoWith(t.Context(), k.cluster.Token, "PATCH", "/apis/apps/v1/namespaces/"+k.namespace+"/replicasets/"+k.service+"-r3/scale?fieldManager=kubectl",
		"application/merge-patch+json", map[string]any{"spec": map[string]any{"replicas": 4}}, nil); err != nil {
		t.Fatal(err)
	}
	k.waitFor("the scaled set back at 2", time.Minute, func() bool {
		return k.sets()["3"] == 2 && len(k.pods()) == 2 && strings.Contains(k.events(), "was changed by kubectl (.spec.replicas, by the scale subresource (kubectl scale))")
	})
	t.Logf("kubectl scale of the set: detected and the size taken back in %v", time.Since(start).Round(time.Millisecond))

	// kiln destroy leaves nothing of the service on the cluster but its owner.
	if r := k.kiln(nil, "destroy", k.service); r.code != 0 {
		t.Fatalf("kiln destroy: %d\n%s", r.code, r.stderr)
	}
	k.waitFor("no pod, set or Service of the service left", time.Minute, func() bool {
		err := k.cluster.Do(t.Context(), "GET", "/api/v1/namespaces/"+k.namespace+"/services/"+k.service, nil, nil)
		return len(k.pods()) == 0 && len(k.sets()) == 0 && err != nil && strings.Contains(err.Error(), "404")
	})
}

func mapsValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
