package reconciler

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
)

func TestProgressReachesTheControllerCoalesced(t *testing.T) {
	t.Parallel()
	release := func(owner string, ready bool, msg string) *clusterstackv1alpha1.ClusterStackRelease {
		csr := &clusterstackv1alpha1.ClusterStackRelease{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: "openstack-scs-1-32-v1"}}
		if owner != "" {
			csr.OwnerReferences = []metav1.OwnerReference{{APIVersion: clusterstackv1alpha1.GroupVersion.String(), Kind: "ClusterStack", Name: owner, Controller: ptr.To(true)}}
		}
		status := metav1.ConditionFalse
		if ready {
			status = metav1.ConditionTrue
		}
		csr.Status.Ready = ready
		csr.Status.Conditions = []metav1.Condition{{Type: clusterstackv1alpha1.ReadyCondition, Status: status, Reason: "R", Message: msg}}
		return csr
	}
	const delay = 200 * time.Millisecond
	h := EnqueueControllerOnProgress(clusterstackv1alpha1.GroupVersion.WithKind("ClusterStack").GroupKind(), delay)
	for _, tc := range []struct {
		name            string
		old, new        *clusterstackv1alpha1.ClusterStackRelease
		now, afterDelay []string
	}{
		{name: "progress only", old: release("stack", false, "Fetching"), new: release("stack", false, "Waiting for node images"),
			afterDelay: []string{"stack"}},
		{name: "became ready", old: release("stack", false, "Applying"), new: release("stack", true, ""),
			now: []string{"stack"}},
		{name: "owner changed", old: release("old", false, "Applying"), new: release("new", false, "Applying"),
			now: []string{"old", "new"}},
		{name: "no owner", old: release("", false, "Applying"), new: release("", false, "Fetching")},
		{name: "stalled", old: release("stack", false, "Applying"), new: stalled(release("stack", false, "Rendering failed")),
			now: []string{"stack"}},
		{name: "status.ready set after the Ready condition", old: readyCondition(release("stack", false, "All node images are active")),
			new: release("stack", true, "All node images are active"), now: []string{"stack"}},
		{name: "spec changed", old: release("stack", false, "Applying"), new: generation(release("stack", false, "Applying"), 2),
			now: []string{"stack"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
			defer q.ShutDown()
			h.Update(context.Background(), event.UpdateEvent{ObjectOld: tc.old, ObjectNew: tc.new}, q)
			if got := drain(q); !equalNames(got, tc.now) {
				t.Fatalf("enqueued at once: %v, want %v", got, tc.now)
			}
			time.Sleep(2 * delay)
			if got := drain(q); !equalNames(got, tc.afterDelay) {
				t.Fatalf("enqueued after the delay: %v, want %v", got, tc.afterDelay)
			}
		})
	}
}

// readyCondition is csr with its Ready condition True but status.ready not yet set: what Cluster
// API's patch helper leaves between its status and its conditions request.
func readyCondition(csr *clusterstackv1alpha1.ClusterStackRelease) *clusterstackv1alpha1.ClusterStackRelease {
	csr.Status.Conditions[0].Status = metav1.ConditionTrue
	return csr
}

func stalled(csr *clusterstackv1alpha1.ClusterStackRelease) *clusterstackv1alpha1.ClusterStackRelease {
	csr.Status.Conditions = append(csr.Status.Conditions, metav1.Condition{Type: clusterstackv1alpha1.StalledCondition, Status: metav1.ConditionTrue, Reason: "R"})
	return csr
}

func generation(csr *clusterstackv1alpha1.ClusterStackRelease, g int64) *clusterstackv1alpha1.ClusterStackRelease {
	csr.Generation = g
	return csr
}

func drain(q workqueue.TypedRateLimitingInterface[reconcile.Request]) []string {
	var out []string
	for q.Len() > 0 {
		r, _ := q.Get()
		out = append(out, r.Name)
		q.Done(r)
	}
	return out
}

func equalNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]bool{}
	for _, x := range a {
		seen[x] = true
	}
	for _, x := range b {
		if !seen[x] {
			return false
		}
	}
	return true
}
