package reconciler

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// ProgressCoalescing is how long a controller waits to show the mere progress of an object it
// controls (see EnqueueControllerOnProgress).
const ProgressCoalescing = time.Second

// EnqueueControllerOnProgress enqueues the controller of an object (its owner reference with
// controller: true, of the owner's group and kind), as controller-runtime's owner handler does
// with OnlyControllerOwner, with one difference: an update that is mere progress, a new message
// (see OnlyProgressed), enqueues it after delay.
//
// The statuses of the chain ClusterStack <- ClusterStackRelease <- OpenStackClusterStackRelease
// repeat the message of the object below: the provider object passes through four or five
// messages within a second while its node images come, and each one cost a status write of the
// release and of its ClusterStack (17 ClusterStack status writes for a stack of three releases).
// Delayed, several of them are one reconcile: the queue keeps a waiting item's earliest time.
// What changes a state (ready, stalled, deleted, a new spec or owner) is enqueued at once, so
// the way to ready is not slower.
func EnqueueControllerOnProgress(owner schema.GroupKind, delay time.Duration) handler.EventHandler {
	return progressHandler{owner: owner, delay: delay}
}

type progressHandler struct {
	owner schema.GroupKind
	delay time.Duration
}

type requestQueue = workqueue.TypedRateLimitingInterface[reconcile.Request]

func (h progressHandler) Create(_ context.Context, e event.CreateEvent, q requestQueue) {
	h.enqueue(e.Object, q)
}

func (h progressHandler) Update(_ context.Context, e event.UpdateEvent, q requestQueue) {
	before, wasOwned := h.controllerOf(e.ObjectOld)
	after, owned := h.controllerOf(e.ObjectNew)
	if wasOwned && (!owned || before != after) {
		q.Add(before)
	}
	switch {
	case !owned:
	case OnlyProgressed(e.ObjectOld, e.ObjectNew):
		q.AddAfter(after, h.delay)
	default:
		q.Add(after)
	}
}

func (h progressHandler) Delete(_ context.Context, e event.DeleteEvent, q requestQueue) {
	h.enqueue(e.Object, q)
}

func (h progressHandler) Generic(_ context.Context, e event.GenericEvent, q requestQueue) {
	h.enqueue(e.Object, q)
}

func (h progressHandler) enqueue(o client.Object, q requestQueue) {
	if req, ok := h.controllerOf(o); ok {
		q.Add(req)
	}
}

func (h progressHandler) controllerOf(o client.Object) (reconcile.Request, bool) {
	ref := metav1.GetControllerOf(o)
	if ref == nil || ref.Kind != h.owner.Kind {
		return reconcile.Request{}, false
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil || gv.Group != h.owner.Group {
		return reconcile.Request{}, false
	}
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: ref.Name}}, true
}

// OnlyProgressed reports whether an update changed nothing but progress: the same generation,
// deletion, labels, annotations, finalizers and owners, and the same status but for the reasons,
// messages and times of its conditions (each condition type keeps its status). Any other status
// field that moved (status.ready, an inventory, an image ID) is a change of state, as is a
// condition that came, went or flipped. An object that cannot be compared never only progressed.
func OnlyProgressed(o, n client.Object) bool {
	if !OnlyStatusChanged(o, n) {
		return false
	}
	before, ok1 := stateOf(o)
	after, ok2 := stateOf(n)
	return ok1 && ok2 && equality.Semantic.DeepEqual(before, after)
}

// OnlyStatusChanged reports whether an update left the generation (the spec), the deletion, the
// labels, annotations, finalizers and owners as they were: whatever moved is the status (with the
// resourceVersion and managed fields that come with it).
func OnlyStatusChanged(o, n client.Object) bool {
	return o.GetGeneration() == n.GetGeneration() &&
		o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp()) &&
		equality.Semantic.DeepEqual(o.GetLabels(), n.GetLabels()) &&
		equality.Semantic.DeepEqual(o.GetAnnotations(), n.GetAnnotations()) &&
		equality.Semantic.DeepEqual(o.GetFinalizers(), n.GetFinalizers()) &&
		equality.Semantic.DeepEqual(o.GetOwnerReferences(), n.GetOwnerReferences())
}

// stateOf is an object's status with each condition reduced to its type and status.
func stateOf(o client.Object) (map[string]any, bool) {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, false
	}
	status, _ := u["status"].(map[string]any)
	if status == nil {
		return map[string]any{}, true
	}
	conds, _ := status["conditions"].([]any)
	reduced := make([]any, 0, len(conds))
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok {
			return nil, false
		}
		reduced = append(reduced, map[string]any{"type": m["type"], "status": m["status"]})
	}
	status["conditions"] = reduced
	return status, true
}
