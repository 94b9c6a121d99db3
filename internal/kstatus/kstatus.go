// Package kstatus sets the condition triple that GitOps tools read health from without custom
// code: Ready summarises, Reconciling is True while work goes on, Stalled is True when only a user
// can help (kstatus "abnormal-true" conditions). Every controller sets the three together through
// these functions, so they never contradict each other.
//
// Messages must carry no timestamps or counters that change between identical reconciles: a
// waiting object then costs no writes. The one exception is the time of the next retry during a
// cloud outage: it changes only when a new retry is scheduled, which is a change worth a write. They are bounded here (BoundMessage, BoundConditions): the
// API server refuses a condition message over 32 KiB, and a status patch refused for it is
// refused on every retry, so the user would see nothing of what went wrong.
package kstatus

import (
	"fmt"
	"slices"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cluster-api/util/conditions"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
)

// Summarise sets the triple from the outcome of a reconcile (see package outcome): nil is ready
// (readyMsg, settled in settledReason), a stall is Stalled, a wait or a transient failure with a
// reason is Reconciling. Any other error leaves the triple as it is: it is retried with backoff
// and is no news for a user (a write conflict, a cache not synced yet).
func Summarise(obj conditions.Setter, err error, settledReason, readyMsg string) {
	if err == nil {
		MarkReady(obj, settledReason, readyMsg)
		return
	}
	if s, ok := outcome.AsStalled(err); ok {
		MarkStalled(obj, s.Reason, s.Message)
		return
	}
	if w, ok := outcome.AsWaiting(err); ok {
		MarkProgressing(obj, w.Reason, w.Message)
		return
	}
	if t, ok := outcome.AsTransient(err); ok {
		MarkProgressing(obj, t.Reason, t.Error())
	}
}

// MarkReady sets Ready True with msg, and Reconciling and Stalled False with settledReason (what
// the object settled in, e.g. Ready or ImageActive).
func MarkReady(obj conditions.Setter, settledReason, msg string) {
	msg = BoundMessage(msg)
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.ReadyCondition, Status: metav1.ConditionTrue, Reason: csv1alpha1.ReadyReason, Message: msg})
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.ReconcilingCondition, Status: metav1.ConditionFalse, Reason: settledReason})
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.StalledCondition, Status: metav1.ConditionFalse, Reason: settledReason})
}

// MarkProgressing sets Ready False and Reconciling True with reason and msg, and Stalled False.
func MarkProgressing(obj conditions.Setter, reason, msg string) {
	msg = BoundMessage(msg)
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: reason, Message: msg})
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.ReconcilingCondition, Status: metav1.ConditionTrue, Reason: reason, Message: msg})
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.StalledCondition, Status: metav1.ConditionFalse, Reason: csv1alpha1.ProgressingReason})
}

// MarkStalled sets Ready False and Stalled True with reason and msg, and Reconciling False.
func MarkStalled(obj conditions.Setter, reason, msg string) {
	msg = BoundMessage(msg)
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: reason, Message: msg})
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.ReconcilingCondition, Status: metav1.ConditionFalse, Reason: reason})
	conditions.Set(obj, metav1.Condition{Type: csv1alpha1.StalledCondition, Status: metav1.ConditionTrue, Reason: reason, Message: msg})
}

// MaxMessageBytes bounds condition messages: far below the API's 32 KiB, and long enough for
// what to fix and the innermost cause of any error the operator reports. Longer messages are
// errors that repeat themselves (template include chains, lists of many objects); `kubectl
// describe` of a few KiB is still readable.
const MaxMessageBytes = 4 << 10

// BoundMessage returns msg if it fits MaxMessageBytes, else its head (the action and what to fix:
// messages start with them) and its tail (the innermost cause: wrapped errors end with it), with
// a marker of how much was cut between them. It cuts between UTF-8 characters, never inside one.
func BoundMessage(msg string) string { return Bound(msg, MaxMessageBytes) }

// MaxEventNoteBytes is the API's limit of an event's note (events.k8s.io/v1): a longer note is
// refused and the event lost.
const MaxEventNoteBytes = 1 << 10

// Bound returns msg if it fits max bytes, else its head and tail around a marker, as
// BoundMessage does.
func Bound(msg string, max int) string {
	if len(msg) <= max {
		return msg
	}
	const marker = " [... %d bytes cut ...] "
	room := max - len(fmt.Sprintf(marker, len(msg)))
	head, tail := room*2/3, room-room*2/3
	for head > 0 && !utf8.RuneStart(msg[head]) {
		head--
	}
	start := len(msg) - tail
	for start < len(msg) && !utf8.RuneStart(msg[start]) {
		start++
	}
	return msg[:head] + fmt.Sprintf(marker, start-head) + msg[start:]
}

// BoundConditions bounds the message of every condition of obj. Controllers call it in their
// deferred status patch, so that a message set anywhere in the reconcile (step conditions too)
// cannot make the patch fail.
func BoundConditions(obj conditions.Setter) {
	conds := obj.GetConditions()
	changed := false
	for i := range conds {
		if b := BoundMessage(conds[i].Message); b != conds[i].Message {
			conds[i].Message = b
			changed = true
		}
	}
	if changed {
		obj.SetConditions(conds)
	}
}

// DropForeign removes every condition whose type is not one of owned. The operator is the only
// writer of its kinds' status, so such a condition was left by an earlier writer: after a
// migration from the SCS reference, its Cluster API v1beta1 conditions (HelmChartApplied,
// GitAPIAvailable, ...), stale from then on, and without a reason when True, which the API server
// refuses to store again in a status write that changes the list.
func DropForeign(obj conditions.Setter, owned []string) {
	conds := obj.GetConditions()
	kept := conds[:0:0]
	for _, c := range conds {
		if slices.Contains(owned, c.Type) {
			kept = append(kept, c)
		}
	}
	if len(kept) != len(conds) {
		obj.SetConditions(kept)
	}
}
