package clusterstack

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cluster-api/util/conditions"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
)

// releaseStatus carries what a reconcile learnt beyond the step conditions.
type releaseStatus struct {
	// stalled means a user has to act (bad release, missing CRD, bad reference).
	stalled bool
	// imagesWaiting describes ORC Images that are not Available yet.
	imagesWaiting []string
}

// setReleaseStatus summarises the step conditions into Ready, Reconciling, Stalled and
// status.ready. Ready is True only when every step is: the release is available, its provider
// object (if any) is ready, every object is applied and every ORC Image is Available. A step that
// was not reached in this reconcile keeps its last condition, so a provider whose readiness goes
// away makes the release not ready with the provider's reason.
func setReleaseStatus(csr *clusterstackv1alpha1.ClusterStackRelease, st *releaseStatus) {
	steps := []string{clusterstackv1alpha1.ReleaseAvailableCondition}
	if csr.Spec.ProviderRef != nil {
		steps = append(steps, clusterstackv1alpha1.ProviderReadyCondition)
	}
	steps = append(steps, clusterstackv1alpha1.ResourcesAppliedCondition)

	ready := metav1.Condition{Type: clusterstackv1alpha1.ReadyCondition, Status: metav1.ConditionTrue, Reason: clusterstackv1alpha1.ReadyReason}
	for _, t := range steps {
		c := conditions.Get(csr, t)
		if c == nil {
			ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, clusterstackv1alpha1.ProgressingReason, "Waiting for "+t
			break
		}
		if c.Status != metav1.ConditionTrue {
			ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, c.Reason, c.Message
			break
		}
	}
	if ready.Status == metav1.ConditionTrue && len(st.imagesWaiting) > 0 {
		ready.Status, ready.Reason = metav1.ConditionFalse, ImagesNotAvailableReason
		ready.Message = "Waiting for ORC Images to be Available: " + strings.Join(st.imagesWaiting, ", ")
	}
	conditions.Set(csr, ready)
	csr.Status.Ready = ready.Status == metav1.ConditionTrue

	switch {
	case csr.Status.Ready:
		conditions.Delete(csr, clusterstackv1alpha1.ReconcilingCondition)
		conditions.Delete(csr, clusterstackv1alpha1.StalledCondition)
	case st.stalled:
		conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.StalledCondition, Status: metav1.ConditionTrue, Reason: ready.Reason, Message: ready.Message})
		conditions.Delete(csr, clusterstackv1alpha1.ReconcilingCondition)
	default:
		conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.ReconcilingCondition, Status: metav1.ConditionTrue, Reason: ready.Reason, Message: ready.Message})
		conditions.Delete(csr, clusterstackv1alpha1.StalledCondition)
	}
}
