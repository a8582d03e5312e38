package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// DefaultBreakGlassGroup is the group whose members may still exec into kiln's pods,
// attach to them, forward their ports and add ephemeral containers to them.
const DefaultBreakGlassGroup = "kiln:break-glass"

// policyName is the name of the admission policy (and its binding) of a namespace.
func policyName(namespace string) string { return "kiln-immutable-" + namespace }

// DeniedMessage begins what the API server answers to an exec, attach, port-forward or
// ephemeral container the policy denies.
const DeniedMessage = "kiln's servers are immutable"

// ensurePolicy applies the ValidatingAdmissionPolicy that keeps everyone but the
// break-glass group from exec, attach, port-forward and ephemeral containers in the
// driver's namespace, and its binding. It reports whether the policy is in place: a
// caller without the right to install one (it is cluster-wide) is told so, not failed.
func (d *Driver) ensurePolicy(ctx context.Context) (bool, error) {
	name := policyName(d.namespace)
	fail := admissionv1.Fail
	policy := &admissionv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelManagedBy: managedBy}},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{
				{RuleWithOperations: admissionv1.RuleWithOperations{Operations: []admissionv1.OperationType{admissionv1.Connect},
					Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods/exec", "pods/attach", "pods/portforward"}}}},
				{RuleWithOperations: admissionv1.RuleWithOperations{Operations: []admissionv1.OperationType{admissionv1.Update},
					Rule: admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods/ephemeralcontainers"}}}},
			}},
			MatchConditions: []admissionv1.MatchCondition{{Name: "not-break-glass",
				Expression: fmt.Sprintf("!(%q in request.userInfo.groups)", d.breakGlass)}},
			Validations: []admissionv1.Validation{{Expression: "false",
				Message: fmt.Sprintf("%s: exec, attach, port-forward and ephemeral containers are denied in namespace %s (a member of group %s may, and kiln records what changed)", DeniedMessage, d.namespace, d.breakGlass)}},
		},
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelManagedBy: managedBy}},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": d.namespace}}},
		},
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: &force}
	ar := d.cs.AdmissionregistrationV1()
	b, err := json.Marshal(policy)
	if err == nil {
		_, err = ar.ValidatingAdmissionPolicies().Patch(ctx, name, types.ApplyPatchType, b, opts)
	}
	if err == nil {
		if b, err = json.Marshal(binding); err == nil {
			_, err = ar.ValidatingAdmissionPolicyBindings().Patch(ctx, name, types.ApplyPatchType, b, opts)
		}
	}
	if apierrors.IsForbidden(err) {
		d.log.Warn("kiln may not install its admission policy (it is cluster-wide): exec, attach, port-forward and ephemeral containers "+
			"into its pods are not prevented, only detected where the API shows them; have a cluster admin run kiln once, or grant it "+
			"validatingadmissionpolicies and validatingadmissionpolicybindings", "policy", name, "error", err)
		return false, nil
	}
	if err != nil {
		return false, d.check(fmt.Errorf("installing the admission policy %s: %w", name, err))
	}
	return true, nil
}
