package capi

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	runtimecatalog "sigs.k8s.io/cluster-api/api/runtime/catalog"
	runtimehooksv1 "sigs.k8s.io/cluster-api/api/runtime/hooks/v1alpha1"
	runtimev1 "sigs.k8s.io/cluster-api/api/runtime/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/hooks"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/workloadcluster"
)

// Generous: five processes share two busy cores with the API servers.
const (
	timeout = 3 * time.Minute
	poll    = 250 * time.Millisecond
)

var kcpGVK = schema.GroupVersionKind{Group: "controlplane.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmControlPlane"}

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
	ext := &runtimev1.ExtensionConfig{
		ObjectMeta: metav1.ObjectMeta{Name: "clusterstack-operator"},
		Spec: runtimev1.ExtensionConfigSpec{
			ClientConfig:      runtimev1.ClientConfig{URL: fmt.Sprintf("https://127.0.0.1:%d", hooksPort), CABundle: mgmt.ClusterAPI.CABundle},
			NamespaceSelector: &metav1.LabelSelector{},
		},
	}
	g.Expect(c.Create(ctx, ext)).To(Succeed())
	// Cluster API patches the condition before the handlers: wait for both.
	var handlers []string
	g.Eventually(func(g Gomega) {
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(ext), ext)).To(Succeed())
		cond := meta.FindStatusCondition(ext.Status.Conditions, runtimev1.ExtensionConfigDiscoveredCondition)
		g.Expect(cond).NotTo(BeNil())
		g.Expect(cond.Status).To(Equal(metav1.ConditionTrue), "Discovered: %s: %s", cond.Reason, cond.Message)
		handlers = nil
		for _, h := range ext.Status.Handlers {
			handlers = append(handlers, h.Name)
		}
		g.Expect(handlers).To(ConsistOf(
			hooks.AfterControlPlaneInitializedHandler+"."+ext.Name,
			hooks.BeforeClusterUpgradeHandler+"."+ext.Name,
			hooks.AfterClusterUpgradeHandler+"."+ext.Name,
		))
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

	// The Cluster and its kubeconfig Secret, pointing at the workload API server. No worker
	// replicas: no infrastructure provider runs, so Machines would never be ready and would hold
	// a rollout forever; the MachineDeployment itself is still Cluster API's.
	clusterName := "c1"
	kc, err := workloadcluster.Kubeconfig(workload.Config, clusterName)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: workloadcluster.SecretName(clusterName), Labels: map[string]string{clusterv1.ClusterNameLabel: clusterName}},
		Type:       clusterv1.ClusterSecretType,
		Data:       map[string][]byte{workloadcluster.KubeconfigKey: kc},
	})).To(Succeed())
	cluster := &clusterv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: clusterName},
		Spec: clusterv1.ClusterSpec{Topology: clusterv1.Topology{
			ClassRef:     clusterv1.ClusterClassRef{Name: "openstack-scs-1-32-v1"},
			Version:      "v1.32.5",
			ControlPlane: clusterv1.ControlPlaneTopology{Replicas: ptr.To[int32](1)},
			Workers: clusterv1.WorkersTopology{MachineDeployments: []clusterv1.MachineDeploymentTopology{
				{Class: "default-worker", Name: "md-0", Replicas: ptr.To[int32](0)},
			}},
		}},
	}
	g.Expect(c.Create(ctx, cluster)).To(Succeed())

	// Topology from Cluster API: the control plane, the OpenStackCluster and the workers.
	kcp := &unstructured.Unstructured{}
	g.Eventually(func(g Gomega) {
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(cluster), cluster)).To(Succeed())
		g.Expect(cluster.Spec.ControlPlaneRef.IsDefined()).To(BeTrue(), "Cluster API set no controlPlaneRef yet")
		g.Expect(cluster.Spec.InfrastructureRef.IsDefined()).To(BeTrue(), "Cluster API set no infrastructureRef yet")
		kcp.SetGroupVersionKind(kcpGVK)
		g.Expect(c.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: cluster.Spec.ControlPlaneRef.Name}, kcp)).To(Succeed())
		osc := &unstructured.Unstructured{}
		osc.SetGroupVersionKind(schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "OpenStackCluster"})
		g.Expect(c.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: cluster.Spec.InfrastructureRef.Name}, osc)).To(Succeed())
		mds := &clusterv1.MachineDeploymentList{}
		g.Expect(c.List(ctx, mds, client.InNamespace(ns.Name), client.MatchingLabels{clusterv1.ClusterNameLabel: clusterName})).To(Succeed())
		g.Expect(mds.Items).To(HaveLen(1))
	}).Should(Succeed())
	g.Expect(kcpVersion(g, kcp)).To(Equal("v1.32.5"))
	step("Cluster API created the topology: KubeadmControlPlane %s (v1.32.5), OpenStackCluster %s, MachineDeployment md-0; pending hooks %q",
		kcp.GetName(), cluster.Spec.InfrastructureRef.Name, cluster.Annotations[runtimev1.PendingHooksAnnotation])

	// The control plane comes up: what KCP would report once kubeadm init ran on a machine.
	// Cluster API mirrors it into the Cluster and then owes AfterControlPlaneInitialized.
	setControlPlaneStatus(g, kcp, "v1.32.5", true)
	g.Eventually(func(g Gomega) {
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(cluster), cluster)).To(Succeed())
		g.Expect(ptr.Deref(cluster.Status.Initialization.ControlPlaneInitialized, false)).To(BeTrue())
		g.Expect(cluster.Annotations[runtimev1.PendingHooksAnnotation]).NotTo(ContainSubstring("AfterControlPlaneInitialized"))
	}).Should(Succeed())
	g.Expect(hookCalls(g)[name(runtimehooksv1.AfterControlPlaneInitialized)]).To(BeNumerically(">=", 1), "Cluster API cleared the pending hook without calling it")
	step("Cluster API called AfterControlPlaneInitialized (calls so far: %s)", formatCalls(hookCalls(g)))
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
			cond := meta.FindStatusCondition(cluster.Status.Conditions, clusterv1.ClusterTopologyReconciledCondition)
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
	cond := meta.FindStatusCondition(cluster.Status.Conditions, clusterv1.ClusterTopologyReconciledCondition)
	step("upgrade held by BeforeClusterUpgrade (%v calls): KubeadmControlPlane still v1.32.5; Cluster API says %q",
		hookCalls(g)[name(runtimehooksv1.BeforeClusterUpgrade)]-before, cond.Message)

	// The operator restarts mid-upgrade: a new one answers from the ClusterAddon exactly as the
	// old one did, so the upgrade stays held.
	stopOperator()
	g.Expect(startOperator()).To(Succeed())
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
	setControlPlaneStatus(g, kcp, "v1.32.8", true)
	g.Eventually(func(g Gomega) {
		g.Expect(c.Get(ctx, client.ObjectKeyFromObject(cluster), cluster)).To(Succeed())
		g.Expect(hookCalls(g)[name(runtimehooksv1.AfterClusterUpgrade)]).To(BeNumerically(">=", 1))
		g.Expect(cluster.Annotations[runtimev1.PendingHooksAnnotation]).NotTo(ContainSubstring("AfterClusterUpgrade"))
	}).Should(Succeed())
	calls := hookCalls(g)
	step("Cluster API called AfterClusterUpgrade; hook calls by Cluster API: %s", formatCalls(calls))
	t.Logf("hook calls by Cluster API (operator starts: %d): %s", mgrStarts, formatCalls(calls))
}

func name(hook runtimecatalog.Hook) string { return runtimecatalog.HookName(hook) }

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
	v, _, err := unstructured.NestedString(kcp.Object, "spec", "version")
	g.Expect(err).NotTo(HaveOccurred())
	return v
}

// setControlPlaneStatus reports what the KubeadmControlPlane controller would once its machines
// run: initialized, at version. The controller keeps both (it only ever sets initialized, and
// derives status.versions from Machines, of which there are none without an infrastructure
// provider, leaving the deprecated status.version that Cluster API falls back to as set here).
func setControlPlaneStatus(g Gomega, kcp *unstructured.Unstructured, version string, initialized bool) {
	ctx := context.Background()
	g.Eventually(func(g Gomega) {
		g.Expect(mgmt.Client.Get(ctx, client.ObjectKeyFromObject(kcp), kcp)).To(Succeed())
		base := kcp.DeepCopy()
		g.Expect(unstructured.SetNestedField(kcp.Object, initialized, "status", "initialization", "controlPlaneInitialized")).To(Succeed())
		g.Expect(unstructured.SetNestedField(kcp.Object, version, "status", "version")).To(Succeed())
		g.Expect(mgmt.Client.Status().Patch(ctx, kcp, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))).To(Succeed())
	}).Should(Succeed())
}

// hookCalls counts the calls of each hook the operator's extension server answered, from the
// server's request metrics (it is a controller-runtime webhook server): every call comes from
// Cluster API, the tests never call the handlers themselves.
func hookCalls(g Gomega) map[string]float64 {
	cat, err := hooks.NewCatalog()
	g.Expect(err).NotTo(HaveOccurred())
	paths := map[string]string{}
	for _, hook := range []runtimecatalog.Hook{runtimehooksv1.AfterControlPlaneInitialized, runtimehooksv1.BeforeClusterUpgrade, runtimehooksv1.AfterClusterUpgrade} {
		gvh, err := cat.GroupVersionHook(hook)
		g.Expect(err).NotTo(HaveOccurred())
		paths[runtimecatalog.GVHToPath(gvh, hooks.HandlerName(hook))] = runtimecatalog.HookName(hook)
	}
	gvh, err := cat.GroupVersionHook(runtimehooksv1.Discovery)
	g.Expect(err).NotTo(HaveOccurred())
	paths[runtimecatalog.GVHToPath(gvh, "")] = runtimecatalog.HookName(runtimehooksv1.Discovery)

	families, err := ctrlmetrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	calls := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "controller_runtime_webhook_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != "webhook" {
					continue
				}
				if hook, ok := paths[strings.TrimSuffix(l.GetValue(), "/")]; ok {
					calls[hook] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return calls
}

func formatCalls(calls map[string]float64) string {
	var parts []string
	for hook, n := range calls {
		parts = append(parts, fmt.Sprintf("%s=%v", hook, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
