package clusterstack

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/cluster-api/util/conditions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
)

// progressCoalescing is how long a ClusterStack waits to show a release's progress. Its summary
// and its Ready message carry each release's message, and a release passes through four or
// five of them within a second while it is fetched, waits for its node images and is applied:
// reconciling the ClusterStack on each wrote its status as often (17 status writes for a stack
// of three releases). A release that becomes ready, stalls, is deleted or changes otherwise
// than in its progress still brings its ClusterStack back at once.
const progressCoalescing = time.Second

// releaseToClusterStack enqueues the ClusterStack that controls a release (as the owner handler
// does) on the release's events, a mere progress update after progressCoalescing.
type releaseToClusterStack struct {
	delay time.Duration
}

var _ handler.EventHandler = releaseToClusterStack{}

type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]

func (h releaseToClusterStack) Create(_ context.Context, e event.CreateEvent, q queue) {
	enqueueOwner(e.Object, q)
}

func (h releaseToClusterStack) Update(_ context.Context, e event.UpdateEvent, q queue) {
	before, wasOwned := ownerRequest(e.ObjectOld)
	after, owned := ownerRequest(e.ObjectNew)
	if wasOwned && (!owned || before != after) {
		q.Add(before)
	}
	switch {
	case !owned:
	case onlyProgressed(e.ObjectOld, e.ObjectNew):
		q.AddAfter(after, h.delay)
	default:
		q.Add(after)
	}
}

func (h releaseToClusterStack) Delete(_ context.Context, e event.DeleteEvent, q queue) {
	enqueueOwner(e.Object, q)
}

func (h releaseToClusterStack) Generic(_ context.Context, e event.GenericEvent, q queue) {
	enqueueOwner(e.Object, q)
}

func enqueueOwner(o client.Object, q queue) {
	if req, ok := ownerRequest(o); ok {
		q.Add(req)
	}
}

// ownerRequest is the ClusterStack that controls o, as metav1.GetControllerOf says.
func ownerRequest(o client.Object) (reconcile.Request, bool) {
	ref := metav1.GetControllerOf(o)
	if ref == nil || ref.Kind != "ClusterStack" || ref.APIVersion != clusterstackv1alpha1.GroupVersion.String() {
		return reconcile.Request{}, false
	}
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: ref.Name}}, true
}

// onlyProgressed reports whether a release changed nothing its ClusterStack acts on or shows
// as a state: the same spec, metadata, readiness, Stalled condition and deletion; only messages,
// reasons or the inventory moved.
func onlyProgressed(o, n client.Object) bool {
	before, ok1 := o.(*clusterstackv1alpha1.ClusterStackRelease)
	after, ok2 := n.(*clusterstackv1alpha1.ClusterStackRelease)
	if !ok1 || !ok2 {
		return false
	}
	return before.Generation == after.Generation &&
		before.DeletionTimestamp.Equal(after.DeletionTimestamp) &&
		equality.Semantic.DeepEqual(before.Labels, after.Labels) &&
		equality.Semantic.DeepEqual(before.Annotations, after.Annotations) &&
		equality.Semantic.DeepEqual(before.Finalizers, after.Finalizers) &&
		equality.Semantic.DeepEqual(before.OwnerReferences, after.OwnerReferences) &&
		before.Status.Ready == after.Status.Ready &&
		conditions.IsTrue(before, clusterstackv1alpha1.ReadyCondition) == conditions.IsTrue(after, clusterstackv1alpha1.ReadyCondition) &&
		conditions.IsTrue(before, clusterstackv1alpha1.StalledCondition) == conditions.IsTrue(after, clusterstackv1alpha1.StalledCondition)
}
