package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/kiln-build/kiln/internal/testenv/kube"
)

// secondService is a second service of the example's image, listening at the variable
// second_listen.
func secondService(name string) string {
	return `variable "second_listen" {
  default = "127.0.0.1:8081"
}

service "` + name + `" {
  image    = image.hello
  replicas = 1
  port     = 8080
  listen   = var.second_listen

  health {
    http = "/healthz"
  }
}

`
}

// serviceURL is the URL of the service's Service, at its cluster IP (which kube-proxy
// carries to the pods in the Service's endpoints).
func (k *kubeDeployment) serviceURL() string {
	k.t.Helper()
	var svc struct {
		Spec struct {
			ClusterIP string
			Ports     []struct{ Port int }
		}
	}
	if err := k.cluster.Do(k.t.Context(), "GET", "/api/v1/namespaces/"+k.namespace+"/services/"+k.service, nil, &svc); err != nil {
		k.t.Fatal(err)
	}
	if svc.Spec.ClusterIP == "" || len(svc.Spec.Ports) == 0 {
		k.t.Fatalf("the Service has no cluster IP or port: %+v", svc.Spec)
	}
	return fmt.Sprintf("http://%s:%d", svc.Spec.ClusterIP, svc.Spec.Ports[0].Port)
}

// getBody is the body of a GET of url, "" after an error.
func getBody(url string) string {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// exec runs command in the pod's server container through the API server (SPDY, as
// kubectl does) with token, and returns what it printed.
func (k *kubeDeployment) exec(token, pod string, command ...string) (string, error) {
	cfg := &rest.Config{Host: k.cluster.Server, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAFile: k.cluster.CAFile}}
	q := "container=server&stdout=true&stderr=true"
	for _, c := range command {
		q += "&command=" + c
	}
	u, err := url.Parse(k.cluster.Server + "/api/v1/namespaces/" + k.namespace + "/pods/" + pod + "/exec?" + q)
	if err != nil {
		return "", err
	}
	ex, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(k.t.Context(), 30*time.Second)
	defer cancel()
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
	return stdout.String() + stderr.String(), err
}

// applyUnderLoad applies the example's version under load through the Service at
// svcURL (what is the strategy's name for the logs), and waits for the Service to carry
// revision rev alone; no request may fail.
func (k *kubeDeployment) applyUnderLoad(svcURL, what, version, rev string) {
	k.t.Helper()
	load := startLoadAt(svcURL, 4, 4*time.Millisecond)
	start := time.Now()
	if r := k.kiln([]string{"KILN_VAR_version=" + version}, "apply"); r.code != 0 {
		k.t.Fatalf("%s: kiln apply: %d\n%s", what, r.code, r.stderr)
	}
	k.t.Logf("%s of 2 pods on the real node: %v", what, time.Since(start).Round(time.Millisecond))
	k.waitFor("the Service to carry revision "+rev+" alone", 10*time.Second, func() bool {
		return slices.Equal(k.endpoints(), k.podIPs(rev))
	})
	load.finish(k.t, what+" through the Service")
}

// waitReplaced waits until pod victim (what it is, for the failure) is gone, two pods
// serve, and the Service carries them (revision 3's) alone.
func (k *kubeDeployment) waitReplaced(what, victim string, timeout time.Duration) {
	k.t.Helper()
	k.waitFor(what+" replaced", timeout, func() bool {
		p := k.pods()
		_, still := p[victim]
		return !still && len(p) == 2 && slices.Equal(k.endpoints(), k.podIPs("3"))
	})
}

// anyPod is one of pods' names.
func anyPod(pods map[string]string) string {
	for name := range pods {
		return name
	}
	return ""
}

// TestKubernetesRealNode: the example's kiln.hcl on a cluster whose node is real (a
// kubelet on containerd, kube-proxy): its pods pull kiln's image from a registry on
// loopback and serve; requests through the Service's cluster IP see no failure through a
// rolling update, a blue-green switch and a version whose readiness probe fails (the
// kubelet's probe) rolled back; an exec is refused by kiln's admission policy, and one
// through the break-glass group is found in the API server's audit log and the pod
// replaced (also one made while kiln is down, once it is back), and so is a pod whose
// writable layer a hand on the node wrote to (the
// kubelet's summary), still without a failed request.
func TestKubernetesRealNode(t *testing.T) {
	// The same kiln.hcl, with a second service, on Docker first (without the runtime
	// block), then on the cluster.
	docker := newDeployment(t)
	second := docker.service + "-two"
	secondListen := freePort(t)
	editSpec(t, docker.dir, `service "`+docker.service+`"`, secondService(second)+`service "`+docker.service+`"`)
	docker.env = append(docker.env, "KILN_VAR_second_listen="+secondListen)
	docker.startDaemon("revision 1 deployed", "up")
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(getBody(docker.url+"/"), "Hello from kiln!") ||
		!strings.Contains(getBody("http://"+secondListen+"/"), "Hello from kiln!"); {
		if time.Now().After(deadline) {
			t.Fatalf("the two services do not both answer on Docker:\n%s", docker.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, svc := range []string{second, docker.service} {
		if r := docker.kiln(nil, "destroy", svc); r.code != 0 {
			t.Fatalf("kiln destroy %s on Docker: %d\n%s", svc, r.code, r.stderr)
		}
	}
	docker.stopDaemon(syscall.SIGTERM)
	spec, err := os.ReadFile(filepath.Join(docker.dir, "kiln.hcl"))
	if err != nil {
		t.Fatal(err)
	}

	var (
		cluster *kube.Cluster
		node    *kube.Node
	)
	k := newKubeDeploymentWith(t, func(c *kube.Cluster, registry string) map[string]string {
		cluster = c
		node = c.StartNode(t, registry)
		return map[string]string{"audit_log": c.AuditLog, "kubelet_ca": c.KubeletCA, "kubelet_kubeconfig": c.StatsKubeconfig}
	}, func(dir string) {
		if err := os.WriteFile(filepath.Join(dir, "kiln.hcl"), spec, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	k.service = docker.service
	k.env = append(k.env, "KILN_VAR_second_listen="+freePort(t))
	start := time.Now()
	k.startDaemon("revision 1 deployed", "up")
	t.Logf("kiln up onto the real node (bake, push, pull, start, readiness): %v", time.Since(start).Round(time.Millisecond))
	var l podList
	if err := cluster.Do(t.Context(), "GET", "/api/v1/namespaces/"+k.namespace+"/pods?labelSelector=kiln.dev/service="+k.service, nil, &l); err != nil {
		t.Fatal(err)
	}
	for _, p := range l.Items {
		if p.Spec.NodeName != kube.NodeName || p.Status.Phase != "Running" || !strings.HasPrefix(p.Status.PodIP, "10.222.0.") {
			t.Errorf("pod %s: node %q, phase %q, IP %q; want Running on %s with an address on its bridge",
				p.Metadata.Name, p.Spec.NodeName, p.Status.Phase, p.Status.PodIP, kube.NodeName)
		}
	}
	k.waitFor("the Service's endpoints to be revision 1's pods", 10*time.Second, func() bool {
		return slices.Equal(k.endpoints(), k.podIPs("1"))
	})
	svcURL := k.serviceURL()
	k.waitFor("the Service to answer with the example's greeting", 10*time.Second, func() bool {
		return strings.Contains(getBody(svcURL+"/"), "Hello from kiln!")
	})
	// What the pods print, through the API server from the node's kubelet; and the
	// status with each pod's node and address.
	if r := k.kiln(nil, "logs", k.service); r.code != 0 || strings.Count(r.stdout, "listening") != 2 {
		t.Errorf("kiln logs: %d, want both pods' \"listening\" line:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if out := k.kiln(nil, "status").stdout; !strings.Contains(out, kube.NodeName) || !strings.Contains(out, "10.222.0.") {
		t.Errorf("kiln status does not show the pods' node and addresses:\n%s", out)
	}
	k.service = second
	secondURL := k.serviceURL()
	k.service = docker.service
	k.waitFor("the second service's Service to answer", 30*time.Second, func() bool {
		return strings.Contains(getBody(secondURL+"/"), "Hello from kiln!")
	})

	// A rolling update, then a blue-green switch, under load through the Service.
	k.applyUnderLoad(svcURL, "rolling update", "v2", "2")
	if body := getBody(svcURL + "/"); !strings.Contains(body, "version: v2") {
		t.Errorf("after the rolling update the Service answers %q, want version v2", body)
	}

	// A blue-green switch under load.
	editSpec(t, k.dir, `strategy          = "rolling"`, `strategy          = "blue-green"`)
	k.applyUnderLoad(svcURL, "blue-green switch", "v3", "3")

	// A version whose health check fails: the kubelet's readiness probe never passes,
	// kiln rolls back, and the Service never carries the bad pods.
	editSpec(t, k.dir, `http     = "/healthz"`, `http     = "/nope"`)
	editSpec(t, k.dir, `progress_deadline = "30s"`, `progress_deadline = "6s"`)
	load := startLoadAt(svcURL, 4, 4*time.Millisecond)
	start = time.Now()
	if r := k.kiln([]string{"KILN_VAR_version=v4"}, "apply"); r.code == 0 {
		t.Errorf("apply of a version failing its readiness probe succeeded:\n%s", r.stdout)
	}
	k.waitFor("revision 4 rolled back", time.Minute, func() bool {
		s := k.sets()
		return len(s) == 1 && s["3"] == 2 && len(k.pods()) == 2
	})
	t.Logf("a version failing its readiness probe rolled back in %v", time.Since(start).Round(time.Millisecond))
	load.finish(t, "failed version rolled back, through the Service")
	if ev := k.events(); !strings.Contains(ev, "revision 4 failed and was rolled back; revision 3 is serving") {
		t.Errorf("no rollback event for revision 4:\n%s", ev)
	}
	var kev struct {
		Items []struct{ Reason, Message string }
	}
	cluster.Do(t.Context(), "GET", "/api/v1/namespaces/"+k.namespace+"/events?fieldSelector=reason%3DUnhealthy", nil, &kev)
	probed := false
	for _, e := range kev.Items {
		probed = probed || strings.Contains(e.Message, "Readiness probe failed: HTTP probe failed with statuscode: 404")
	}
	if !probed {
		t.Errorf("no kubelet event of a failed readiness probe for revision 4: %+v", kev.Items)
	}
	editSpec(t, k.dir, `http     = "/nope"`, `http     = "/healthz"`)

	// An exec: refused by kiln's admission policy for an admin; run for a member of the
	// break-glass group, then found in the audit log and the pod replaced.
	victim := anyPod(k.pods())
	if _, err := k.exec(cluster.Token, victim, "/app/hello"); err == nil || !strings.Contains(err.Error(), "kiln-immutable") {
		t.Errorf("an admin's exec into a kiln pod: %v, want it refused by kiln's admission policy", err)
	}
	load = startLoadAt(svcURL, 4, 4*time.Millisecond)
	start = time.Now()
	out, err := k.exec(cluster.BreakGlassToken, victim, "/app/hello")
	var exit utilexec.CodeExitError
	if !errors.As(err, &exit) || exit.ExitStatus() != 1 {
		// The example's binary, run a second time in its pod, finds its port taken and
		// exits 1.
		t.Fatalf("break-glass exec: %v, output %q; want the second /app/hello to exit 1 (its port taken)", err, out)
	}
	t.Logf("break-glass exec of /app/hello in %s: %v: %s", victim, err, strings.TrimSpace(out))
	k.waitReplaced("the pod exec'd into", victim, time.Minute)
	t.Logf("a break-glass exec: found in the audit log and the pod replaced in %v", time.Since(start).Round(time.Millisecond))
	load.finish(t, "pod replaced after an exec, through the Service")
	ev := k.events()
	if !strings.Contains(ev, "kiln-test-break-glass") {
		t.Errorf("no drift event naming who exec'd into the pod:\n%s", ev)
	}
	for _, line := range strings.Split(ev, "\n") {
		if strings.Contains(line, victim) {
			t.Logf("event: %s", line)
		}
	}

	// An exec while kiln is down: read from the audit log where kiln stopped, once it
	// is back, and the pod replaced.
	k.stopDaemon(syscall.SIGTERM)
	victim = anyPod(k.pods())
	if _, err := k.exec(cluster.BreakGlassToken, victim, "/app/hello"); !errors.As(err, &exit) {
		t.Fatalf("break-glass exec while kiln is down: %v", err)
	}
	start = time.Now()
	k.startDaemon("kiln serve: API", "serve")
	k.waitReplaced("the pod exec'd into while kiln was down", victim, time.Minute)
	t.Logf("a break-glass exec while kiln was down: seen and the pod replaced %v after kiln started", time.Since(start).Round(time.Millisecond))

	// A file written into a pod's writable layer on the node, past its read-only root:
	// the kubelet's summary shows the layer grown, and the pod is replaced.
	untouched := k.pods()
	victim = anyPod(untouched)
	delete(untouched, victim)
	var pod struct {
		Metadata struct{ Annotations map[string]string }
		Status   struct {
			ContainerStatuses []struct{ ContainerID string }
		}
	}
	k.waitFor("kiln to record the pod's writable layer", time.Minute, func() bool {
		cluster.Do(t.Context(), "GET", "/api/v1/namespaces/"+k.namespace+"/pods/"+victim, nil, &pod)
		return pod.Metadata.Annotations["kiln.dev/rootfs"] != "" && len(pod.Status.ContainerStatuses) == 1
	})
	t.Logf("pod %s's writable layer as kiln first measured it (bytes/inodes): %s", victim, pod.Metadata.Annotations["kiln.dev/rootfs"])
	load = startLoadAt(svcURL, 4, 4*time.Millisecond)
	start = time.Now()
	if err := node.WriteInContainer(pod.Status.ContainerStatuses[0].ContainerID, "/usr/local/bin/implant", []byte("#!/bin/sh\necho owned\n")); err != nil {
		t.Fatal(err)
	}
	k.waitReplaced("the pod whose files were changed on the node", victim, 2*time.Minute)
	t.Logf("a file written into a pod on the node: found in the kubelet's summary and the pod replaced in %v", time.Since(start).Round(time.Millisecond))
	load.finish(t, "pod replaced after a file changed on the node, through the Service")
	for _, line := range strings.Split(k.events(), "\n") {
		if strings.Contains(line, victim) && strings.Contains(line, "drift") {
			t.Logf("event: %s", line)
		}
	}
	if ev := k.events(); !strings.Contains(ev, "drift in server "+victim+": file: the container's writable layer changed on node "+kube.NodeName) {
		t.Errorf("no drift event saying the pod's files changed on the node:\n%s", ev)
	} else if n := strings.Count(ev, "file: the container's writable layer changed"); n != 2 { // the drift and the heal
		t.Errorf("%d events of a changed writable layer, want 2, of %s alone:\n%s", n, victim, ev)
	}
	for name := range untouched {
		if _, ok := k.pods()[name]; !ok {
			t.Errorf("pod %s, whose files nobody changed, was replaced too", name)
		}
	}

	if r := k.kiln(nil, "destroy", k.service); r.code != 0 {
		t.Fatalf("kiln destroy: %d\n%s", r.code, r.stderr)
	}
	k.waitFor("no pod of the service left", time.Minute, func() bool { return len(k.pods()) == 0 })
}
