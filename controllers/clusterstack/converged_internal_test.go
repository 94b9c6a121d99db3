package clusterstack

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// A release is done without rendering only while everything its apply depended on is as it was
// when that apply found the objects as rendered: its spec and content, its inventory, the objects
// other releases write, the watched objects' versions, and the drift check not due. An apply that
// pruned anything, or does not know the version of everything it applied, is no convergence; one
// that wrote is, at the versions its writes were answered.
func TestConvergenceHoldsOnlyWhileNothingChanged(t *testing.T) {
	scheme, err := testenv.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cc := apply.Ref{Group: clusterv1.GroupVersion.Group, Version: "v1beta2", Kind: "ClusterClass", Namespace: "team-a", Name: "openstack-scs-1-32-v1"}
	tmpl := apply.Ref{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "OpenStackMachineTemplate", Namespace: "team-a", Name: "worker"}
	rel := &release.Release{Digest: "sha256:aaa"}

	type world struct {
		r   *ClusterStackReleaseReconciler
		csr *clusterstackv1alpha1.ClusterStackRelease
		c   client.Client
	}
	setup := func(t *testing.T) world {
		t.Helper()
		csr := csrOf("team-a", "openstack-scs-1-32-v1", false, cc, tmpl)
		csr.UID, csr.Generation = "uid-1", 1
		class := &clusterv1.ClusterClass{ObjectMeta: metav1.ObjectMeta{Namespace: cc.Namespace, Name: cc.Name}}
		c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(csr.DeepCopy(), class).Build()
		if err := c.Get(ctx, client.ObjectKeyFromObject(class), class); err != nil {
			t.Fatal(err)
		}
		r := &ClusterStackReleaseReconciler{Client: c, APIReader: c}
		res := apply.Result{Applied: []apply.Ref{cc, tmpl}, Versions: map[apply.Ref]string{cc.Key(): class.ResourceVersion, tmpl.Key(): "7"}}
		shared, err := r.readSharing(ctx, csr, res.Applied)
		if err != nil {
			t.Fatal(err)
		}
		r.remember(csr, convergenceKey(csr, rel), 2, res, shared)
		return world{r: r, csr: csr, c: c}
	}
	converged := func(w world) bool {
		_, ok := w.r.stillConverged(ctx, w.csr, rel)
		return ok
	}

	t.Run("unchanged", func(t *testing.T) {
		w := setup(t)
		due, ok := w.r.stillConverged(ctx, w.csr, rel)
		if !ok || due <= 0 {
			t.Fatalf("stillConverged = %s, %v; want converged with the drift check ahead", due, ok)
		}
	})
	t.Run("watched object changed", func(t *testing.T) {
		w := setup(t)
		class := &clusterv1.ClusterClass{}
		if err := w.c.Get(ctx, client.ObjectKey{Namespace: cc.Namespace, Name: cc.Name}, class); err != nil {
			t.Fatal(err)
		}
		class.Labels = map[string]string{"someone": "else"}
		if err := w.c.Update(ctx, class); err != nil {
			t.Fatal(err)
		}
		if converged(w) {
			t.Error("converged after the ClusterClass changed")
		}
	})
	t.Run("new generation", func(t *testing.T) {
		w := setup(t)
		w.csr.Generation++
		if converged(w) {
			t.Error("converged with a new generation")
		}
	})
	t.Run("new content", func(t *testing.T) {
		w := setup(t)
		if _, ok := w.r.stillConverged(ctx, w.csr, &release.Release{Digest: "sha256:bbb"}); ok {
			t.Error("converged with new release content")
		}
	})
	t.Run("inventory changed", func(t *testing.T) {
		w := setup(t)
		w.csr.Status.Resources = w.csr.Status.Resources[:1]
		if converged(w) {
			t.Error("converged with another inventory")
		}
	})
	t.Run("a newer release writes a shared object", func(t *testing.T) {
		w := setup(t)
		if err := w.c.Create(ctx, csrOf("team-a", "openstack-scs-1-32-v2", false, tmpl)); err != nil {
			t.Fatal(err)
		}
		if converged(w) {
			t.Error("converged although another release now writes the template")
		}
	})
	t.Run("drift check due", func(t *testing.T) {
		w := setup(t)
		w.r.DriftCheckInterval = time.Nanosecond
		res := apply.Result{Applied: []apply.Ref{cc, tmpl}, Versions: map[apply.Ref]string{cc.Key(): "1", tmpl.Key(): "7"}}
		w.r.remember(w.csr, convergenceKey(w.csr, rel), 2, res, &sharing{})
		time.Sleep(time.Millisecond)
		if converged(w) {
			t.Error("converged with the drift check due")
		}
	})
	t.Run("wrote, every version answered", func(t *testing.T) {
		// The first apply creates everything: the versions its writes left are what the events
		// of those writes carry, so they find the release converged.
		w := setup(t)
		class := &clusterv1.ClusterClass{}
		if err := w.c.Get(ctx, client.ObjectKey{Namespace: cc.Namespace, Name: cc.Name}, class); err != nil {
			t.Fatal(err)
		}
		res := apply.Result{Applied: []apply.Ref{cc, tmpl}, Changed: []apply.Ref{cc, tmpl}, Versions: map[apply.Ref]string{cc.Key(): class.ResourceVersion, tmpl.Key(): "8"}}
		shared, err := w.r.readSharing(ctx, w.csr, res.Applied)
		if err != nil {
			t.Fatal(err)
		}
		w.r.remember(w.csr, convergenceKey(w.csr, rel), 2, res, shared)
		if !converged(w) {
			t.Error("not converged after an apply that wrote everything at versions it was answered")
		}
		class.Labels = map[string]string{"changed": "by someone"}
		if err := w.c.Update(ctx, class); err != nil {
			t.Fatal(err)
		}
		if converged(w) {
			t.Error("converged although the ClusterClass changed after the write")
		}
	})
	for name, res := range map[string]apply.Result{
		"wrote without an answered version": {Applied: []apply.Ref{cc, tmpl}, Changed: []apply.Ref{tmpl}, Versions: map[apply.Ref]string{cc.Key(): "1"}},
		"pruned":                            {Applied: []apply.Ref{cc, tmpl}, Pruned: []apply.Ref{{Kind: "Old"}}, Versions: map[apply.Ref]string{cc.Key(): "1", tmpl.Key(): "7"}},
		"kept":                              {Applied: []apply.Ref{cc, tmpl, {Kind: "Kept"}}, Versions: map[apply.Ref]string{cc.Key(): "1", tmpl.Key(): "7"}},
		"not read":                          {Applied: []apply.Ref{cc, tmpl}, Versions: map[apply.Ref]string{cc.Key(): "1"}},
		"failed one":                        {Applied: []apply.Ref{cc, tmpl}, Failed: map[apply.Ref]error{tmpl: context.Canceled}, Versions: map[apply.Ref]string{cc.Key(): "1", tmpl.Key(): "7"}},
	} {
		t.Run("not remembered: "+name, func(t *testing.T) {
			w := setup(t)
			w.r.remember(w.csr, convergenceKey(w.csr, rel), 2, res, &sharing{})
			if converged(w) {
				t.Errorf("converged after an apply that %s", name)
			}
		})
	}
}

// A release's own status write does not bring it back; every other change does.
func TestNotOnlyStatusChanged(t *testing.T) {
	base := csrOf("team-a", "openstack-scs-1-32-v1", false)
	base.Generation, base.ResourceVersion = 1, "1"
	for name, tc := range map[string]struct {
		change func(*clusterstackv1alpha1.ClusterStackRelease)
		want   bool
	}{
		"status only": {func(c *clusterstackv1alpha1.ClusterStackRelease) {
			c.ResourceVersion = "2"
			c.Status.Ready = true
		}, false},
		"generation": {func(c *clusterstackv1alpha1.ClusterStackRelease) { c.Generation++ }, true},
		"annotation": {func(c *clusterstackv1alpha1.ClusterStackRelease) {
			c.Annotations = map[string]string{"cluster.x-k8s.io/paused": ""}
		}, true},
		"label":      {func(c *clusterstackv1alpha1.ClusterStackRelease) { c.Labels = map[string]string{"a": "b"} }, true},
		"finalizers": {func(c *clusterstackv1alpha1.ClusterStackRelease) { c.Finalizers = nil }, true},
		"owner": {func(c *clusterstackv1alpha1.ClusterStackRelease) {
			c.OwnerReferences = []metav1.OwnerReference{{UID: "cs"}}
		}, true},
		"deletion": {func(c *clusterstackv1alpha1.ClusterStackRelease) { now := metav1.Now(); c.DeletionTimestamp = &now }, true},
	} {
		t.Run(name, func(t *testing.T) {
			old := base.DeepCopy()
			old.Finalizers = []string{clusterstackv1alpha1.ClusterStackReleaseFinalizer}
			n := old.DeepCopy()
			tc.change(n)
			if got := notOnlyStatusChanged.Update(event.UpdateEvent{ObjectOld: old, ObjectNew: n}); got != tc.want {
				t.Errorf("Update = %v, want %v", got, tc.want)
			}
		})
	}
}
