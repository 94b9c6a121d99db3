package clusterstack

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// TestProviderObjectIsCreatedWithItsControllersFinalizer: with ProviderFinalizer the provider
// object is created with it (its controller then needs no write of its own first); without it,
// as where no provider controller runs, none is set.
func TestProviderObjectIsCreatedWithItsControllersFinalizer(t *testing.T) {
	t.Parallel()
	scheme, err := testenv.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	for _, fin := range []string{infrav1alpha1.OpenStackClusterStackReleaseFinalizer, ""} {
		c := fake.NewClientBuilder().WithScheme(scheme).Build()
		r := &ClusterStackReconciler{Client: c, ProviderFinalizer: fin}
		csr := &clusterstackv1alpha1.ClusterStackRelease{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "openstack-scs-1-32-v1", UID: "uid-1"}}
		tmpl := &infrav1alpha1.OpenStackClusterStackReleaseTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "openstack"}}
		if err := r.ensureProvider(context.Background(), csr, tmpl); err != nil {
			t.Fatal(err)
		}
		got := &infrav1alpha1.OpenStackClusterStackRelease{}
		if err := c.Get(context.Background(), types.NamespacedName{Namespace: "team-a", Name: csr.Name}, got); err != nil {
			t.Fatal(err)
		}
		has := controllerutil.ContainsFinalizer(got, infrav1alpha1.OpenStackClusterStackReleaseFinalizer)
		if has != (fin != "") {
			t.Errorf("ProviderFinalizer %q: the created provider object has finalizers %v", fin, got.Finalizers)
		}
	}
}
