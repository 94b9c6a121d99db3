package capi

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	runtimecatalog "sigs.k8s.io/cluster-api/api/runtime/catalog"
	runtimehooksv1 "sigs.k8s.io/cluster-api/api/runtime/hooks/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/hooks"
	"github.com/seed-a720dd5e/clusterstack-operator/test/capiflow"
)

// Generous: five processes share two busy cores with the API servers.
const (
	timeout = 3 * time.Minute
	poll    = 250 * time.Millisecond
)

// TestClusterStackWithRealClusterAPI walks a cluster stack through real Cluster API: the
// ClusterStack installs two releases whose v1beta1 ClusterClasses Cluster API accepts; a Cluster
// of v1 gets its topology from Cluster API; Cluster API discovers the operator's extension and
// calls AfterControlPlaneInitialized once the (simulated) control plane is initialized, and the
// addons land in the workload cluster; a bump to v2 (a new class and Kubernetes version) is held
// by BeforeClusterUpgrade until v2's addons are done, across a restart of the operator; then
// Cluster API upgrades the control plane and calls AfterClusterUpgrade. Hook calls are counted
// on the operator's side and reported.
func TestClusterStackWithRealClusterAPI(t *testing.T) {
	if skipReason != "" {
		t.Skip(skipReason)
	}
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(timeout)
	g.SetDefaultEventuallyPollingInterval(poll)
	ctx := context.Background()
	c := mgmt.Client
	start := time.Now()
	step := func(format string, args ...any) {
		t.Logf("%6.1fs "+format, append([]any{time.Since(start).Seconds()}, args...)...)
	}

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "capi-"}}
	g.Expect(c.Create(ctx, ns)).To(Succeed())

	// The extension first: Cluster API only calls extensions it has discovered, and it records
	// the hooks a new Cluster is owed when the Cluster is created.
	ext := capiflow.ExtensionConfig(hooksPort, mgmt.ClusterAPI.CABundle)
	g.Expect(c.Create(ctx, ext)).To(Succeed())
	var handlers []string
	g.Eventually(func(g Gomega) {
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(ext), ext)).To(Succeed())
		var cond *metav1.Condition
		cond, handlers = capiflow.Discovery(ext)
		g.Expect(cond).NotTo(BeNil())
		g.Expect(cond.Status).To(Equal(metav1.ConditionTrue), "Discovered: %s: %s", cond.Reason, cond.Message)
		g.Expect(handlers).To(ConsistOf(capiflow.WantHandlers()))
	}).Should(Succeed())
	step("ExtensionConfig Discovered=True by Cluster API, handlers %v", handlers)

	cs := &csv1alpha1.ClusterStack{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "scs"},
		Spec: csv1alpha1.ClusterStackSpec{
			Provider: "openstack", Name: "scs", KubernetesVersion: "1.32", Channel: "stable",
			Versions: []string{"v1", "v2"}, NoProvider: true,
			Source: &csv1alpha1.ReleaseSource{OCI: &csv1alpha1.OCISource{Registry: registryHost, Repository: repository, Insecure: true}},
		},
	}
	g.Expect(c.Create(ctx, cs)).To(Succeed())
	for _, v := range []string{"v1", "v2"} {
		class := "openstack-scs-1-32-" + v
		g.Eventually(func(g Gomega) {
			csr := &csv1alpha1.ClusterStackRelease{}
			g.Expect(c.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: class}, csr)).To(Succeed())
			ready := meta.FindStatusCondition(csr.Status.Conditions, "Ready")
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "ClusterStackRelease %s Ready: %s", class, ready.Message)
		}).Should(Succeed())
		// Cluster API's own verdict on the class: its variables are valid and it observed the
		// current generation (the templates are v1beta1, so RefVersionsUpToDate stays False).
		cc := &clusterv1.ClusterClass{}
		g.Eventually(func(g Gomega) {
			g.Expect(c.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: class}, cc)).To(Succeed())
			vr := meta.FindStatusCondition(cc.Status.Conditions, clusterv1.ClusterClassVariablesReadyCondition)
			g.Expect(vr).NotTo(BeNil())
			g.Expect(vr.Status).To(Equal(metav1.ConditionTrue), "VariablesReady: %s", vr.Message)
			g.Expect(vr.ObservedGeneration).To(Equal(cc.Generation))
		}).Should(Succeed())
		refs := meta.FindStatusCondition(cc.Status.Conditions, clusterv1.ClusterClassRefVersionsUpToDateCondition)
		step("ClusterStackRelease %s Ready; Cluster API: ClusterClass VariablesReady=True, RefVersionsUpToDate=%s", class, condStatus(refs))
	}

	// The Cluster and its kubeconfig Secret, pointing at the workload API server.
	clusterName := "c1"
	secret, err := capiflow.KubeconfigSecret(workload.Config, ns.Name, clusterName)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Create(ctx, secret)).To(Succeed())
	cluster := capiflow.TopologyCluster(ns.Name, clusterName, "openstack-scs-1-32-v1", "v1.32.5")
	g.Expect(c.Create(ctx, cluster)).To(Succeed())

	// Topology from Cluster API: the control plane, the OpenStackCluster and the workers.
	var topo *capiflow.Topology
	g.Eventually(func(g Gomega) {
		var err error
		topo, err = capiflow.GetTopology(ctx, c, cluster)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(topo.MachineDeployments).To(HaveLen(1))
	}).Should(Succeed())
	kcp := topo.ControlPlane
	g.Expect(kcpVersion(g, kcp)).To(Equal("v1.32.5"))
	step("Cluster API created the topology: KubeadmControlPlane %s (v1.32.5), OpenStackCluster %s, MachineDeployment md-0; pending hooks %q",
		kcp.GetName(), cluster.Spec.InfrastructureRef.Name, capiflow.PendingHooks(cluster))

	// The control plane comes up: what KCP would report once kubeadm init ran on a machine.
	// Cluster API mirrors it into the Cluster and then owes AfterControlPlaneInitialized.
	g.Expect(capiflow.SetControlPlaneStatus(ctx, c, kcp, "v1.32.5", true)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(cluster), cluster)).To(Succeed())
		g.Expect(ptr.Deref(cluster.Status.Initialization.ControlPlaneInitialized, false)).To(BeTrue())
		g.Expect(capiflow.PendingHooks(cluster)).NotTo(ContainSubstring("AfterControlPlaneInitialized"))
	}).Should(Succeed())
	g.Expect(hookCalls(g)[name(runtimehooksv1.AfterControlPlaneInitialized)]).To(BeNumerically(">=", 1), "Cluster API cleared the pending hook without calling it")
	step("Cluster API called AfterControlPlaneInitialized (calls so far: %s)", capiflow.FormatCalls(hookCalls(g)))
	cm := &corev1.ConfigMap{}
	g.Eventually(func(g Gomega) {
		g.Expect(workload.Client.Get(ctx, types.NamespacedName{Namespace: "kube-system", Name: "fixture-cni"}, cm)).To(Succeed())
		g.Expect(cm.Data).To(HaveKeyWithValue("clusterName", clusterName))
		g.Expect(cm.Data).To(HaveKeyWithValue("mtu", "1450"))
		ca := getAddon(g, ns.Name, clusterName)
		g.Expect(ca.Status.Ready).To(BeTrue())
	}).Should(Succeed())
	step("v1 addons applied in the workload cluster (fixture-cni mtu 1450)")

	// The upgrade: class v2 with Kubernetes v1.32.8. v2's BeforeClusterUpgrade stages wait for
	// the upgrade gate in the workload cluster, so the hook holds the upgrade.
	before := hookCalls(g)[name(runtimehooksv1.BeforeClusterUpgrade)]
	base := cluster.DeepCopy()
	cluster.Spec.Topology.ClassRef.Name = "openstack-scs-1-32-v2"
	cluster.Spec.Topology.Version = "v1.32.8"
	g.Expect(c.Patch(ctx, cluster, client.MergeFrom(base))).To(Succeed())
	waitBlocked := func() {
		g.Eventually(func(g Gomega) {
			g.Expect(c.Get(ctx, client.ObjectKeyFromObject(cluster), cluster)).To(Succeed())
			cond := capiflow.TopologyReconciled(cluster)
			g.Expect(cond).NotTo(BeNil())
			// Cluster API's own account: upgrading, held by our hook with the hook's message.
			g.Expect(cond.Reason).To(Equal(clusterv1.ClusterTopologyReconciledClusterUpgradingReason), "TopologyReconciled: %s", cond.Message)
			g.Expect(cond.Message).To(ContainSubstring("Following hooks are blocking upgrade: BeforeClusterUpgrade: ClusterAddon " + addon.ClusterAddonName(clusterName)))
		}).Should(Succeed())
	}
	waitBlocked()
	// Held for several of Cluster API's retries, not just one answer.
	g.Eventually(func() float64 { return hookCalls(g)[name(runtimehooksv1.BeforeClusterUpgrade)] - before }).Should(BeNumerically(">=", 3))
	g.Expect(c.Get(ctx, client.ObjectKeyFromObject(kcp), kcp)).To(Succeed())
	g.Expect(kcpVersion(g, kcp)).To(Equal("v1.32.5"), "Cluster API upgraded the control plane while BeforeClusterUpgrade held it")
	ca := getAddon(g, ns.Name, clusterName)
	g.Expect(ca.Spec.ClusterStack).To(Equal("openstack-scs-1-32-v2"))
	cond := capiflow.TopologyReconciled(cluster)
	step("upgrade held by BeforeClusterUpgrade (%v calls): KubeadmControlPlane still v1.32.5; Cluster API says %q",
		hookCalls(g)[name(runtimehooksv1.BeforeClusterUpgrade)]-before, cond.Message)

	// The operator restarts mid-upgrade: a new one answers from the ClusterAddon exactly as the
	// old one did, so the upgrade stays held.
	g.Expect(operator.Stop()).To(Succeed())
	g.Expect(operator.Start()).To(Succeed())
	afterRestart := hookCalls(g)[name(runtimehooksv1.BeforeClusterUpgrade)]
	g.Eventually(func() float64 { return hookCalls(g)[name(runtimehooksv1.BeforeClusterUpgrade)] - afterRestart }).Should(BeNumerically(">=", 2))
	waitBlocked()
	g.Expect(c.Get(ctx, client.ObjectKeyFromObject(kcp), kcp)).To(Succeed())
	g.Expect(kcpVersion(g, kcp)).To(Equal("v1.32.5"), "the restarted operator let the upgrade through before the addons")
	step("operator restarted: upgrade still held, KubeadmControlPlane still v1.32.5")

	// Open the gate: v2's addons finish, the hook lets go, Cluster API upgrades the control plane.
	g.Expect(workload.Client.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "upgrade-gate"},
		Data:       map[string]string{"open": "true"},
	})).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(kcp), kcp)).To(Succeed())
		g.Expect(kcpVersion(g, kcp)).To(Equal("v1.32.8"))
	}).Should(Succeed())
	// The new addons were done before Cluster API moved: the hook answered from them.
	g.Expect(workload.Client.Get(ctx, types.NamespacedName{Namespace: "kube-system", Name: "fixture-cni"}, cm)).To(Succeed())
	g.Expect(cm.Data).To(HaveKeyWithValue("mtu", "1400"))
	done, msg := hooks.Done(getAddon(g, ns.Name, clusterName), cluster)
	g.Expect(done).To(BeTrue(), msg)
	step("gate opened: v2 addons done (fixture-cni mtu 1400), Cluster API upgraded KubeadmControlPlane to v1.32.8")

	// The control plane reaches v1.32.8 (simulated, as its machines would report it); the
	// workers have no replicas; Cluster API then calls AfterClusterUpgrade and clears it.
	g.Expect(capiflow.SetControlPlaneStatus(ctx, c, kcp, "v1.32.8", true)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(cluster), cluster)).To(Succeed())
		g.Expect(hookCalls(g)[name(runtimehooksv1.AfterClusterUpgrade)]).To(BeNumerically(">=", 1))
		g.Expect(capiflow.PendingHooks(cluster)).NotTo(ContainSubstring("AfterClusterUpgrade"))
	}).Should(Succeed())
	calls := hookCalls(g)
	step("Cluster API called AfterClusterUpgrade; hook calls by Cluster API: %s", capiflow.FormatCalls(calls))
	t.Logf("hook calls by Cluster API (operator starts: %d): %s", operator.Starts(), capiflow.FormatCalls(calls))
}

func name(hook runtimecatalog.Hook) string { return capiflow.HookName(hook) }

func condStatus(c *metav1.Condition) string {
	if c == nil {
		return "unset"
	}
	return string(c.Status)
}

func getAddon(g Gomega, ns, cluster string) *csv1alpha1.ClusterAddon {
	ca := &csv1alpha1.ClusterAddon{}
	g.Expect(mgmt.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: addon.ClusterAddonName(cluster)}, ca)).To(Succeed())
	return ca
}

func kcpVersion(g Gomega, kcp *unstructured.Unstructured) string {
	v, err := capiflow.ControlPlaneVersion(kcp)
	g.Expect(err).NotTo(HaveOccurred())
	return v
}

func hookCalls(g Gomega) map[string]float64 {
	calls, err := capiflow.HookCalls()
	g.Expect(err).NotTo(HaveOccurred())
	return calls
}
