package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kiln-build/kiln/internal/driver"
)

// ownManagers are the field managers whose writes to kiln's pods and ReplicaSets are
// expected: kiln's own, and the controller manager's (the ReplicaSet controller makes
// the pods, the garbage collector edits owners). Writes to a status subresource (the
// kubelet's, the scheduler's) are never drift.
var ownManagers = []string{FieldManager, "kube-controller-manager"}

// Diff tells how a server's pod differs from the spec it was made from, as the API
// server has it now: its image changed (in the pod, or as the kubelet reports it
// running), fields written by another manager than kiln (kubectl scale, set image,
// label, edit...), on the pod or on its ReplicaSet, the pod taken out of its set by a
// relabelling, an ephemeral container added (kubectl debug), or (with OptionKubeletCA)
// its writable layer changed on the node. Each drift through the API names the manager
// that made it: the name the client gave, which is as far as the API tells who.
func (d *Driver) Diff(ctx context.Context, s driver.Server) ([]driver.Drift, error) {
	// The controller diffs every server at each resync: the pod from the informer's
	// cache, its ReplicaSet read once for all its members (setFor).
	p, synced := d.cached(string(s.ID))
	if !synced || p == nil {
		var err error
		p, err = d.cs.CoreV1().Pods(d.namespace).Get(ctx, string(s.ID), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("diff of %s: %w", s.ID, driver.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("diff of %s: %w", s.ID, d.check(err))
		}
	}
	spec, ok := specOf(p.Annotations)
	if !ok {
		return []driver.Drift{{Kind: driver.DriftConfig, Detail: "the pod's recorded spec (annotation " + AnnotationSpec + ") was removed"}}, nil
	}
	out := append(d.podDrift(p, spec), d.fileDrift(ctx, p)...)
	owner := metav1.GetControllerOf(p)
	if owner != nil && owner.Kind == "ReplicaSet" {
		rs, err := d.setFor(ctx, owner.Name)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("diff of %s: its ReplicaSet: %w", s.ID, d.check(err))
		}
		if err == nil {
			out = append(out, setDrift(rs, spec)...)
		}
	}
	return out, nil
}

// setTTL is how long a ReplicaSet read for a diff serves the diffs of its other
// members.
const setTTL = time.Second

type readSet struct {
	rs *appsv1.ReplicaSet
	at time.Time
}

// setFor is the ReplicaSet name, read from the API server at most once a setTTL.
func (d *Driver) setFor(ctx context.Context, name string) (*appsv1.ReplicaSet, error) {
	d.mu.Lock()
	r, ok := d.sets[name]
	d.mu.Unlock()
	if ok && time.Since(r.at) < setTTL {
		return r.rs, nil
	}
	rs, err := d.cs.AppsV1().ReplicaSets(d.namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	for n, r := range d.sets { // forget the sets not read lately
		if time.Since(r.at) > time.Minute {
			delete(d.sets, n)
		}
	}
	d.sets[name] = readSet{rs, time.Now()}
	d.mu.Unlock()
	return rs, nil
}

// forgetSet drops what setFor read of ReplicaSet name: kiln has just written it.
func (d *Driver) forgetSet(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.sets, name)
}

// podDrift is how pod p differs from spec, the pod alone.
func (d *Driver) podDrift(p *corev1.Pod, spec driver.ServerSpec) []driver.Drift {
	var out []driver.Drift
	add := func(kind driver.DriftKind, format string, args ...any) {
		out = append(out, driver.Drift{Kind: kind, Detail: fmt.Sprintf(format, args...)})
	}
	by := foreign(p.ManagedFields)
	if len(p.Spec.Containers) != 1 || p.Spec.Containers[0].Image != d.imageRef(spec.Image) {
		var images []string
		for _, c := range p.Spec.Containers {
			images = append(images, c.Image)
		}
		add(driver.DriftConfig, "the pod runs %s, not the revision's %s%s", strings.Join(images, ", "), d.imageRef(spec.Image),
			who(owning(by, "f:spec", "f:containers", "*", "f:image")))
	}
	if cs := containerStatus(p); cs != nil && cs.ImageID != "" && !strings.HasSuffix(cs.ImageID, "@"+spec.Image) && !strings.HasSuffix(cs.ImageID, spec.Image) {
		add(driver.DriftConfig, "the node runs image %s, not the revision's digest %s", cs.ImageID, spec.Image)
	}
	for _, c := range p.Spec.EphemeralContainers {
		add(driver.DriftExec, "an ephemeral container %s (%s) was added to the pod (kubectl debug)%s", c.Name, c.Image, who(foreignOf(p.ManagedFields, "ephemeralcontainers")))
	}
	// A ReplicaSet's pod relabelled out of its selector is released: no owner is left.
	// (A pod kiln made alone is owned by its service's ConfigMap.)
	if len(p.OwnerReferences) == 0 {
		add(driver.DriftConfig, "the pod was taken out of its ReplicaSet (relabelled)%s", who(owning(by, "f:metadata", "f:labels")))
	}
	for _, m := range by {
		add(driver.DriftConfig, "the pod was changed by %s (%s)", m.Manager, fields(m))
	}
	return out
}

// setDrift is how the pod's ReplicaSet differs from what kiln applied.
func setDrift(rs *appsv1.ReplicaSet, spec driver.ServerSpec) []driver.Drift {
	var out []driver.Drift
	if h := rs.Annotations[AnnotationSpecHash]; h != spec.Hash() {
		out = append(out, driver.Drift{Kind: driver.DriftSet, Detail: fmt.Sprintf("its ReplicaSet %s records another spec", rs.Name)})
	}
	for _, m := range foreign(rs.ManagedFields) {
		what := fields(m)
		if m.Subresource == "scale" {
			what = ".spec.replicas, by the scale subresource (kubectl scale)"
		}
		out = append(out, driver.Drift{Kind: driver.DriftSet, Detail: fmt.Sprintf("its ReplicaSet %s was changed by %s (%s)", rs.Name, m.Manager, what)})
	}
	return out
}

// foreign are the managed-fields entries of managers other than kiln's own, status
// aside.
func foreign(entries []metav1.ManagedFieldsEntry) []metav1.ManagedFieldsEntry {
	var out []metav1.ManagedFieldsEntry
	for _, m := range entries {
		if m.Subresource == "status" || slices.Contains(ownManagers, m.Manager) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// foreignOf are the foreign entries of writes to subresource.
func foreignOf(entries []metav1.ManagedFieldsEntry, subresource string) []metav1.ManagedFieldsEntry {
	return slices.DeleteFunc(foreign(entries), func(m metav1.ManagedFieldsEntry) bool { return m.Subresource != subresource })
}

// owning are the entries that manage a field under path (keys of the managed-fields
// tree; "*" is any key).
func owning(entries []metav1.ManagedFieldsEntry, path ...string) []metav1.ManagedFieldsEntry {
	var out []metav1.ManagedFieldsEntry
	for _, m := range entries {
		var tree map[string]any
		if m.FieldsV1 == nil || json.Unmarshal(m.FieldsV1.Raw, &tree) != nil {
			continue
		}
		if has(tree, path) {
			out = append(out, m)
		}
	}
	return out
}

func has(tree map[string]any, path []string) bool {
	if len(path) == 0 {
		return true
	}
	for k, v := range tree {
		if k != path[0] && path[0] != "*" {
			continue
		}
		sub, _ := v.(map[string]any)
		if len(path) == 1 || has(sub, path[1:]) {
			return true
		}
	}
	return false
}

// who is " (by M1, M2)" for the managers of entries, "" for none.
func who(entries []metav1.ManagedFieldsEntry) string {
	var names []string
	for _, m := range entries {
		if !slices.Contains(names, m.Manager) {
			names = append(names, m.Manager)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return " (by " + strings.Join(names, ", ") + ")"
}

// fields names the top fields an entry manages, as paths (".spec.containers...").
func fields(m metav1.ManagedFieldsEntry) string {
	if m.FieldsV1 == nil {
		return "fields unknown"
	}
	var tree map[string]any
	if json.Unmarshal(m.FieldsV1.Raw, &tree) != nil {
		return "fields unknown"
	}
	var paths []string
	var walk func(prefix string, t map[string]any, depth int)
	walk = func(prefix string, t map[string]any, depth int) {
		for k, v := range t {
			if k == "." {
				continue
			}
			name := strings.TrimPrefix(k, "f:")
			if strings.HasPrefix(k, "k:") || strings.HasPrefix(k, "v:") {
				name = "[" + k[2:] + "]"
			}
			path := prefix + "." + name
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 && depth < 4 {
				walk(path, sub, depth+1)
				continue
			}
			paths = append(paths, path)
		}
	}
	walk("", tree, 0)
	sort.Strings(paths)
	if len(paths) > 4 {
		paths = append(paths[:4], fmt.Sprintf("and %d more", len(paths)-4))
	}
	return strings.Join(paths, ", ")
}
