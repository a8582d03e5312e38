package kubernetes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/kiln-build/kiln/internal/driver"
)

// lowestCost is the pod-deletion-cost of a pod Evict takes out of its set: the
// ReplicaSet controller removes it before any other pod of the same readiness.
const lowestCost = "-2147483648"

// EnsureSet applies the revision's ReplicaSet (server-side, as FieldManager) at size
// replicas, making first its service's owner and, for a spec with env or file values,
// the set's Secret. A ReplicaSet of another spec for the revision is ErrSetConflict;
// an image the registry lacks ErrImageNotFound.
func (d *Driver) EnsureSet(ctx context.Context, spec driver.ServerSpec, replicas int) error {
	ref := driver.SetOf(spec)
	fail := func(err error) error {
		return fmt.Errorf("ensuring the set of %s revision %d: %w", ref.Service, ref.Revision, err)
	}
	switch {
	case replicas < 0:
		return fail(fmt.Errorf("%d replicas", replicas))
	case spec.Role != "":
		return fail(fmt.Errorf("a %s is not a set's", spec.Role))
	}
	name := setName(ref)
	rs, err := d.cs.AppsV1().ReplicaSets(d.namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil && rs.Annotations[AnnotationSpecHash] != spec.Hash():
		return fail(driver.ErrSetConflict)
	case err == nil && rs.Spec.Replicas != nil && int(*rs.Spec.Replicas) == replicas && len(foreign(rs.ManagedFields)) == 0:
		return nil // as kiln applied it: nothing to do (else the apply takes back what another changed)
	case err != nil && !apierrors.IsNotFound(err):
		return fail(d.check(err))
	}
	if err := d.validate(ctx, spec); err != nil {
		return fail(err)
	}
	owner, err := d.ensureOwner(ctx, spec.Project, spec.Service)
	if err != nil {
		return fail(err)
	}
	secret := ""
	if hasSecrets(spec) {
		secret = name
		s := &corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: secret, Labels: setSelector(ref), OwnerReferences: []metav1.OwnerReference{owner}},
			Data:       secretData(spec), Type: corev1.SecretTypeOpaque,
		}
		if err := d.applyObject(ctx, "secrets", secret, s); err != nil {
			return fail(fmt.Errorf("applying its Secret: %w", err))
		}
	}
	ps, err := d.podSpec(spec, secret)
	if err != nil {
		return fail(err)
	}
	n := int32(replicas)
	yes := true
	owner.Controller, owner.BlockOwnerDeletion = &yes, &yes
	rs = &appsv1.ReplicaSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
		ObjectMeta: meta(name, spec),
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: setSelector(ref)},
			Template: corev1.PodTemplateSpec{ObjectMeta: meta("", spec), Spec: ps},
		},
	}
	rs.OwnerReferences = []metav1.OwnerReference{owner}
	defer d.forgetSet(name)
	if err := d.applyObject(ctx, "replicasets", name, rs); err != nil {
		return fail(err)
	}
	return nil
}

// Evict takes the pod out of its set for good: it gives the pod the lowest deletion
// cost, lowers the ReplicaSet's size by one (so that the controller removes that pod,
// and replaces none) and deletes the pod itself, waiting until it is gone. Should the
// controller remove another pod first (one not yet running or ready ranks before any
// that is), the set is one short for a moment and the controller makes it up.
func (d *Driver) Evict(ctx context.Context, id driver.ServerID) error {
	fail := func(err error) error { return fmt.Errorf("evicting %s: %w", id, err) }
	pods := d.cs.CoreV1().Pods(d.namespace)
	p, err := pods.Get(ctx, string(id), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fail(d.check(err))
	}
	if p.Labels[LabelManagedBy] != managedBy {
		return fail(errNotManaged)
	}
	owner := metav1.GetControllerOf(p)
	if owner == nil || owner.Kind != "ReplicaSet" {
		return fail(driver.ErrNotInSet)
	}
	if p.DeletionTimestamp == nil {
		// Asked first without doing it: the scale-down below has the ReplicaSet
		// controller remove the pod, which no disruption budget would stop.
		if err := d.evictPod(ctx, p, true); err != nil {
			return fail(err)
		}
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, AnnotationDeletionCost, lowestCost)
		if _, err := pods.Patch(ctx, p.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fail(d.check(err))
		}
		sets := d.cs.AppsV1().ReplicaSets(d.namespace)
		defer d.forgetSet(owner.Name)
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			sc, err := sets.GetScale(ctx, owner.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if sc.Spec.Replicas > 0 {
				sc.Spec.Replicas--
			}
			_, err = sets.UpdateScale(ctx, owner.Name, sc, metav1.UpdateOptions{FieldManager: FieldManager})
			return err
		})
		if err != nil && !apierrors.IsNotFound(err) {
			return fail(d.check(fmt.Errorf("lowering the size of %s: %w", owner.Name, err)))
		}
	}
	if err := d.evictPod(ctx, p, false); err != nil {
		return fail(err)
	}
	return d.waitGone(ctx, p)
}

// evictRetry is how long Evict waits before asking again when a PodDisruptionBudget
// does not allow the eviction yet.
const evictRetry = time.Second

// evictPod removes pod p through the Eviction API (only asks whether it may, on a dry
// run), so that the PodDisruptionBudgets the cluster's users set apply: a refusal is
// asked again every evictRetry until ctx ends. Nil too when the pod is gone.
func (d *Driver) evictPod(ctx context.Context, p *corev1.Pod, dryRun bool) error {
	opts := &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}, GracePeriodSeconds: p.Spec.TerminationGracePeriodSeconds}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for {
		err := d.cs.CoreV1().Pods(d.namespace).EvictV1(ctx, &policyv1.Eviction{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: d.namespace}, DeleteOptions: opts})
		switch {
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err): // gone, or another pod of that name
			return nil
		case apierrors.IsTooManyRequests(err): // a disruption budget says not now
			d.log.Info("a PodDisruptionBudget holds up an eviction; asking again", "pod", p.Name, "error", err)
			select {
			case <-ctx.Done():
				return fmt.Errorf("a PodDisruptionBudget does not allow evicting %s: %w", p.Name, errors.Join(ctx.Err(), err))
			case <-time.After(evictRetry):
			}
			continue
		case err != nil:
			return d.check(err)
		}
		return nil
	}
}

// Members returns the pods the revision's ReplicaSet controls, oldest first; pods
// being removed are no longer members.
func (d *Driver) Members(ctx context.Context, ref driver.SetRef) ([]driver.Server, error) {
	pods, err := d.cs.CoreV1().Pods(d.namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(setSelector(ref)).String()})
	if err != nil {
		return nil, d.check(fmt.Errorf("listing the members of %s revision %d: %w", ref.Service, ref.Revision, err))
	}
	name := setName(ref)
	out := []driver.Server{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if o := metav1.GetControllerOf(p); o == nil || o.Kind != "ReplicaSet" || o.Name != name || p.DeletionTimestamp != nil {
			continue
		}
		out = append(out, serverOf(p))
	}
	sortServers(out)
	return out, nil
}

// Sets returns the ReplicaSets kiln made that match sel, by service then revision.
func (d *Driver) Sets(ctx context.Context, sel driver.Selector) ([]driver.Set, error) {
	list, err := d.cs.AppsV1().ReplicaSets(d.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector(sel.Project, sel.Service)})
	if err != nil {
		return nil, d.check(fmt.Errorf("listing sets: %w", err))
	}
	var out []driver.Set
	for _, rs := range list.Items {
		if rs.DeletionTimestamp != nil {
			continue
		}
		spec, ok := specOf(rs.Annotations)
		if !ok || (sel.Project != "" && spec.Project != sel.Project) || (sel.Service != "" && spec.Service != sel.Service) {
			continue
		}
		rev, _ := strconv.ParseInt(rs.Labels[LabelRevision], 10, 64)
		n := 0
		if rs.Spec.Replicas != nil {
			n = int(*rs.Spec.Replicas)
		}
		out = append(out, driver.Set{Ref: driver.SetRef{Project: spec.Project, Service: spec.Service, Revision: rev},
			Spec: spec, SpecHash: rs.Annotations[AnnotationSpecHash], Replicas: n})
	}
	slices.SortFunc(out, func(a, b driver.Set) int {
		return cmp.Or(strings.Compare(a.Ref.Service, b.Ref.Service), cmp.Compare(a.Ref.Revision, b.Ref.Revision))
	})
	return out, nil
}

// DeleteSet deletes the revision's ReplicaSet and its Secret; the garbage collector
// removes its pods, each with its grace period, and DeleteSet returns once they are
// gone (or ctx ends).
func (d *Driver) DeleteSet(ctx context.Context, ref driver.SetRef) error {
	name := setName(ref)
	fail := func(err error) error {
		return fmt.Errorf("deleting the set of %s revision %d: %w", ref.Service, ref.Revision, err)
	}
	bg := metav1.DeletePropagationBackground
	err := d.cs.AppsV1().ReplicaSets(d.namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
	if err != nil && !apierrors.IsNotFound(err) {
		return fail(d.check(err))
	}
	err = d.cs.CoreV1().Secrets(d.namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fail(d.check(err))
	}
	t := time.NewTicker(podPoll)
	defer t.Stop()
	for {
		pods, err := d.cs.CoreV1().Pods(d.namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(setSelector(ref)).String()})
		if err != nil {
			return fail(d.check(err))
		}
		left := 0
		for _, p := range pods.Items {
			if o := metav1.GetControllerOf(&p); o != nil && o.Kind == "ReplicaSet" && o.Name == name || o == nil {
				left++
			}
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fail(errors.Join(ctx.Err(), fmt.Errorf("%d of its pods are still there", left)))
		case <-t.C:
		}
	}
}
