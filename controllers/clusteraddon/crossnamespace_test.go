package clusteraddon

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
)

// TestClassOfAnotherNamespace installs the addons of a Cluster whose classRef names a
// ClusterClass of another namespace, as Cluster API v1beta2 allows: the ClusterAddon is created
// beside the Cluster, and the release comes from the class's namespace, never the Cluster's.
func TestClassOfAnotherNamespace(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	tenant, stacks := newNamespace(t), newNamespace(t)
	c := &clusterv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "hotel"},
		Spec: clusterv1.ClusterSpec{Topology: clusterv1.Topology{
			ClassRef: clusterv1.ClusterClassRef{Name: className("v1"), Namespace: stacks},
			Version:  initialKubernetesVersion,
		}},
	}
	if err := mgmt.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteCluster(t, c) })
	createKubeconfig(t, tenant, c.Name, workload.Config)
	setInitialized(t, c)

	ca := waitReady(t, tenant, c.Name, className("v1"))
	g := NewWithT(t)
	g.Expect(ca.Spec.ClusterRef.Namespace).To(Equal(tenant))
	eventuallyWorkloadData(t, "kube-system", "fixture-cni", "clusterName", c.Name)
	g.Expect(releases.askedIn(className("v1"), stacks)).To(BeTrue(), "release %s was not asked for in the class's namespace %s", className("v1"), stacks)
	g.Expect(releases.askedIn(className("v1"), tenant)).To(BeFalse(), "release %s was asked for in the Cluster's namespace %s, not the class's", className("v1"), tenant)
}
