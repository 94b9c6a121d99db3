package clusteraddon

import (
	"errors"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cluster-api/util/conditions"
	ctrl "sigs.k8s.io/controller-runtime"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/kstatus"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
)

// report is what the steps of one ClusterAddon reconcile found; setClusterAddonStatus turns it
// into conditions.
type report struct {
	// err is nil when the addons are applied and ready, else why not: an outcome of package
	// outcome (a failure to apply wrapped by failedApply), or a plain error retried with backoff
	// that no condition reports.
	err error
	// gone says the Cluster or the ClusterAddon is going away: nothing to report.
	gone bool
	// paused, when set, says the Cluster is paused and how: nothing was done, and the message
	// goes into the Paused condition.
	paused string
	// reached is whether the workload cluster answered; nil when it was not tried. When false,
	// err (a *outcome.Waiting) says why.
	reached *bool
	// readyMsg is Ready's message when err is nil.
	readyMsg string
	// requeue is when a ready ClusterAddon is looked at again, to repair drift in the workload
	// cluster, which is not watched.
	requeue time.Duration
}

// applyFailure marks an outcome as a failure to apply or delete addon objects, which
// ResourcesApplied reports besides the kstatus triple.
type applyFailure struct{ err error }

func (a *applyFailure) Error() string { return a.err.Error() }
func (a *applyFailure) Unwrap() error { return a.err }

func failedApply(err error) error { return &applyFailure{err: err} }

// setClusterAddonStatus is the ClusterAddon's status function: it sets Ready, Reconciling and
// Stalled (internal/kstatus), ClusterReachable and ResourcesApplied, Paused while the Cluster is
// paused, and status.ready from what the steps reported, and returns the reconcile result. It
// does no I/O.
func setClusterAddonStatus(ca *csv1alpha1.ClusterAddon, rep report) (ctrl.Result, error) {
	defer func() { ca.Status.Ready = conditions.IsTrue(ca, csv1alpha1.ReadyCondition) }()
	if rep.gone {
		return ctrl.Result{}, nil
	}
	if rep.paused != "" {
		// The other conditions keep saying what was last seen: a paused Cluster was not looked
		// at. The Cluster's resume event brings the next reconcile, which removes Paused (the
		// skeleton clears it before the steps run).
		conditions.Set(ca, metav1.Condition{Type: csv1alpha1.PausedCondition, Status: metav1.ConditionTrue, Reason: csv1alpha1.ClusterPausedReason, Message: rep.paused})
		return ctrl.Result{}, nil
	}
	reason, msg := explain(rep.err)
	if rep.reached != nil {
		if *rep.reached {
			conditions.Set(ca, metaCondition(csv1alpha1.ClusterReachableCondition, true, csv1alpha1.ReadyReason, ""))
		} else {
			conditions.Set(ca, metaCondition(csv1alpha1.ClusterReachableCondition, false, reason, msg))
		}
	}
	var af *applyFailure
	switch {
	case rep.err == nil:
		conditions.Set(ca, metaCondition(csv1alpha1.ResourcesAppliedCondition, true, csv1alpha1.ReadyReason, ""))
	case errors.As(rep.err, &af):
		conditions.Set(ca, metaCondition(csv1alpha1.ResourcesAppliedCondition, false, reason, msg))
	}
	kstatus.Summarise(ca, rep.err, csv1alpha1.ReadyReason, rep.readyMsg)
	if rep.err == nil {
		return ctrl.Result{RequeueAfter: rep.requeue}, nil
	}
	return outcome.Result(ctrl.Result{}, rep.err)
}

// explain returns the reason and message of an outcome; a plain error has no reason.
func explain(err error) (reason, msg string) {
	if s, ok := outcome.AsStalled(err); ok {
		return s.Reason, s.Message
	}
	if w, ok := outcome.AsWaiting(err); ok {
		return w.Reason, w.Message
	}
	if t, ok := outcome.AsTransient(err); ok {
		return t.Reason, t.Error()
	}
	if err != nil {
		return csv1alpha1.ProgressingReason, err.Error()
	}
	return "", ""
}

func metaCondition(t string, ok bool, reason, msg string) metav1.Condition {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg}
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
