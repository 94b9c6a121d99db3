// Package kstatus sets the condition triple that GitOps tools read health from without custom
// code: Ready summarises, Reconciling is True while work goes on, Stalled is True when only a user
// can help (kstatus "abnormal-true" conditions). Every controller sets the three together through
// these functions, so they never contradict each other.
//
// Messages must carry no timestamps or counters that change between identical reconciles: a
// waiting object then costs no writes.
package kstatus

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cluster-api/util/conditions"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
)

// MarkReady sets Ready True with msg, and Reconciling and Stalled False with settledReason (what
// the object settled in, e.g. Ready or ImageActive).
func MarkReady(obj conditions.Setter, settledReason, msg string) {
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.ReadyCondition, Status: metav1.ConditionTrue, Reason: csv1alpha1.ReadyReason, Message: msg})
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.ReconcilingCondition, Status: metav1.ConditionFalse, Reason: settledReason})
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.StalledCondition, Status: metav1.ConditionFalse, Reason: settledReason})
}

// MarkProgressing sets Ready False and Reconciling True with reason and msg, and Stalled False.
func MarkProgressing(obj conditions.Setter, reason, msg string) {
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: reason, Message: msg})
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.ReconcilingCondition, Status: metav1.ConditionTrue, Reason: reason, Message: msg})
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.StalledCondition, Status: metav1.ConditionFalse, Reason: csv1alpha1.ProgressingReason})
}

// MarkStalled sets Ready False and Stalled True with reason and msg, and Reconciling False.
func MarkStalled(obj conditions.Setter, reason, msg string) {
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: reason, Message: msg})
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.ReconcilingCondition, Status: metav1.ConditionFalse, Reason: reason})
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.StalledCondition, Status: metav1.ConditionTrue, Reason: reason, Message: msg})
}
