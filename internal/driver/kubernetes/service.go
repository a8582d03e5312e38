package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// A service's traffic on a cluster: a Service without a selector and one EndpointSlice
// that kiln writes, holding exactly the pods in kiln's rotation. kiln's front door
// decides who serves, as on Docker: a rolling update moves pods in and out one by
// one, a blue-green switch replaces them all in one write of the slice, and a pod
// being drained has left the slice before it is evicted. (A selector would put every
// Ready pod behind the Service, whatever kiln's gate said.)

// endpointSliceManager is the EndpointSlice label that says who writes the slice, so
// that the endpoint-slice controllers leave it alone.
const endpointSliceManager = "kiln.dev"

// serviceName is the Service (and EndpointSlice) name of a service.
func serviceName(service string) string { return objectName(service, 55) }

// SetRotation applies the service's Service (of the driver's service type, on port)
// and its EndpointSlice holding exactly addrs (pod IP:port), server-side.
func (d *Driver) SetRotation(ctx context.Context, project, service string, port int, addrs []string) error {
	fail := func(err error) error { return fmt.Errorf("the Service of %s: %w", service, err) }
	name := serviceName(service)
	target := 0
	var v4, v6 []discoveryv1.Endpoint
	yes, no := true, false
	for _, a := range addrs {
		host, p, err := net.SplitHostPort(a)
		ip := net.ParseIP(host)
		n, _ := strconv.Atoi(p)
		if err != nil || ip == nil || n <= 0 {
			return fail(fmt.Errorf("address %q is not an IP and a port", a))
		}
		target = n
		ep := discoveryv1.Endpoint{Addresses: []string{ip.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: &yes, Serving: &yes, Terminating: &no}}
		if ip.To4() != nil {
			v4 = append(v4, ep)
		} else {
			v6 = append(v6, ep)
		}
	}
	labels := serviceLabels(project, service)
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: map[string]string{AnnotationService: service}},
		Spec: corev1.ServiceSpec{
			Type:  d.serviceType,
			Ports: []corev1.ServicePort{{Name: "serve", Port: int32(port), Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(int32(max(target, port)))}},
		},
	}
	if err := d.applyObject(ctx, "services", name, svc); err != nil {
		return fail(err)
	}
	got, err := d.cs.CoreV1().Services(d.namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fail(d.check(err))
	}
	for _, family := range []struct {
		typ       discoveryv1.AddressType
		endpoints []discoveryv1.Endpoint
		suffix    string
	}{{discoveryv1.AddressTypeIPv4, v4, "-kiln"}, {discoveryv1.AddressTypeIPv6, v6, "-kiln6"}} {
		sliceName := name + family.suffix
		if family.typ == discoveryv1.AddressTypeIPv6 && len(v6) == 0 {
			err := d.cs.DiscoveryV1().EndpointSlices(d.namespace).Delete(ctx, sliceName, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return fail(d.check(err))
			}
			continue
		}
		sl := map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: endpointSliceManager}
		for k, v := range labels {
			sl[k] = v
		}
		slice := &discoveryv1.EndpointSlice{
			TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
			ObjectMeta: metav1.ObjectMeta{Name: sliceName, Labels: sl,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: got.Name, UID: got.UID}}},
			AddressType: family.typ,
			Endpoints:   family.endpoints,
		}
		if target > 0 {
			p, proto, pname := int32(target), corev1.ProtocolTCP, "serve"
			slice.Ports = []discoveryv1.EndpointPort{{Name: &pname, Port: &p, Protocol: &proto}}
		}
		if err := d.applyObject(ctx, "endpointslices", sliceName, slice); err != nil {
			return fail(err)
		}
	}
	return nil
}

// RemoveService deletes the service's Service; its EndpointSlices go with it.
func (d *Driver) RemoveService(ctx context.Context, project, service string) error {
	fg := metav1.DeletePropagationForeground
	err := d.cs.CoreV1().Services(d.namespace).Delete(ctx, serviceName(service), metav1.DeleteOptions{PropagationPolicy: &fg})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing the Service of %s: %w", service, d.check(err))
	}
	return nil
}

// applyObject server-side applies obj as FieldManager, taking what another manager
// holds.
func (d *Driver) applyObject(ctx context.Context, resource, name string, obj any) error {
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	delete(m, "status")
	if b, err = json.Marshal(m); err != nil {
		return err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: &force}
	switch resource {
	case "services":
		_, err = d.cs.CoreV1().Services(d.namespace).Patch(ctx, name, types.ApplyPatchType, b, opts)
	case "endpointslices":
		_, err = d.cs.DiscoveryV1().EndpointSlices(d.namespace).Patch(ctx, name, types.ApplyPatchType, b, opts)
	case "replicasets":
		_, err = d.cs.AppsV1().ReplicaSets(d.namespace).Patch(ctx, name, types.ApplyPatchType, b, opts)
	case "secrets":
		_, err = d.cs.CoreV1().Secrets(d.namespace).Patch(ctx, name, types.ApplyPatchType, b, opts)
	default:
		return fmt.Errorf("apply: %s", resource)
	}
	return d.check(err)
}
