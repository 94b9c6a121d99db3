// Package reconciler is the one shape every reconciler of the operator has, as in Cluster API:
// get the object (gone: done), a logger with it, the pause check, the finalizer and a deferred
// patch of what changed (writer.go), then the kind's delete or normal steps, and last the kind's pure
// status function, which turns what the steps reported into conditions and the reconcile result.
// A kind supplies its steps and its status function (a Kind); the skeleton does the rest, so
// preamble, pause, observedGeneration and the stall and failure events are the same for every
// kind.
package reconciler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"sigs.k8s.io/cluster-api/util/annotations"
	"sigs.k8s.io/cluster-api/util/conditions"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/kstatus"
)

// Object is what the skeleton reconciles: an API object with conditions.
type Object interface {
	client.Object
	conditions.Setter
}

// Kind describes one kind to the skeleton. R is what the kind's steps report: an error (nil, or
// an outcome of package outcome) or a struct of the steps' findings.
type Kind[T Object, R any] struct {
	// Name is the kind's name for logs and errors, e.g. "ClusterStack".
	Name string
	// New returns an empty object of the kind.
	New func() T
	// Reader reads the object: the manager's cache, or the API server for kinds whose status is
	// an inventory that a stale read would overwrite.
	Reader client.Reader
	// Client writes the finalizer and the status.
	Client client.Client
	// Finalizer is added before any step runs; empty adds none.
	Finalizer string
	// Conditions are the condition types the kind sets besides Ready, Reconciling, Stalled and
	// Paused, which are always owned. Every other type is removed before the status is written
	// (kstatus.DropForeign): a kind must list every condition its status function sets.
	Conditions []string
	// Normal runs the steps of a live object. The steps report; they set no conditions.
	Normal func(ctx context.Context, obj T) R
	// Delete runs the steps of an object being deleted.
	Delete func(ctx context.Context, obj T) R
	// Status is the kind's pure status function: it sets the conditions (and the status fields
	// that follow from them) from the report and returns the reconcile result and error, usually
	// through outcome.Result. It does no I/O.
	Status func(obj T, rep R) (ctrl.Result, error)
	// Observed says whether the report describes the current spec, so that
	// status.observedGeneration is recorded; nil means: when Status returned no error.
	Observed func(rep R) bool
	// Gone is called with the key of an object that no longer exists, to forget what is kept
	// per object; optional.
	Gone func(types.NamespacedName)
	// Recorder, when set, gets a Warning event whenever Stalled turns True or its message
	// changes, and when Reconciling turns to one of FailureReasons: events only when something
	// changed or failed, as Cluster API emits them.
	Recorder events.EventRecorder
	// FailureReasons are the reasons of a True Reconciling condition that report a failure
	// being retried (an unreachable cloud, a refused apply), as opposed to waiting for something
	// that is on its way. When Reconciling turns True with one of them, or its reason changes to
	// one of them, Recorder gets one Warning event; the same failure retried again (even with a
	// new message, such as the next retry time) is no news, so a long outage costs one event.
	// The last reason is kept in the object's status, so a restart does not repeat the event.
	FailureReasons []string
	// Lock, when set, is called once the object is read and its unlock runs after the status
	// patch: for kinds whose objects share something outside the API (a Glance image name), so
	// that the next holder sees what this reconcile recorded.
	Lock func(obj T) (unlock func())
	// Patch, when set, replaces the default writer: it writes what the reconcile changed between
	// before and obj, recording observedGeneration when observed. Persist is not available then.
	Patch func(ctx context.Context, before, obj T, observed bool) error
}

// Reconcile is the skeleton; a kind's reconciler calls it from its own Reconcile.
func (k *Kind[T, R]) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, reterr error) {
	obj := k.New()
	if err := k.Reader.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			if k.Gone != nil {
				k.Gone(req.NamespacedName)
			}
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("reading %s %s: %w", k.Name, req.NamespacedName, err)
	}
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithValues(k.Name, klog.KObj(obj)))
	if k.Lock != nil {
		// Deferred first, so it runs after the deferred status patch.
		defer k.Lock(obj)()
	}

	deleting := !obj.GetDeletionTimestamp().IsZero()
	if !deleting && k.Finalizer != "" && !controllerutil.ContainsFinalizer(obj, k.Finalizer) {
		base := client.MergeFrom(obj.DeepCopyObject().(T))
		controllerutil.AddFinalizer(obj, k.Finalizer)
		if err := k.Client.Patch(ctx, obj, base); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding the finalizer to %s: %w", k.Name, err)
		}
	}

	before := obj.DeepCopyObject().(T)
	w := &writer[T]{kind: k.Name, client: k.Client}
	if k.Patch == nil {
		if err := w.start(obj); err != nil {
			return ctrl.Result{}, err
		}
		ctx = context.WithValue(ctx, persistKey{}, func(ctx context.Context) error { return w.persist(ctx, obj) })
	}

	observed := false
	start := time.Now()
	defer func() {
		kstatus.DropForeign(obj, k.owned())
		kstatus.BoundConditions(obj)
		k.notify(before, obj, deleting)
		var err error
		if k.Patch != nil {
			err = k.Patch(ctx, before, obj, observed)
		} else {
			err = w.patch(ctx, obj, observed)
		}
		if err != nil && !apierrors.IsNotFound(err) {
			reterr = errors.Join(reterr, err)
		}
		// Where the time goes, step by step across kinds (a timeline of the log at V(4)).
		ctrl.LoggerFrom(ctx).V(4).Info("Reconciled", "duration", time.Since(start), "requeueAfter", res.RequeueAfter, "ready", conditions.IsTrue(obj, csv1alpha1.ReadyCondition), "error", reterr)
	}()

	if annotations.HasPaused(obj) {
		// Nothing is read or written for a paused object: `clusterctl move` pauses what it moves.
		conditions.Set(obj, metav1.Condition{Type: csv1alpha1.PausedCondition, Status: metav1.ConditionTrue, Reason: csv1alpha1.PausedReason,
			Message: fmt.Sprintf("The %s carries the annotation %s: remove it to resume", k.Name, "cluster.x-k8s.io/paused")})
		return ctrl.Result{}, nil
	}
	conditions.Delete(obj, csv1alpha1.PausedCondition)

	var rep R
	if deleting {
		rep = k.Delete(ctx, obj)
	} else {
		rep = k.Normal(ctx, obj)
	}
	res, err := k.Status(obj, rep)
	if k.Observed != nil {
		observed = k.Observed(rep)
	} else {
		observed = err == nil
	}
	return res, err
}

// owned returns the conditions the kind's status owns: every other type is dropped before the
// status is written.
func (k *Kind[T, R]) owned() []string {
	return append([]string{csv1alpha1.ReadyCondition, csv1alpha1.ReconcilingCondition, csv1alpha1.StalledCondition, csv1alpha1.PausedCondition}, k.Conditions...)
}

// notify emits the stall event when Stalled turned True or says something new, and the failure
// event when Reconciling turned to a failure reason.
func (k *Kind[T, R]) notify(before, after T, deleting bool) {
	if k.Recorder == nil {
		return
	}
	action := "Reconcile"
	if deleting {
		action = "Delete"
	}
	if now := conditions.Get(after, csv1alpha1.StalledCondition); now != nil && now.Status == metav1.ConditionTrue {
		if was := conditions.Get(before, csv1alpha1.StalledCondition); was == nil || was.Status != metav1.ConditionTrue || was.Message != now.Message {
			k.Recorder.Eventf(after, nil, corev1.EventTypeWarning, now.Reason, action, "%s", kstatus.Bound(now.Message, kstatus.MaxEventNoteBytes))
		}
		return
	}
	now := conditions.Get(after, csv1alpha1.ReconcilingCondition)
	if now == nil || now.Status != metav1.ConditionTrue || !slices.Contains(k.FailureReasons, now.Reason) {
		return
	}
	if was := conditions.Get(before, csv1alpha1.ReconcilingCondition); was != nil && was.Status == metav1.ConditionTrue && was.Reason == now.Reason {
		return
	}
	k.Recorder.Eventf(after, nil, corev1.EventTypeWarning, now.Reason, action, "%s", kstatus.Bound(now.Message, kstatus.MaxEventNoteBytes))
}

// persistKey is the context key of the Persist function.
type persistKey struct{}

// Persist writes the object's status now, in the middle of a reconcile: for steps that must
// record what they created before they go on (an image ID right after the create), so that a
// crash cannot lose it. The deferred patch then writes only what changed after. It fails for a
// kind that brings its own Patch.
func Persist(ctx context.Context) error {
	p, ok := ctx.Value(persistKey{}).(func(context.Context) error)
	if !ok {
		return errors.New("persisting the status: the reconciler brings its own Patch")
	}
	return p(ctx)
}

// persist patches now and starts anew from what was written, so that the deferred patch
// compares against the stored state (a field cleared after persist must be removed, not lost in
// an empty diff).
func (w *writer[T]) persist(ctx context.Context, obj T) error {
	if err := w.patch(ctx, obj, false); err != nil {
		return err
	}
	return w.start(obj)
}
