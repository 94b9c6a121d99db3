package apply_test

import (
	"context"
	"slices"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
)

// TestApplySharedObject plays two appliers with their own inventories that render the same
// ConfigMap with different content, as two releases of a stack render one ORC Image: the one
// the caller names writes it, the other only records it, and neither deletes it while the other
// holds it.
func TestApplySharedObject(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	sharedCM := func(owner string) *unstructured.Unstructured {
		return obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared, namespace: "+ns+", labels: {owner: "+owner+"}}\ndata: {from: "+owner+"}\n")
	}
	ownCM := func(owner string) *unstructured.Unstructured {
		return obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "+owner+", namespace: "+ns+"}\n")
	}
	sharedRef := apply.RefOf(sharedCM("x"))
	isShared := func(ref apply.Ref) bool { return ref.Key() == sharedRef.Key() }
	never := func(apply.Ref) bool { return false }

	// "new" writes the shared object; "old" defers to it.
	newer := applier().WithSharing(never, isShared)
	older := applier().WithSharing(isShared, isShared)
	newRes, _ := mustApply(t, newer, []*unstructured.Unstructured{ownCM("new"), sharedCM("new")}, nil)
	oldRes, n := mustApply(t, older, []*unstructured.Unstructured{ownCM("old"), sharedCM("old")}, nil)
	if n != 1 {
		t.Errorf("the deferring applier made %d writes, want 1 (its own object)", n)
	}
	if want := []apply.Ref{apply.RefOf(ownCM("old")), sharedRef}; !slices.Equal(oldRes.Applied, want) {
		t.Errorf("inventory %v, want %v: a deferred object is recorded", oldRes.Applied, want)
	}
	if !slices.Equal(oldRes.Deferred, []apply.Ref{sharedRef}) || slices.Contains(oldRes.Changed, sharedRef) {
		t.Errorf("deferred %v, changed %v", oldRes.Deferred, oldRes.Changed)
	}
	live := get(t, sharedRef)
	if live.GetLabels()["owner"] != "new" {
		t.Errorf("the shared object carries %v, want the writer's content", live.GetLabels())
	}
	// Converged: neither writes, however often each applies.
	for range 2 {
		if _, n := mustApply(t, newer, []*unstructured.Unstructured{ownCM("new"), sharedCM("new")}, newRes.Applied); n != 0 {
			t.Errorf("writer: %d writes once converged", n)
		}
		if _, n := mustApply(t, older, []*unstructured.Unstructured{ownCM("old"), sharedCM("old")}, oldRes.Applied); n != 0 {
			t.Errorf("deferring applier: %d writes once converged", n)
		}
	}

	// The writer stops rendering it while the other holds it: released, not deleted.
	r, _ := mustApply(t, newer, []*unstructured.Unstructured{ownCM("new")}, newRes.Applied)
	if !slices.Equal(r.Released, []apply.Ref{sharedRef}) || len(r.Pruned) != 0 || slices.Contains(r.Applied, sharedRef) {
		t.Errorf("released %v, pruned %v, inventory %v", r.Released, r.Pruned, r.Applied)
	}
	uid := get(t, sharedRef).GetUID()

	// The other one takes it over: its content, the same object.
	older = applier().WithSharing(never, never)
	oldRes, n = mustApply(t, older, []*unstructured.Unstructured{ownCM("old"), sharedCM("old")}, oldRes.Applied)
	if n != 1 || !slices.Equal(oldRes.Changed, []apply.Ref{sharedRef}) {
		t.Errorf("take-over: %d writes, changed %v", n, oldRes.Changed)
	}
	if live := get(t, sharedRef); live.GetUID() != uid || live.GetLabels()["owner"] != "old" {
		t.Errorf("after take-over: uid %s (was %s), labels %v", live.GetUID(), uid, live.GetLabels())
	}

	// Delete leaves what another holds, and deletes it once none does.
	held := applier().WithSharing(never, isShared)
	remaining, err := held.Delete(ctx, oldRes.Applied)
	if err != nil || len(remaining) != 0 {
		t.Fatalf("delete: remaining %v, %v", remaining, err)
	}
	get(t, sharedRef)
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "old"}, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap"}}); !apierrors.IsNotFound(err) {
		t.Errorf("own object not deleted: %v", err)
	}
	if remaining, err := applier().Delete(ctx, []apply.Ref{sharedRef}); err != nil || len(remaining) != 0 {
		t.Fatalf("last delete: remaining %v, %v", remaining, err)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shared"}, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap"}}); !apierrors.IsNotFound(err) {
		t.Errorf("shared object not deleted by the last holder: %v", err)
	}
}
