package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/kiln-build/kiln/internal/testenv/kube"
)

const (
	// kubeNodes are kwok's nodes: 110 pods each, room for 1,000 and a surge.
	kubeNodes = 12
	// kubeWatched is the fleet of the plan and idle measurements.
	kubeWatched = 1000
	kubeWindow  = 30 * time.Second
)

// kubeSizes are the fleet sizes the rollouts roll (-cases).
var kubeSizes = []string{"10", "100"}

// Kube measures kiln on a real control plane (kube-apiserver, controller manager and
// scheduler of the tests' Kubernetes, kwok's nodes, which run no process): a rolling
// update of 10 and of 100 replicas, kiln (a ReplicaSet per revision, scaled by its
// executor) against a Deployment's own rollout with the same surge, in the same run;
// then kiln planning 1,000 pods and the daemon's CPU and memory while it watches them.
func Kube(ctx context.Context, e *Env, o Options) (*Result, error) {
	r := e.newResult(ctx, "kube", "kiln on Kubernetes (kwok nodes) vs a Deployment's rollout", o)
	r.Notes = []string{
		fmt.Sprintf("A control plane of the tests' release (`internal/testenv/kube`: etcd, kube-apiserver, kube-controller-manager, kube-scheduler) and kwok with %d fake nodes: a pod is Running and Ready as soon as it is scheduled, so what is timed is the control loops, not containers.", kubeNodes),
		"*rolling update of N*: kiln: `KILN_VAR_version=V kiln apply` on the example with `runtime \"kubernetes\"`, `max_surge = 1`, `min_healthy = \"0s\"`, until the command returns (the rollout is done: every pod of the new revision Ready and admitted, the old ReplicaSet deleted). Deployment: `maxSurge: 1`, `maxUnavailable: 0`, a new env value in its template, from the PATCH until its status says the rollout is complete (observedGeneration, updated, ready and available replicas all N, no other replica).",
		fmt.Sprintf("*kiln plan of %d*: `kiln plan` of the unchanged spec with %d pods deployed (the CLI's no-op bake check included); *daemon CPU* / *RSS*: the `kiln up` process over windows of %s while it watches them (`/proc/PID/stat`, `/proc/PID/status`).", kubeWatched, kubeWatched, kubeWindow),
	}
	c, err := kube.Run(filepath.Join(e.Work, "cluster"))
	if errors.Is(err, kube.ErrNotBuilt) {
		return nil, fmt.Errorf("%w: go run ./internal/testenv/kube/cmd/kube-build first", err)
	}
	if c != nil {
		defer c.Stop()
	}
	if err != nil {
		return nil, err
	}
	if err := c.AddNodes(ctx, kubeNodes); err != nil {
		return nil, err
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	k := &kubeBench{e: e, c: c, registry: strings.TrimPrefix(reg.URL, "http://")}
	for _, size := range kubeSizes {
		if !o.wantCase(size) {
			continue
		}
		n, _ := strconv.Atoi(size)
		metric := fmt.Sprintf("rolling update of %d", n)
		if o.want("kiln") {
			if err := k.kilnRollouts(ctx, r, o, n, metric); err != nil {
				return nil, err
			}
		}
		if o.want("deployment") {
			if err := k.deploymentRollouts(ctx, r, o, n, metric); err != nil {
				return nil, err
			}
		}
		r.AddRatio(fmt.Sprintf("kiln / Deployment, %d", n), "kiln", "deployment", metric)
	}
	if o.wantCase("watch") && o.want("kiln") {
		if err := k.watch(ctx, r, o); err != nil {
			r.Failf("watch: %v", err) // the rollouts' figures are kept
		}
	}
	return e.finish(ctx, r), nil
}

type kubeBench struct {
	e        *Env
	c        *kube.Cluster
	registry string
}

// project is the example with n replicas on the cluster, in a namespace of its own.
func (k *kubeBench) project(ctx context.Context, name string, n int) (*Project, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p, err := k.e.Project(ctx, name, "bench-kube-hello", ServiceOptions{Name: k.e.ID + "-" + name, Replicas: n, Interval: "1s", MinHealthy: "0s", Port: port})
	if err != nil {
		return nil, err
	}
	// 1,000 pods take longer than the example's 30 s to be created by the ReplicaSet
	// controller and scheduled.
	spec := filepath.Join(p.Dir, "kiln.hcl")
	b, err := os.ReadFile(spec)
	if err != nil {
		return nil, err
	}
	src, err := edit(string(b), `(?m)^(\s*progress_deadline\s*=).*$`, `${1} "10m"`)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(spec, []byte(src), 0o644); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(spec, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "\nruntime \"kubernetes\" {\n  kubeconfig = %q\n  namespace  = %q\n  registry   = %q\n}\n", k.c.Kubeconfig, k.e.ID+"-"+name, k.registry)
	return p, err
}

func (k *kubeBench) kilnRollouts(ctx context.Context, r *Result, o Options, n int, metric string) error {
	p, err := k.project(ctx, "kube"+strconv.Itoa(n), n)
	if err != nil {
		return err
	}
	k.e.Log.Info("kiln up on the cluster", "replicas", n)
	t0 := time.Now()
	d, err := p.Up(ctx, 10*time.Minute)
	if err != nil {
		return err
	}
	defer d.Stop(context.WithoutCancel(ctx))
	r.Add("kiln", fmt.Sprintf("deploy %d (kiln up)", n), "s", time.Since(t0).Seconds())
	for run := 1; run <= o.Runs; run++ {
		version := strconv.Itoa(run%2 + 1) // 2, 1, 2...: every run replaces every pod
		start := time.Now()
		if _, err := p.Kiln(ctx, version, "apply"); err != nil {
			r.Failf("kiln %s, run %d: %v", metric, run, err)
			continue
		}
		took := time.Since(start)
		if ok, err := d.Settled(ctx); !ok {
			r.Failf("kiln %s, run %d: not settled after the apply: %v", metric, run, err)
			continue
		}
		r.Add("kiln", metric, "s", took.Seconds())
		k.e.Log.Info("kiln rollout", "replicas", n, "run", run, "seconds", took.Seconds())
	}
	return nil
}

func (k *kubeBench) deploymentRollouts(ctx context.Context, r *Result, o Options, n int, metric string) error {
	ns := k.e.ID + "-deploy" + strconv.Itoa(n)
	if err := k.c.Do(ctx, "POST", "/api/v1/namespaces", map[string]any{"metadata": map[string]any{"name": ns}}, nil); err != nil {
		return err
	}
	defer k.c.Do(context.WithoutCancel(ctx), "DELETE", "/api/v1/namespaces/"+ns, nil, nil)
	base := "/apis/apps/v1/namespaces/" + ns + "/deployments"
	template := func(version string) map[string]any {
		return map[string]any{
			"metadata": map[string]any{"labels": map[string]string{"app": "hello"}},
			"spec": map[string]any{"containers": []any{map[string]any{"name": "server", "image": k.registry + "/kiln@sha256:" + strings.Repeat("0", 64),
				"env": []any{map[string]string{"name": "VERSION", "value": version}}}}},
		}
	}
	dep := map[string]any{
		"metadata": map[string]any{"name": "hello"},
		"spec": map[string]any{"replicas": n, "selector": map[string]any{"matchLabels": map[string]string{"app": "hello"}},
			"strategy": map[string]any{"type": "RollingUpdate", "rollingUpdate": map[string]any{"maxSurge": 1, "maxUnavailable": 0}},
			"template": template("1")},
	}
	if err := k.c.Do(ctx, "POST", base, dep, nil); err != nil {
		return err
	}
	if err := k.deploymentDone(ctx, base+"/hello", n); err != nil {
		return err
	}
	for run := 1; run <= o.Runs; run++ {
		version := strconv.Itoa(run%2 + 1)
		start := time.Now()
		patch := map[string]any{"spec": map[string]any{"template": template(version)}}
		if err := k.c.DoWith(ctx, k.c.Token, "PATCH", base+"/hello", "application/strategic-merge-patch+json", patch, nil); err != nil {
			return err
		}
		if err := k.deploymentDone(ctx, base+"/hello", n); err != nil {
			r.Failf("deployment %s, run %d: %v", metric, run, err)
			continue
		}
		took := time.Since(start)
		r.Add("deployment", metric, "s", took.Seconds())
		k.e.Log.Info("deployment rollout", "replicas", n, "run", run, "seconds", took.Seconds())
	}
	return nil
}

// deploymentDone waits until the Deployment's rollout is complete, as `kubectl
// rollout status` tells it.
func (k *kubeBench) deploymentDone(ctx context.Context, path string, n int) error {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	return k.c.Wait(wctx, path, func(obj map[string]any) bool {
		meta, _ := obj["metadata"].(map[string]any)
		st, _ := obj["status"].(map[string]any)
		num := func(m map[string]any, key string) int {
			f, _ := m[key].(float64)
			return int(f)
		}
		return num(st, "observedGeneration") >= num(meta, "generation") && num(st, "updatedReplicas") == n &&
			num(st, "replicas") == n && num(st, "availableReplicas") == n && num(st, "readyReplicas") == n
	})
}

// watch deploys kubeWatched pods, times kiln plan, and samples the daemon.
func (k *kubeBench) watch(ctx context.Context, r *Result, o Options) error {
	p, err := k.project(ctx, "kube-watch", kubeWatched)
	if err != nil {
		return err
	}
	k.e.Log.Info("kiln up on the cluster", "replicas", kubeWatched)
	t0 := time.Now()
	d, err := p.Up(ctx, 15*time.Minute)
	if err != nil {
		return err
	}
	defer d.Stop(context.WithoutCancel(ctx))
	r.Add("kiln", fmt.Sprintf("deploy %d (kiln up)", kubeWatched), "s", time.Since(t0).Seconds())
	planMetric := fmt.Sprintf("kiln plan of %d", kubeWatched)
	for run := 1; run <= o.Runs; run++ {
		start := time.Now()
		if _, err := p.Kiln(ctx, "1", "plan"); err != nil {
			return err
		}
		r.Add("kiln", planMetric, "s", time.Since(start).Seconds())
	}
	time.Sleep(5 * time.Second)
	for run := 1; run <= o.Runs; run++ {
		start := time.Now()
		k0, _ := cpuTicks(d.PID())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(kubeWindow):
		}
		k1, _ := cpuTicks(d.PID())
		r.Add("kiln", fmt.Sprintf("daemon CPU watching %d", kubeWatched), "% of a core", percent(k1-k0, time.Since(start)))
		r.Add("kiln", fmt.Sprintf("daemon RSS watching %d", kubeWatched), "MiB", rssMiB(d.PID()))
		if ok, err := d.Settled(ctx); !ok {
			r.Failf("watch, run %d: the fleet was not all healthy: %v", run, err)
		}
	}
	if m, ok := r.Median("kiln", planMetric); ok {
		r.AddGoal(fmt.Sprintf("planning %d servers < 1 s", kubeWatched), m, "s", 1, true)
	}
	return nil
}
