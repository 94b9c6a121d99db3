package clusteraddon

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon"
)

// pausedWindow is how long the paused tests watch that nothing happens: longer than the test
// manager's drift check (2s) and retries (1s), so a reconcile that ignored the pause would act
// within it.
const pausedWindow = 4 * time.Second

// updateCluster applies change to the stored Cluster, retrying on conflicts.
func updateCluster(t testing.TB, c *clusterv1.Cluster, change func(*clusterv1.Cluster)) {
	t.Helper()
	NewWithT(t).Eventually(func() error {
		if err := mgmt.Client.Get(context.Background(), client.ObjectKeyFromObject(c), c); err != nil {
			return err
		}
		change(c)
		return mgmt.Client.Update(context.Background(), c)
	}).WithTimeout(timeout).Should(Succeed())
}

// TestPausedCluster pauses Clusters the two ways `clusterctl move` and users do (spec.paused,
// the cluster.x-k8s.io/paused annotation): no ClusterAddon is created for a paused Cluster, a
// ClusterAddon says Paused and applies nothing (no drift repair, no class change) while its
// Cluster is paused, and everything resumes with the Cluster.
func TestPausedCluster(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	ns := newNamespace(t)

	// Created paused: no ClusterAddon. The Cluster controller has one worker, so once the
	// ClusterAddon of a Cluster created after it exists, the paused one has been looked at.
	c := &clusterv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "paused"},
		Spec: clusterv1.ClusterSpec{Paused: ptr.To(true), Topology: clusterv1.Topology{
			ClassRef: clusterv1.ClusterClassRef{Name: className("v1")},
			Version:  initialKubernetesVersion,
		}},
	}
	if err := mgmt.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mgmt.Client.Delete(context.Background(), c) })
	createKubeconfig(t, ns, c.Name, workload.Config)
	setInitialized(t, c)
	later := createCluster(t, ns, "later", "v1", false, false)
	NewWithT(t).Eventually(func(g Gomega) { getAddon(g, ns, later.Name) }).WithTimeout(timeout).Should(Succeed())
	err := mgmt.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: addon.ClusterAddonName(c.Name)}, &csv1alpha1.ClusterAddon{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("the ClusterAddon of a paused Cluster: got %v, want NotFound", err)
	}

	// Resumed: the ClusterAddon is created and installs the addons.
	updateCluster(t, c, func(c *clusterv1.Cluster) { c.Spec.Paused = nil })
	waitReady(t, ns, c.Name, className("v1"))
	NewWithT(t).Eventually(func(g Gomega) { workloadConfigMap(g, "kube-system", "fixture-cni") }).WithTimeout(timeout).Should(Succeed())

	// Paused by the annotation: the ClusterAddon says so and leaves the workload cluster alone,
	// whatever changes meanwhile.
	updateCluster(t, c, func(c *clusterv1.Cluster) {
		c.Annotations = map[string]string{clusterv1.PausedAnnotation: ""}
	})
	NewWithT(t).Eventually(func(g Gomega) {
		ca := getAddon(g, ns, c.Name)
		p := condition(ca, csv1alpha1.PausedCondition)
		g.Expect(p.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(p.Reason).To(Equal(csv1alpha1.ClusterPausedReason))
		g.Expect(p.Message).To(ContainSubstring(clusterv1.PausedAnnotation))
		// What was last seen stays.
		g.Expect(ca.Status.Ready).To(BeTrue())
	}).WithTimeout(timeout).Should(Succeed())
	drifted := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "fixture-cni"}}
	if err := workload.Client.Delete(ctx, drifted); err != nil {
		t.Fatal(err)
	}
	updateCluster(t, c, func(c *clusterv1.Cluster) { c.Spec.Topology.ClassRef.Name = className("v3") })
	NewWithT(t).Consistently(func(g Gomega) {
		err := workload.Client.Get(ctx, client.ObjectKeyFromObject(drifted), &corev1.ConfigMap{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "an object deleted in the workload cluster of a paused Cluster was re-applied: %v", err)
		ca := getAddon(g, ns, c.Name)
		g.Expect(ca.Spec.ClusterStack).To(Equal(className("v1")), "the ClusterAddon of a paused Cluster moved to its new class")
		g.Expect(condition(ca, csv1alpha1.PausedCondition).Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(pausedWindow).Should(Succeed())

	// Resumed: Paused goes, the new class is installed.
	openGate(t)
	updateCluster(t, c, func(c *clusterv1.Cluster) { delete(c.Annotations, clusterv1.PausedAnnotation) })
	ca := waitReady(t, ns, c.Name, className("v3"))
	if p := condition(ca, csv1alpha1.PausedCondition); p.Type != "" {
		t.Errorf("Paused condition after the Cluster resumed: %+v", p)
	}
	NewWithT(t).Eventually(func(g Gomega) { assertV2(g, c.Name) }).WithTimeout(timeout).Should(Succeed())
}

// TestPausedClusterAddon pauses the ClusterAddon itself by its annotation: Paused with the
// skeleton's reason, and removing the annotation (which moves no generation) resumes it at once.
func TestPausedClusterAddon(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	ns := newNamespace(t)
	c := createCluster(t, ns, "golf", "v1", true, true)
	waitReady(t, ns, c.Name, className("v1"))
	setAnnotation := func(set bool) {
		NewWithT(t).Eventually(func(g Gomega) error {
			ca := getAddon(g, ns, c.Name)
			if set {
				ca.Annotations = map[string]string{clusterv1.PausedAnnotation: ""}
			} else {
				delete(ca.Annotations, clusterv1.PausedAnnotation)
			}
			return mgmt.Client.Update(ctx, ca)
		}).WithTimeout(timeout).Should(Succeed())
	}
	setAnnotation(true)
	NewWithT(t).Eventually(func(g Gomega) {
		p := condition(getAddon(g, ns, c.Name), csv1alpha1.PausedCondition)
		g.Expect(p.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(p.Reason).To(Equal(csv1alpha1.PausedReason))
	}).WithTimeout(timeout).Should(Succeed())
	setAnnotation(false)
	NewWithT(t).Eventually(func(g Gomega) {
		g.Expect(condition(getAddon(g, ns, c.Name), csv1alpha1.PausedCondition).Type).To(BeEmpty())
	}).WithTimeout(timeout).Should(Succeed())
}
