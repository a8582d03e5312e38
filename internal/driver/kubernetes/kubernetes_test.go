package kubernetes_test

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/kiln-build/kiln/internal/driver"
	"github.com/kiln-build/kiln/internal/driver/drivertest"
	"github.com/kiln-build/kiln/internal/driver/kubernetes"
	"github.com/kiln-build/kiln/internal/testenv/kube"
)

// env is a control plane with kwok nodes and a registry on loopback.
type env struct {
	cluster  *kube.Cluster
	registry string // host:port
}

func start(t *testing.T, nodes int) *env {
	t.Helper()
	c := kube.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := c.AddNodes(ctx, nodes); err != nil {
		t.Fatal(err)
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	return &env{cluster: c, registry: strings.TrimPrefix(reg.URL, "http://")}
}

const namespace = "kiln-test"

func (e *env) open(t *testing.T, project string, digest func([]byte) string) *kubernetes.Driver {
	t.Helper()
	d, err := kubernetes.Open(t.Context(), driver.Config{Project: project, Digest: digest, Options: map[string]string{
		kubernetes.OptionKubeconfig: e.cluster.Kubeconfig, kubernetes.OptionNamespace: namespace, kubernetes.OptionRegistry: e.registry,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func (e *env) pod(t *testing.T, id driver.ServerID) corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := e.cluster.Do(t.Context(), "GET", "/api/v1/namespaces/"+namespace+"/pods/"+string(id), nil, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// The conformance suite on kwok's nodes, which run no process: what the driver makes
// of a spec, sets, events and secrets, against a real API server that enforces the
// restricted Pod Security profile on the namespace the driver made.
func TestConformance(t *testing.T) {
	e := start(t, 2)
	digest := func(b []byte) string { return "d:" + string(rune(len(b))) }
	drivertest.Run(t, func(t *testing.T) driver.Driver { return e.open(t, "", digest) }, drivertest.HelloImage(t), drivertest.Options{
		NoProcess: true,
		Digest:    digest,
		Inspect:   func(t *testing.T, id driver.ServerID, spec driver.ServerSpec) { inspect(t, e.pod(t, id), spec) },
		Recorded: func(t *testing.T, id driver.ServerID) string {
			b, _ := json.Marshal(e.pod(t, id))
			return string(b)
		},
	})
}

// inspect checks that the pod is made as spec says, under the restricted profile.
func inspect(t *testing.T, p corev1.Pod, spec driver.ServerSpec) {
	t.Helper()
	if len(p.Spec.Containers) != 1 {
		t.Fatalf("pod %s has %d containers", p.Name, len(p.Spec.Containers))
	}
	c := p.Spec.Containers[0]
	if !strings.HasSuffix(c.Image, "@"+spec.Image) {
		t.Errorf("image %q, want one by digest %s", c.Image, spec.Image)
	}
	if !slices.Equal(c.Command, spec.Command) || !slices.Equal(c.Args, spec.Args) {
		t.Errorf("command %q args %q, want %q %q", c.Command, c.Args, spec.Command, spec.Args)
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no security context")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("the root filesystem is writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("privilege escalation is allowed")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("capabilities %+v, want all dropped", sc.Capabilities)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0:
		t.Errorf("runs as %v (non-root %v)", sc.RunAsUser, sc.RunAsNonRoot)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("seccomp %+v, want RuntimeDefault", sc.SeccompProfile)
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	for _, w := range spec.Writable {
		i := slices.IndexFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == mounts[w] })
		if i < 0 || p.Spec.Volumes[i].EmptyDir == nil || p.Spec.Volumes[i].EmptyDir.Medium != corev1.StorageMediumMemory {
			t.Errorf("writable path %s is not a memory-backed emptyDir (mounts %v)", w, mounts)
		}
	}
	wantMem := *resource.NewQuantity(spec.Resources.MemoryBytes, resource.BinarySI)
	if got := c.Resources.Limits[corev1.ResourceMemory]; got.Cmp(wantMem) != 0 {
		t.Errorf("memory limit %s, want %s", got.String(), wantMem.String())
	}
	if spec.Resources.CPUs > 0 {
		if got := c.Resources.Limits[corev1.ResourceCPU]; got.MilliValue() != int64(spec.Resources.CPUs*1000) {
			t.Errorf("CPU limit %s, want %v", got.String(), spec.Resources.CPUs)
		}
	}
	for _, ev := range c.Env {
		if ev.Value != "" || ev.ValueFrom == nil || ev.ValueFrom.SecretKeyRef == nil {
			t.Errorf("env %s is not from a Secret: %+v", ev.Name, ev)
		}
	}
	if len(c.Env) != len(spec.Env) {
		t.Errorf("%d env vars, want %d", len(c.Env), len(spec.Env))
	}
	if g := p.Spec.TerminationGracePeriodSeconds; spec.StopTimeout > 0 && (g == nil || *g != int64(spec.StopTimeout.Seconds())) {
		t.Errorf("grace period %v, want %v", g, spec.StopTimeout)
	}
	if spec.Init && (p.Spec.ShareProcessNamespace == nil || !*p.Spec.ShareProcessNamespace) {
		t.Error("init asked for, but the pod does not share its process namespace with its sandbox")
	}
	if p.Spec.AutomountServiceAccountToken == nil || *p.Spec.AutomountServiceAccountToken {
		t.Error("the pod mounts a service account token")
	}
}
