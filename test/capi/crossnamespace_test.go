package capi

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	runtimehooksv1 "sigs.k8s.io/cluster-api/api/runtime/hooks/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
	"github.com/seed-a720dd5e/clusterstack-operator/test/capiflow"
)

// TestClassOfAnotherNamespaceWithRealClusterAPI creates a Cluster whose classRef names the
// ClusterClass of a ClusterStack in another namespace: Cluster API resolves the class across
// namespaces and renders the topology beside the Cluster, calls the operator's hook, and the
// operator installs that namespace's release's addons through a ClusterAddon beside the Cluster.
func TestClassOfAnotherNamespaceWithRealClusterAPI(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(timeout)
	g.SetDefaultEventuallyPollingInterval(poll)
	ctx := context.Background()
	c := mgmt.Client
	const class = "openstack-scs-1-32-v1"

	// The extension, unless the other test registered it already.
	ext := capiflow.ExtensionConfig(hooksPort, mgmt.ClusterAPI.CABundle)
	if err := c.Create(ctx, ext); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	g.Eventually(func(g Gomega) {
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(ext), ext)).To(Succeed())
		cond, _ := capiflow.Discovery(ext)
		g.Expect(cond).NotTo(BeNil())
		g.Expect(cond.Status).To(Equal(metav1.ConditionTrue))
	}).Should(Succeed())

	stacks := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "capi-stacks-"}}
	tenant := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "capi-tenant-"}}
	g.Expect(c.Create(ctx, stacks)).To(Succeed())
	g.Expect(c.Create(ctx, tenant)).To(Succeed())
	cs := &csv1alpha1.ClusterStack{
		ObjectMeta: metav1.ObjectMeta{Namespace: stacks.Name, Name: "scs"},
		Spec: csv1alpha1.ClusterStackSpec{
			Provider: "openstack", Name: "scs", KubernetesVersion: "1.32", Channel: "stable",
			Versions: []string{"v1"}, NoProvider: true,
			Source: &csv1alpha1.ReleaseSource{OCI: &csv1alpha1.OCISource{Registry: registryHost, Repository: repository, Insecure: true}},
		},
	}
	g.Expect(c.Create(ctx, cs)).To(Succeed())
	g.Eventually(func(g Gomega) {
		cc := &clusterv1.ClusterClass{}
		g.Expect(c.Get(ctx, types.NamespacedName{Namespace: stacks.Name, Name: class}, cc)).To(Succeed())
		vr := meta.FindStatusCondition(cc.Status.Conditions, clusterv1.ClusterClassVariablesReadyCondition)
		g.Expect(vr).NotTo(BeNil())
		g.Expect(vr.Status).To(Equal(metav1.ConditionTrue), "VariablesReady: %s", vr.Message)
	}).Should(Succeed())

	clusterName := "x1"
	secret, err := capiflow.KubeconfigSecret(workload.Config, tenant.Name, clusterName)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Create(ctx, secret)).To(Succeed())
	cluster := capiflow.TopologyCluster(tenant.Name, clusterName, class, "v1.32.5")
	cluster.Spec.Topology.ClassRef.Namespace = stacks.Name
	g.Expect(c.Create(ctx, cluster)).To(Succeed())

	// Cluster API's own resolution: the topology objects exist in the Cluster's namespace.
	var topo *capiflow.Topology
	g.Eventually(func(g Gomega) {
		var err error
		topo, err = capiflow.GetTopology(ctx, c, cluster)
		g.Expect(err).NotTo(HaveOccurred())
	}).Should(Succeed())
	g.Expect(topo.ControlPlane.GetNamespace()).To(Equal(tenant.Name))

	before := hookCalls(g)[name(runtimehooksv1.AfterControlPlaneInitialized)]
	g.Expect(capiflow.SetControlPlaneStatus(ctx, c, topo.ControlPlane, "v1.32.5", true)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(cluster), cluster)).To(Succeed())
		g.Expect(ptr.Deref(cluster.Status.Initialization.ControlPlaneInitialized, false)).To(BeTrue())
		g.Expect(capiflow.PendingHooks(cluster)).NotTo(ContainSubstring("AfterControlPlaneInitialized"))
	}).Should(Succeed())
	g.Expect(hookCalls(g)[name(runtimehooksv1.AfterControlPlaneInitialized)]).To(BeNumerically(">", before), "Cluster API cleared the pending hook without calling it")
	g.Eventually(func(g Gomega) {
		ca := getAddon(g, tenant.Name, clusterName)
		g.Expect(ca.Spec.ClusterStack).To(Equal(class))
		g.Expect(ca.Status.Ready).To(BeTrue(), "ClusterAddon: %+v", ca.Status.Conditions)
		cm := &corev1.ConfigMap{}
		g.Expect(workload.Client.Get(ctx, types.NamespacedName{Namespace: "kube-system", Name: "fixture-cni"}, cm)).To(Succeed())
		g.Expect(cm.Data).To(HaveKeyWithValue("clusterName", clusterName))
	}).Should(Succeed())

	// The release of the class's namespace counts the tenant's Cluster as its user, so it is
	// not deleted under it.
	usage, err := resolver.ClustersByRelease(ctx, c, stacks.Name)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(usage[class].Clusters).To(ContainElement(tenant.Name + "/" + clusterName))
}
