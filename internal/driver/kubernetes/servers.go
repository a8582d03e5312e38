package kubernetes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kiln-build/kiln/internal/driver"
)

// errNotManaged: the pod was not made by kiln.
var errNotManaged = errors.New("not a server kiln manages")

// podPoll is how often the driver reads a pod it waits for.
const podPoll = 100 * time.Millisecond

// serverOf is the server a pod is, as its labels, annotations and status say.
func serverOf(p *corev1.Pod) driver.Server {
	spec, _ := specOf(p.Annotations)
	rev, _ := strconv.ParseInt(p.Labels[LabelRevision], 10, 64)
	s := driver.Server{
		ID: driver.ServerID(p.Name), Name: p.Name, Project: spec.Project, Service: p.Annotations[AnnotationService],
		Revision: rev, SpecHash: p.Annotations[AnnotationSpecHash], Image: p.Annotations[AnnotationImage],
		State: stateOf(p), Created: p.CreationTimestamp.Time, Spec: spec, Node: p.Spec.NodeName,
	}
	if s.State == driver.StatePending {
		s.Waiting = waiting(p)
	}
	if s.State == driver.StateRunning && p.Status.PodIP != "" && spec.Port > 0 {
		s.Address = net.JoinHostPort(p.Status.PodIP, strconv.Itoa(spec.Port))
	}
	return s
}

// stateOf is what a pod's server is doing: pending until its container runs, running
// while it does, exited once it has stopped (Kubernetes may restart it in place), other
// while the pod is being removed or its node is lost.
func stateOf(p *corev1.Pod) driver.State {
	if p.DeletionTimestamp != nil {
		return driver.StateOther
	}
	switch p.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return driver.StateExited
	case corev1.PodUnknown:
		return driver.StateOther
	}
	cs := containerStatus(p)
	switch {
	case cs == nil:
		return driver.StatePending
	case cs.State.Running != nil:
		return driver.StateRunning
	case cs.State.Terminated != nil, cs.LastTerminationState.Terminated != nil, cs.RestartCount > 0:
		return driver.StateExited // stopped, or waiting to be restarted
	default:
		return driver.StatePending // waiting to start: pulling, being created
	}
}

// waiting is why a pending pod's server has not started: not scheduled, or its
// container waiting (its image being pulled...); "" when the pod says nothing.
func waiting(p *corev1.Pod) string {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return strings.TrimSpace(c.Reason + ": " + c.Message)
		}
	}
	if cs := containerStatus(p); cs != nil && cs.State.Waiting != nil && cs.State.Waiting.Reason != "" {
		return strings.TrimSpace(cs.State.Waiting.Reason + ": " + cs.State.Waiting.Message)
	}
	return ""
}

// containerStatus is the status of the server's container, nil before it has one.
func containerStatus(p *corev1.Pod) *corev1.ContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == container {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// startFailure is why a pod's server will not start without a change, "" while it may
// still: an image that cannot be pulled, a configuration the runtime refuses, a
// process that exited.
func startFailure(p *corev1.Pod) string {
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		return "the pod " + strings.ToLower(string(p.Status.Phase)) + ": " + p.Status.Message
	}
	cs := containerStatus(p)
	if cs == nil {
		return ""
	}
	if t := cs.State.Terminated; t != nil {
		return fmt.Sprintf("its process exited (code %d): %s", t.ExitCode, strings.TrimSpace(t.Reason+" "+t.Message))
	}
	if t := cs.LastTerminationState.Terminated; t != nil {
		return fmt.Sprintf("its process exited (code %d): %s", t.ExitCode, strings.TrimSpace(t.Reason+" "+t.Message))
	}
	if w := cs.State.Waiting; w != nil {
		switch w.Reason {
		case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError", "RunContainerError", "CrashLoopBackOff":
			return w.Reason + ": " + w.Message
		}
	}
	return ""
}

// selector is the label selector of what kiln manages in a project and service ("" for
// all).
func selector(project, service string) string {
	m := map[string]string{LabelManagedBy: managedBy}
	if project != "" {
		m[LabelProject] = labelValue(project)
	}
	if service != "" {
		m[LabelService] = labelValue(service)
	}
	return labels.SelectorFromSet(m).String()
}

// List returns the pods kiln manages that match sel, as the API server has them now,
// oldest first.
func (d *Driver) List(ctx context.Context, sel driver.Selector) ([]driver.Server, error) {
	pods, err := d.cs.CoreV1().Pods(d.namespace).List(ctx, metav1.ListOptions{LabelSelector: selector(sel.Project, sel.Service)})
	if err != nil {
		return nil, d.check(fmt.Errorf("listing pods: %w", err))
	}
	var out []driver.Server
	for i := range pods.Items {
		if s := serverOf(&pods.Items[i]); sel.Matches(s) {
			out = append(out, s)
		}
	}
	sortServers(out)
	return out, nil
}

func sortServers(s []driver.Server) {
	slices.SortFunc(s, func(a, b driver.Server) int {
		return cmp.Or(a.Created.Compare(b.Created), strings.Compare(string(a.ID), string(b.ID)))
	})
}

// check validates what a server needs of spec before anything is made for it.
func (d *Driver) validate(ctx context.Context, spec driver.ServerSpec) error {
	switch {
	case spec.Service == "":
		return errors.New("no service")
	case spec.Port <= 0 || spec.Port > 65535:
		return fmt.Errorf("port %d", spec.Port)
	}
	if _, _, err := user(spec.User); err != nil {
		return err
	}
	return d.hasImage(ctx, spec.Image)
}

// Create makes one pod from spec, owned by its service's ConfigMap but by no
// ReplicaSet, and returns once its container runs. If it will not start (its image
// cannot be pulled, its process exits) or ctx ends first, the pod and its Secret are
// removed and the error says why.
func (d *Driver) Create(ctx context.Context, spec driver.ServerSpec) (driver.Server, error) {
	fail := func(err error) (driver.Server, error) {
		return driver.Server{}, fmt.Errorf("creating a server of %s: %w", spec.Service, err)
	}
	if err := d.validate(ctx, spec); err != nil {
		return fail(err)
	}
	owner, err := d.ensureOwner(ctx, spec.Project, spec.Service)
	if err != nil {
		return fail(err)
	}
	var secret *corev1.Secret
	if hasSecrets(spec) {
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{GenerateName: objectName(spec.Service, 40) + "-", Labels: serviceLabels(spec.Project, spec.Service),
				OwnerReferences: []metav1.OwnerReference{owner}},
			Data: secretData(spec), Type: corev1.SecretTypeOpaque,
		}
		if secret, err = d.cs.CoreV1().Secrets(d.namespace).Create(ctx, secret, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
			return fail(d.check(fmt.Errorf("making its Secret: %w", err)))
		}
	}
	removeSecret := func() {
		if secret != nil {
			d.cs.CoreV1().Secrets(d.namespace).Delete(context.WithoutCancel(ctx), secret.Name, metav1.DeleteOptions{})
		}
	}
	secretName := ""
	if secret != nil {
		secretName = secret.Name
	}
	ps, err := d.podSpec(spec, secretName)
	if err != nil {
		removeSecret()
		return fail(err)
	}
	pod := &corev1.Pod{ObjectMeta: meta("", spec), Spec: ps}
	pod.GenerateName = objectName(spec.Service, 40) + "-"
	pod.OwnerReferences = []metav1.OwnerReference{owner}
	pod, err = d.cs.CoreV1().Pods(d.namespace).Create(ctx, pod, metav1.CreateOptions{FieldManager: FieldManager})
	if err != nil {
		removeSecret()
		return fail(d.check(fmt.Errorf("making its pod: %w", err)))
	}
	if secret != nil { // the Secret goes with the pod
		patch := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"Pod","name":%q,"uid":%q}]}}`, pod.Name, pod.UID)
		if _, err := d.cs.CoreV1().Secrets(d.namespace).Patch(ctx, secret.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
			d.remove(context.WithoutCancel(ctx), pod)
			removeSecret()
			return fail(d.check(fmt.Errorf("giving its Secret to pod %s: %w", pod.Name, err)))
		}
	}
	running, err := d.waitPod(ctx, pod.Name, func(p *corev1.Pod) (bool, error) {
		if why := startFailure(p); why != "" {
			return false, errors.New(why)
		}
		return stateOf(p) == driver.StateRunning && p.Status.PodIP != "", nil
	})
	if err != nil {
		d.remove(context.WithoutCancel(ctx), pod)
		removeSecret()
		return fail(fmt.Errorf("pod %s did not start: %w", pod.Name, err))
	}
	return serverOf(running), nil
}

// waitPod reads pod name until done says it is done (or fails), it is gone
// (driver.ErrNotFound) or ctx ends.
func (d *Driver) waitPod(ctx context.Context, name string, done func(*corev1.Pod) (bool, error)) (*corev1.Pod, error) {
	t := time.NewTicker(podPoll)
	defer t.Stop()
	for {
		p, err := d.cs.CoreV1().Pods(d.namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil, driver.ErrNotFound
		case err != nil && ctx.Err() == nil:
			return nil, d.check(err)
		case err == nil:
			ok, err := done(p)
			if err != nil || ok {
				return p, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// Destroy deletes the pod, with its server's grace period, and returns once it is
// gone. A member of a set is replaced by its ReplicaSet (see Evict). Nil if the pod is
// already gone; it refuses pods kiln did not make.
func (d *Driver) Destroy(ctx context.Context, id driver.ServerID) error {
	p, err := d.cs.CoreV1().Pods(d.namespace).Get(ctx, string(id), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("destroying %s: %w", id, d.check(err))
	}
	if p.Labels[LabelManagedBy] != managedBy {
		return fmt.Errorf("destroying %s: %w", id, errNotManaged)
	}
	if err := d.remove(ctx, p); err != nil {
		return fmt.Errorf("destroying %s: %w", id, err)
	}
	return nil
}

// remove deletes pod p (that very pod: by its UID) with its grace period and waits
// until it is gone.
func (d *Driver) remove(ctx context.Context, p *corev1.Pod) error {
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}}
	if p.Spec.TerminationGracePeriodSeconds != nil {
		opts.GracePeriodSeconds = p.Spec.TerminationGracePeriodSeconds
	}
	err := d.cs.CoreV1().Pods(d.namespace).Delete(ctx, p.Name, opts)
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) { // gone, or another pod of that name
		return nil
	}
	if err != nil {
		return d.check(err)
	}
	return d.waitGone(ctx, p)
}

// waitGone waits until pod p (that very pod: by its UID) is gone, reading the
// informer's cache once it has listed the pods (the removals of a rollout of many pods
// would otherwise ask the API server of each, ten times a second), the API server
// before.
func (d *Driver) waitGone(ctx context.Context, p *corev1.Pod) error {
	t := time.NewTicker(podPoll)
	defer t.Stop()
	for {
		if q, synced := d.cached(p.Name); synced {
			if q == nil || q.UID != p.UID {
				return nil
			}
		} else {
			q, err := d.cs.CoreV1().Pods(d.namespace).Get(ctx, p.Name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err) || err == nil && q.UID != p.UID:
				return nil
			case err != nil && ctx.Err() == nil:
				return d.check(err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Logs streams what the server's container prints.
func (d *Driver) Logs(ctx context.Context, id driver.ServerID, follow bool) (io.ReadCloser, error) {
	rc, err := d.cs.CoreV1().Pods(d.namespace).GetLogs(string(id), &corev1.PodLogOptions{Container: container, Follow: follow}).Stream(ctx)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("logs of %s: %w", id, driver.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("logs of %s: %w", id, d.check(err))
	}
	return rc, nil
}

// ensureOwner makes the ConfigMap that owns a service's objects, unless it exists, and
// returns a reference to it.
func (d *Driver) ensureOwner(ctx context.Context, project, service string) (metav1.OwnerReference, error) {
	name := ownerName(project, service)
	cms := d.cs.CoreV1().ConfigMaps(d.namespace)
	cm, err := cms.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: serviceLabels(project, service),
				Annotations: map[string]string{AnnotationService: service}},
			Data: map[string]string{"project": project, "service": service},
		}
		cm, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: FieldManager})
		if apierrors.IsAlreadyExists(err) {
			cm, err = cms.Get(ctx, name, metav1.GetOptions{})
		}
	}
	if err != nil {
		return metav1.OwnerReference{}, d.check(fmt.Errorf("the ConfigMap %s that owns %s's objects: %w", name, service, err))
	}
	return metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: cm.Name, UID: cm.UID}, nil
}

// Ready is nil when the pod is Ready (its readiness probe passes, as the kubelet last
// ran it), else why it is not.
func (d *Driver) Ready(ctx context.Context, id driver.ServerID) error {
	// The informer's cache first: the gate and the monitor ask of every server, often.
	if p, ok := d.cached(string(id)); ok && p != nil {
		return notReady(p)
	}
	p, err := d.cs.CoreV1().Pods(d.namespace).Get(ctx, string(id), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("server %s: %w", id, driver.ErrNotFound)
	}
	if err != nil {
		return d.check(err)
	}
	return notReady(p)
}

// notReady is why the pod is not Ready, nil when it is.
func notReady(p *corev1.Pod) error {
	if p.DeletionTimestamp != nil {
		return fmt.Errorf("pod %s is being removed", p.Name)
	}
	if why := startFailure(p); why != "" {
		return fmt.Errorf("pod %s: %s", p.Name, why)
	}
	for _, c := range p.Status.Conditions {
		if c.Type != corev1.PodReady {
			continue
		}
		if c.Status == corev1.ConditionTrue {
			return nil
		}
		return fmt.Errorf("pod %s is not ready: %s", p.Name, strings.TrimSpace(c.Reason+" "+c.Message))
	}
	return fmt.Errorf("pod %s is not ready yet (%s)", p.Name, p.Status.Phase)
}
