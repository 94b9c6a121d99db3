package clusteraddon

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cluster-api/util/conditions"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/kstatus"
)

// The functions below add ResourcesApplied to the kstatus triple (internal/kstatus) where the
// ClusterAddon's state says something about its applied objects.

func metaCondition(t string, ok bool, reason, msg string) metav1.Condition {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg}
}

func markReady(ca *csv1alpha1.ClusterAddon, msg string) {
	conditions.Set(ca, metaCondition(csv1alpha1.ResourcesAppliedCondition, true, csv1alpha1.ReadyReason, ""))
	kstatus.MarkReady(ca, csv1alpha1.ReadyReason, msg)
}

func markApplyFailed(ca *csv1alpha1.ClusterAddon, reason, msg string) {
	conditions.Set(ca, metaCondition(csv1alpha1.ResourcesAppliedCondition, false, reason, msg))
	kstatus.MarkProgressing(ca, reason, msg)
}

// markInvalidRelease marks the ClusterAddon stalled: only a user can help, by moving the Cluster
// to another release (or fixing spec.clusterRef).
func markInvalidRelease(ca *csv1alpha1.ClusterAddon, msg string) {
	kstatus.MarkStalled(ca, csv1alpha1.InvalidReleaseReason, msg)
}

func resourceKey(r csv1alpha1.Resource) apply.Ref {
	return apply.Ref{Group: r.Group, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}
}

// merge adds (or updates) the resources of add to inv, keeping inv's order.
func merge(inv, add []csv1alpha1.Resource) []csv1alpha1.Resource {
	out := slices.Clone(inv)
	for _, a := range add {
		if i := slices.IndexFunc(out, func(r csv1alpha1.Resource) bool { return resourceKey(r) == resourceKey(a) }); i >= 0 {
			out[i] = a
			continue
		}
		out = append(out, a)
	}
	return out
}

// withoutDeleted drops from inv the objects of deleted that are not among remaining.
func withoutDeleted(inv []csv1alpha1.Resource, deleted, remaining []apply.Ref) []csv1alpha1.Resource {
	gone := map[apply.Ref]bool{}
	for _, d := range deleted {
		gone[d.Key()] = true
	}
	for _, r := range remaining {
		delete(gone, r.Key())
	}
	return slices.DeleteFunc(slices.Clone(inv), func(r csv1alpha1.Resource) bool { return gone[resourceKey(r)] })
}
