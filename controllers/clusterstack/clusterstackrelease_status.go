package clusterstack

import (
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cluster-api/util/conditions"
	ctrl "sigs.k8s.io/controller-runtime"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
)

// releaseSteps are the step conditions of a ClusterStackRelease, in the order the steps run.
var releaseSteps = []string{
	clusterstackv1alpha1.ReleaseAvailableCondition,
	clusterstackv1alpha1.ProviderReadyCondition,
	clusterstackv1alpha1.ResourcesAppliedCondition,
}

// releaseReport is what one reconcile of a ClusterStackRelease found.
type releaseReport struct {
	// steps holds the outcome of every step that ran, by its condition: nil (done), an outcome
	// (see package outcome), or a plain error, which leaves the condition as it was. A step that
	// did not run keeps its last condition too.
	steps map[string]error
	// err is what ended the reconcile: the outcome of the step that stopped, or a failure between
	// the steps (listing Clusters, reading ORC Images); nil when every step ran.
	err error
	// kubernetesVersion is the release's Kubernetes version, once it is available.
	kubernetesVersion string
	// imagesWaiting describes the ORC Images that are not Available yet.
	imagesWaiting []string
	// driftCheck is when a release that ran every step compares its objects again.
	driftCheck time.Duration
	// deletion marks the report of the delete steps; err is then their outcome: nil (done, or
	// no finalizer), a wait (for Clusters, or for objects to go), or a failure.
	deletion bool
}

// stopsAt records the outcome of the step that sets condition and reports whether it ends the
// reconcile.
func (rep *releaseReport) stopsAt(condition string, err error) bool {
	rep.steps[condition] = err
	rep.err = err
	return err != nil
}

// setClusterStackReleaseStatus sets the step conditions from what the steps reported and
// summarises them into Ready, Reconciling, Stalled and status.ready. Ready is True only when
// every step is: the release is available, its provider object (if any) is ready, every object
// is applied and every ORC Image is Available. A step that was not reached in this reconcile
// keeps its last condition, so a provider whose readiness goes away makes the release not ready
// with the provider's reason. It returns the reconcile's result.
func setClusterStackReleaseStatus(csr *clusterstackv1alpha1.ClusterStackRelease, rep releaseReport) (ctrl.Result, error) {
	if rep.deletion {
		if setDeletionStatus(csr, rep.err) {
			csr.Status.Ready = false
		}
		return outcome.Result(ctrl.Result{}, rep.err)
	}

	stalled := false
	for _, t := range releaseSteps {
		err, ran := rep.steps[t]
		switch {
		case !ran:
		case t == clusterstackv1alpha1.ProviderReadyCondition && csr.Spec.ProviderRef == nil:
			// Without a provider object there is nothing to be ready.
			conditions.Delete(csr, t)
		default:
			setStep(csr, t, err)
			_, s := outcome.AsStalled(err)
			stalled = stalled || s
		}
	}
	if rep.kubernetesVersion != "" {
		csr.Status.KubernetesVersion = rep.kubernetesVersion
	}
	ready := releaseReady(csr, rep.imagesWaiting)
	conditions.Set(csr, ready)
	csr.Status.Ready = ready.Status == metav1.ConditionTrue
	setSummary(csr, ready, stalled, ready.Message)
	return outcome.Result(ctrl.Result{RequeueAfter: rep.driftCheck}, rep.err)
}

// releaseReady returns Ready: True when every step condition is and no ORC Image is waited for,
// else False saying why, from the first step in order that is not True.
func releaseReady(csr *clusterstackv1alpha1.ClusterStackRelease, imagesWaiting []string) metav1.Condition {
	ready := metav1.Condition{Type: clusterstackv1alpha1.ReadyCondition, Status: metav1.ConditionTrue, Reason: clusterstackv1alpha1.ReadyReason}
	for _, t := range releaseSteps {
		if t == clusterstackv1alpha1.ProviderReadyCondition && csr.Spec.ProviderRef == nil {
			continue
		}
		c := conditions.Get(csr, t)
		if c == nil {
			ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, clusterstackv1alpha1.ProgressingReason, "Waiting for "+t
			return ready
		}
		if c.Status != metav1.ConditionTrue {
			ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, c.Reason, c.Message
			return ready
		}
	}
	if len(imagesWaiting) > 0 {
		ready.Status, ready.Reason = metav1.ConditionFalse, ImagesNotAvailableReason
		ready.Message = "Waiting for ORC Images to be Available: " + strings.Join(imagesWaiting, ", ")
	}
	return ready
}

// setStep sets the condition of a step from its outcome: True when it finished, False with the
// outcome's reason and message when it stalled, waits or retries. A plain error leaves the
// condition as it was: it is retried with backoff and is no news for a user (a write conflict, a
// read that failed).
func setStep(obj conditions.Setter, condition string, err error) {
	c := metav1.Condition{Type: condition, Status: metav1.ConditionTrue, Reason: clusterstackv1alpha1.ReadyReason}
	if s, ok := outcome.AsStalled(err); ok {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, s.Reason, s.Message
	} else if w, ok := outcome.AsWaiting(err); ok {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, w.Reason, w.Message
	} else if t, ok := outcome.AsTransient(err); ok {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, t.Reason, t.Error()
	} else if err != nil {
		return
	}
	conditions.Set(obj, c)
}

// setSummary sets Reconciling and Stalled after Ready: both absent once Ready is True, Stalled
// (with stalledMsg) when only a user can help, else Reconciling, each with Ready's reason.
func setSummary(obj conditions.Setter, ready metav1.Condition, stalled bool, stalledMsg string) {
	switch {
	case ready.Status == metav1.ConditionTrue:
		conditions.Delete(obj, clusterstackv1alpha1.ReconcilingCondition)
		conditions.Delete(obj, clusterstackv1alpha1.StalledCondition)
	case stalled:
		conditions.Set(obj, metav1.Condition{Type: clusterstackv1alpha1.StalledCondition, Status: metav1.ConditionTrue, Reason: ready.Reason, Message: stalledMsg})
		conditions.Delete(obj, clusterstackv1alpha1.ReconcilingCondition)
	default:
		conditions.Set(obj, metav1.Condition{Type: clusterstackv1alpha1.ReconcilingCondition, Status: metav1.ConditionTrue, Reason: ready.Reason, Message: ready.Message})
		conditions.Delete(obj, clusterstackv1alpha1.StalledCondition)
	}
}

// setDeletionStatus reports an object whose deletion waits (for Clusters, or for what it
// deletes): Ready False and Reconciling with the wait's reason and message. It reports whether
// it changed anything: the other outcomes of a deletion are a failure that is retried and no
// news for a user, or done, when the object goes away.
func setDeletionStatus(obj conditions.Setter, err error) bool {
	w, ok := outcome.AsWaiting(err)
	if !ok {
		return false
	}
	ready := metav1.Condition{Type: clusterstackv1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: w.Reason, Message: w.Message}
	conditions.Set(obj, ready)
	setSummary(obj, ready, false, "")
	return true
}
