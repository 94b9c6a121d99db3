package clusteraddon

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	runtimehooksv1 "sigs.k8s.io/cluster-api/api/runtime/hooks/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon"
)

const timeout = 60 * time.Second

func workloadConfigMap(g Gomega, ns, name string) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{}
	g.Expect(workload.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, cm)).To(Succeed())
	return cm
}

func waitReady(t *testing.T, ns, cluster, class string) *csv1alpha1.ClusterAddon {
	t.Helper()
	var ca *csv1alpha1.ClusterAddon
	NewWithT(t).Eventually(func(g Gomega) {
		ca = getAddon(g, ns, cluster)
		g.Expect(ca.Spec.ClusterStack).To(Equal(class))
		g.Expect(ca.Spec.Hook).To(BeEmpty())
		g.Expect(ca.Status.Ready).To(BeTrue(), "Ready: %+v", condition(ca, csv1alpha1.ReadyCondition))
		g.Expect(ca.Status.ObservedGeneration).To(Equal(ca.Generation))
	}).WithTimeout(timeout).Should(Succeed())
	return ca
}

func TestCreateTimeInstallNewConvention(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ns := newNamespace(t)
	c := createCluster(t, ns, "alpha", "v1", true, true)

	ca := waitReady(t, ns, c.Name, className("v1"))
	g.Expect(ca.OwnerReferences).To(ContainElement(HaveField("Name", c.Name)))
	g.Expect(ca.Spec.Version).To(Equal("v1"))
	g.Expect(ca.Status.Stages).To(HaveLen(2))
	for _, s := range ca.Status.Stages {
		g.Expect(s.Phase).To(Equal(csv1alpha1.StagePhaseDone))
	}
	g.Expect(ca.Status.Resources).To(ConsistOf(
		HaveField("Name", "fixture-cni"), HaveField("Name", "fixture-metrics-server")))
	g.Expect(condition(ca, csv1alpha1.ClusterReachableCondition).Status).To(Equal(metav1.ConditionTrue))

	// Rendered with overwrite.yaml over the live Cluster, applied with the operator's field manager.
	eventuallyWorkloadData(t, "kube-system", "fixture-cni", "clusterName", "alpha")
	cm := workloadConfigMap(g, "kube-system", "fixture-cni")
	g.Expect(cm.ManagedFields).To(ContainElement(HaveField("Manager", FieldManager)))
	dep := &appsv1.Deployment{}
	g.Expect(workload.Client.Get(context.Background(), types.NamespacedName{Namespace: "kube-system", Name: "fixture-metrics-server"}, dep)).To(Succeed())

	// Drift: an addon object deleted in the workload cluster comes back.
	g.Expect(workload.Client.Delete(context.Background(), dep)).To(Succeed())
	NewWithT(t).Eventually(func() error {
		return workload.Client.Get(context.Background(), types.NamespacedName{Namespace: "kube-system", Name: "fixture-metrics-server"}, &appsv1.Deployment{})
	}).WithTimeout(timeout).Should(Succeed())

	// A deleted ClusterAddon is re-created and adopts the objects again.
	g.Expect(mgmt.Client.Delete(context.Background(), ca)).To(Succeed())
	NewWithT(t).Eventually(func(g Gomega) {
		again := getAddon(g, ns, c.Name)
		g.Expect(again.UID).NotTo(Equal(ca.UID))
		g.Expect(again.Status.Ready).To(BeTrue())
	}).WithTimeout(timeout).Should(Succeed())
}

func TestCreateTimeInstallOldConvention(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ns := newNamespace(t)
	c := createCluster(t, ns, "bravo", "v4", true, true)

	ca := waitReady(t, ns, c.Name, className("v4"))
	g.Expect(ca.Status.Stages).To(ConsistOf(HaveField("Phase", csv1alpha1.StagePhaseDone)))
	// cluster-addon-values.yaml is rendered over the Cluster and reaches the sub-charts.
	eventuallyWorkloadData(t, "kube-system", "fixture-cni", "clusterName", "bravo")
	g.Expect(ca.Status.Resources).To(HaveLen(2))
}

func TestAfterControlPlaneInitializedHook(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ns := newNamespace(t)
	// Not initialized: the controller waits; the hook starts the installation.
	c := createCluster(t, ns, "charlie", "v1", false, true)
	NewWithT(t).Eventually(func(g Gomega) {
		ca := getAddon(g, ns, c.Name)
		g.Expect(condition(ca, csv1alpha1.ReadyCondition).Reason).To(Equal(csv1alpha1.ControlPlaneNotInitializedReason))
	}).WithTimeout(timeout).Should(Succeed())

	resp := &runtimehooksv1.AfterControlPlaneInitializedResponse{}
	callHookRaw(t, runtimehooksv1.AfterControlPlaneInitialized, &runtimehooksv1.AfterControlPlaneInitializedRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: runtimehooksv1.GroupVersion.String(), Kind: "AfterControlPlaneInitializedRequest"},
		Cluster:  *c,
	}, resp)
	g.Expect(resp.Status).To(Equal(runtimehooksv1.ResponseStatusSuccess))
	waitReady(t, ns, c.Name, className("v1"))
}

func TestConditionsSayWhy(t *testing.T) {
	ns := newNamespace(t)
	for _, tc := range []struct {
		name, version string
		kubeconfig    bool
		condType      string
		reason        string
		message       string
		stalled       bool
		// parallel rows stop before anything is applied to the shared workload cluster.
		parallel bool
	}{
		{name: "nokubeconfig", version: "v1", condType: csv1alpha1.ClusterReachableCondition, reason: csv1alpha1.KubeconfigMissingReason, message: "nokubeconfig-kubeconfig", parallel: true},
		{name: "badconfig", version: "v6", kubeconfig: true, condType: csv1alpha1.StalledCondition, reason: csv1alpha1.InvalidReleaseReason, message: "clusteraddon.yaml", stalled: true, parallel: true},
		{name: "broken", version: "v5", kubeconfig: true, condType: csv1alpha1.StalledCondition, reason: csv1alpha1.InvalidReleaseReason, message: "fails on purpose", stalled: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.parallel {
				t.Parallel()
			} else {
				isolate(t)
			}
			c := createCluster(t, ns, tc.name, tc.version, true, tc.kubeconfig)
			NewWithT(t).Eventually(func(g Gomega) {
				ca := getAddon(g, ns, c.Name)
				cond := condition(ca, tc.condType)
				if tc.condType == csv1alpha1.ClusterReachableCondition {
					g.Expect(cond.Status).To(Equal(metav1.ConditionFalse))
				} else {
					g.Expect(cond.Status).To(Equal(metav1.ConditionTrue))
				}
				g.Expect(cond.Reason).To(Equal(tc.reason))
				g.Expect(cond.Message).To(ContainSubstring(tc.message))
				g.Expect(ca.Status.Ready).To(BeFalse())
			}).WithTimeout(timeout).Should(Succeed())
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		t.Parallel() // never reaches the workload cluster
		c := createCluster(t, ns, "unreachable", "v1", true, false)
		dead := *workload.Config
		dead.Host = "https://127.0.0.1:1"
		createKubeconfig(t, ns, c.Name, &dead)
		NewWithT(t).Eventually(func(g Gomega) {
			ca := getAddon(g, ns, c.Name)
			cond := condition(ca, csv1alpha1.ClusterReachableCondition)
			g.Expect(cond.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(cond.Reason).To(Equal(csv1alpha1.ClusterUnreachableReason))
		}).WithTimeout(timeout).Should(Succeed())
		// Not a stall, but a failure a user should hear of: one Warning event, however often
		// the connection is retried (counted by the skeleton's tests; the events API merges
		// repeats into a series).
		NewWithT(t).Eventually(func(g Gomega) {
			var evs eventsv1.EventList
			g.Expect(mgmt.Client.List(context.Background(), &evs, client.InNamespace(ns))).To(Succeed())
			var notes []string
			for _, e := range evs.Items {
				if e.Type == corev1.EventTypeWarning && e.Reason == csv1alpha1.ClusterUnreachableReason && e.Regarding.Name == addon.ClusterAddonName(c.Name) {
					notes = append(notes, e.Note)
				}
			}
			g.Expect(notes).To(ConsistOf(ContainSubstring("does not answer")))
		}).WithTimeout(timeout).Should(Succeed())
	})

	t.Run("leave a faulty release", func(t *testing.T) {
		isolate(t)
		c := createCluster(t, ns, "leave", "v5", true, true)
		NewWithT(t).Eventually(func(g Gomega) {
			g.Expect(condition(getAddon(g, ns, c.Name), csv1alpha1.StalledCondition).Status).To(Equal(metav1.ConditionTrue))
		}).WithTimeout(timeout).Should(Succeed())
		setClass(t, c, "v1", "v1.32.5")
		waitReady(t, ns, c.Name, className("v1"))
	})
}

func setClass(t testing.TB, c *clusterv1.Cluster, version, k8s string) {
	t.Helper()
	ctx := context.Background()
	NewWithT(t).Eventually(func() error {
		if err := mgmt.Client.Get(ctx, client.ObjectKeyFromObject(c), c); err != nil {
			return err
		}
		c.Spec.Topology.ClassRef.Name = className(version)
		c.Spec.Topology.Version = k8s
		return mgmt.Client.Update(ctx, c)
	}).WithTimeout(timeout).Should(Succeed())
}

func openGate(t testing.TB) {
	t.Helper()
	gate := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "upgrade-gate"}, Data: map[string]string{"open": "true"}}
	if err := workload.Client.Create(context.Background(), gate); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// assertV2 checks the workload cluster holds the addons of the openstack-scs-v2 fixture and not
// the objects v1 had that v2 dropped.
func assertV2(g Gomega, cluster string) {
	cm := workloadConfigMap(g, "kube-system", "fixture-cni")
	g.Expect(cm.Data).To(HaveKeyWithValue("mtu", "1400"))
	g.Expect(workloadConfigMap(g, "kube-system", "fixture-cni-defaults").Data).To(HaveKeyWithValue("version", "2"))
	g.Expect(workloadConfigMap(g, "fixture-cni-system", "fixture-cni-agent").Data).To(HaveKeyWithValue("clusterName", cluster))
	g.Expect(workload.Client.Get(context.Background(), types.NamespacedName{Namespace: "kube-system", Name: "fixture-metrics-server"}, &corev1.ServiceAccount{})).To(Succeed())
	err := workload.Client.Get(context.Background(), types.NamespacedName{Namespace: "kube-system", Name: "fixture-metrics-server"}, &appsv1.Deployment{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the v1 Deployment must be pruned, got %v", err)
}

func TestUpgradeThroughHooks(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ns := newNamespace(t)
	c := createCluster(t, ns, "delta", "v1", true, true)
	waitReady(t, ns, c.Name, className("v1"))

	// The user moves the Cluster to v2 (a Kubernetes patch upgrade); Cluster API calls
	// BeforeClusterUpgrade, which holds it while the stages run. The post-condition of the cni
	// stage waits for the gate, so the hook must keep blocking.
	setClass(t, c, "v2", "v1.32.8")
	NewWithT(t).Eventually(func(g Gomega) {
		resp := beforeClusterUpgrade(t, c)
		g.Expect(resp.Status).To(Equal(runtimehooksv1.ResponseStatusSuccess))
		g.Expect(resp.RetryAfterSeconds).To(BeNumerically(">", 0))
		ca := getAddon(g, ns, c.Name)
		g.Expect(ca.Spec.Hook).To(Equal(csv1alpha1.HookBeforeClusterUpgrade))
		g.Expect(ca.Status.Stages).To(HaveLen(2))
		g.Expect(ca.Status.Stages[0].Phase).To(Equal(csv1alpha1.StagePhaseWaitingForPostCondition))
		g.Expect(ca.Status.Stages[1].Phase).To(Equal(csv1alpha1.StagePhasePending))
		g.Expect(condition(ca, csv1alpha1.ReadyCondition).Reason).To(Equal(csv1alpha1.WaitingForPostConditionReason))
		g.Expect(resp.Message).To(ContainSubstring("waitingForPostCondition"))
	}).WithTimeout(timeout).Should(Succeed())
	// The new CNI is applied, the old metrics-server is not pruned before the stages finish.
	g.Expect(workloadConfigMap(g, "kube-system", "fixture-cni").Data).To(HaveKeyWithValue("mtu", "1400"))
	g.Expect(workload.Client.Get(context.Background(), types.NamespacedName{Namespace: "kube-system", Name: "fixture-metrics-server"}, &appsv1.Deployment{})).To(Succeed())
	resp := beforeClusterUpgrade(t, c)
	g.Expect(resp.RetryAfterSeconds).To(BeNumerically(">", 0))

	openGate(t)
	NewWithT(t).Eventually(func(g Gomega) {
		resp := beforeClusterUpgrade(t, c)
		g.Expect(resp.Status).To(Equal(runtimehooksv1.ResponseStatusSuccess))
		g.Expect(resp.RetryAfterSeconds).To(BeZero(), resp.Message)
	}).WithTimeout(timeout).Should(Succeed())
	ca := waitReady(t, ns, c.Name, className("v2"))
	g.Expect(ca.Spec.Version).To(Equal("v2"))
	for _, s := range ca.Status.Stages {
		g.Expect(s.Phase).To(Equal(csv1alpha1.StagePhaseDone))
	}
	NewWithT(t).Eventually(func(g Gomega) { assertV2(g, c.Name) }).WithTimeout(timeout).Should(Succeed())
	g.Expect(ca.Status.Resources).NotTo(ContainElement(HaveField("Kind", "Deployment")))
	g.Expect(ca.Status.Resources).To(ContainElement(And(HaveField("Namespace", "fixture-cni-system"), HaveField("Name", "fixture-cni-agent"))))

	after := &runtimehooksv1.AfterClusterUpgradeResponse{}
	callHookRaw(t, runtimehooksv1.AfterClusterUpgrade, &runtimehooksv1.AfterClusterUpgradeRequest{
		TypeMeta: metav1.TypeMeta{APIVersion: runtimehooksv1.GroupVersion.String(), Kind: "AfterClusterUpgradeRequest"},
		Cluster:  *c, KubernetesVersion: "v1.32.8",
	}, after)
	g.Expect(after.Status).To(Equal(runtimehooksv1.ResponseStatusSuccess))
	g.Expect(after.RetryAfterSeconds).To(BeZero())
}

func TestSameKubernetesVersionUpgrade(t *testing.T) {
	isolate(t)
	ns := newNamespace(t)
	c := createCluster(t, ns, "echo", "v1", true, true)
	waitReady(t, ns, c.Name, className("v1"))
	openGate(t)
	// v3 has the same Kubernetes version: Cluster API calls no hook; the addons still move.
	setClass(t, c, "v3", "v1.32.5")
	waitReady(t, ns, c.Name, className("v3"))
	NewWithT(t).Eventually(func(g Gomega) { assertV2(g, c.Name) }).WithTimeout(timeout).Should(Succeed())
}

func TestRestartMidUpgrade(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ns := newNamespace(t)
	c := createCluster(t, ns, "foxtrot", "v1", true, true)
	waitReady(t, ns, c.Name, className("v1"))
	setClass(t, c, "v2", "v1.32.8")
	NewWithT(t).Eventually(func(g Gomega) {
		ca := getAddon(g, ns, c.Name)
		g.Expect(ca.Status.Stages).To(HaveLen(2))
		g.Expect(ca.Status.Stages[0].Phase).To(Equal(csv1alpha1.StagePhaseWaitingForPostCondition))
	}).WithTimeout(timeout).Should(Succeed())

	// The operator goes away in the middle of the BeforeClusterUpgrade stages; the gate opens
	// while it is down; a new operator process picks up from the ClusterAddon's status.
	stopManager()
	openGate(t)
	g.Expect(startManager()).To(Succeed())
	NewWithT(t).Eventually(func(g Gomega) {
		resp := beforeClusterUpgrade(t, c)
		g.Expect(resp.RetryAfterSeconds).To(BeZero(), resp.Message)
	}).WithTimeout(timeout).Should(Succeed())
	waitReady(t, ns, c.Name, className("v2"))
	NewWithT(t).Eventually(func(g Gomega) { assertV2(g, c.Name) }).WithTimeout(timeout).Should(Succeed())
}

var _ = addon.ClusterAddonName

// TestFirstReadyWriteIsSettled watches a ClusterAddon being installed: the write that first
// says Ready already records the generation of the spec the same reconcile wrote, in
// status.observedGeneration and in every condition. A status one generation behind would be
// fixed by one more write per install when the event of the controller's own spec write comes
// back.
func TestFirstReadyWriteIsSettled(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	ns := newNamespace(t)
	wc, err := client.NewWithWatch(mgmt.Config, client.Options{Scheme: mgmt.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(ctx, &csv1alpha1.ClusterAddonList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	c := createCluster(t, ns, "delta", "v1", true, true)

	deadline := time.After(timeout)
	for {
		select {
		case <-deadline:
			t.Fatalf("ClusterAddon of Cluster %s did not turn Ready within %s", c.Name, timeout)
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("the watch of ClusterAddons ended")
			}
			ca, isAddon := ev.Object.(*csv1alpha1.ClusterAddon)
			if !isAddon || !ca.Status.Ready {
				continue
			}
			g := NewWithT(t)
			g.Expect(ca.Spec.ClusterStack).To(Equal(className("v1")))
			g.Expect(ca.Spec.Hook).To(BeEmpty())
			g.Expect(ca.Spec.Version).To(Equal("v1"))
			g.Expect(ca.Status.ObservedGeneration).To(Equal(ca.Generation), "status.observedGeneration of the first Ready write")
			for _, cond := range ca.Status.Conditions {
				g.Expect(cond.ObservedGeneration).To(Equal(ca.Generation), "observedGeneration of condition %s in the first Ready write", cond.Type)
			}
			return
		}
	}
}
