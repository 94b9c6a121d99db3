package clusterstack_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/controllers/clusterstack"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
)

func v(version string) fixtures.Options { return fixtures.Options{StackVersion: version} }

// expectReady waits until the ClusterStack is Ready with the given usable versions.
func expectReady(t *testing.T, ns, usable, latest string) {
	t.Helper()
	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		cs := getCS(g, ns)
		ready := condition(cs.Status.Conditions, clusterstackv1alpha1.ReadyCondition)
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "Ready: %s %s", ready.Reason, ready.Message)
		g.Expect(ready.ObservedGeneration).To(Equal(cs.Generation))
		g.Expect(cs.Status.ObservedGeneration).To(Equal(cs.Generation))
		g.Expect(cs.Status.UsableVersions).To(Equal(usable))
		g.Expect(cs.Status.LatestRelease).To(Equal(latest))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

func TestVersionsList(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns, repo := newNamespace(t), repoFor(t)
	publish(t, repo, v("v1"))
	publish(t, repo, v("v2"))
	publish(t, repo, v("v3")) // not listed: must not appear without autoSubscribe
	cs := newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = []string{"v1", "v2"} })

	expectReady(t, ns, "v1, v2", "openstack-scs-1-32-v2")
	g.Expect(releaseNames(g, ns)).To(ConsistOf("openstack-scs-1-32-v1", "openstack-scs-1-32-v2"))
	g.Expect(classNames(g, ns)).To(ConsistOf("openstack-scs-1-32-v1", "openstack-scs-1-32-v2"))

	csr := getCSR(g, ns, "openstack-scs-1-32-v1")
	g.Expect(metav1.IsControlledBy(csr, cs)).To(BeTrue(), "the release is owned by the ClusterStack")
	g.Expect(csr.Spec.ProviderRef).To(BeNil(), "noProvider: no provider object")
	g.Expect(csr.Status.Ready).To(BeTrue())
	g.Expect(csr.Status.KubernetesVersion).To(Equal("v1.32.5"))
	g.Expect(csr.Finalizers).To(ContainElement(clusterstackv1alpha1.ClusterStackReleaseFinalizer))
	var kinds []string
	for _, r := range csr.Status.Resources {
		g.Expect(r.Status).To(Equal(clusterstackv1alpha1.ResourceStatusSynced))
		g.Expect(r.Namespace).To(Equal(ns))
		kinds = append(kinds, r.Kind+"/"+r.Name)
	}
	g.Expect(kinds).To(ConsistOf(
		"ClusterClass/openstack-scs-1-32-v1",
		"KubeadmConfigTemplate/openstack-scs-1-32-v1-worker",
		"KubeadmControlPlaneTemplate/openstack-scs-1-32-v1-control-plane",
		"OpenStackClusterTemplate/openstack-scs-1-32-v1-cluster",
		"OpenStackMachineTemplate/openstack-scs-1-32-v1-machine",
	))
	// Applied under the operator's own field manager, without taking fields from others.
	cc := &clusterv1.ClusterClass{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "openstack-scs-1-32-v1"}, cc)).To(Succeed())
	var managers []string
	for _, mf := range cc.ManagedFields {
		managers = append(managers, mf.Manager)
	}
	g.Expect(managers).To(ContainElement("clusterstack-operator"))
	g.Expect(cs.Finalizers).To(BeEmpty(), "the ClusterStack as created had no finalizer yet")
	g.Expect(getCS(g, ns).Finalizers).To(ContainElement(clusterstackv1alpha1.ClusterStackFinalizer))
}

func TestAutoSubscribePicksUpNewRelease(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns, repo := newNamespace(t), repoFor(t)
	publish(t, repo, v("v1"))
	newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.AutoSubscribe = true })
	expectReady(t, ns, "v1", "openstack-scs-1-32-v1")

	publish(t, repo, v("v2"))
	expectReady(t, ns, "v2", "openstack-scs-1-32-v2")
	// v1 was only desired as the newest release; now it is neither listed nor used: collected,
	// with its ClusterClass.
	g.Eventually(func(g Gomega) {
		g.Expect(releaseNames(g, ns)).To(ConsistOf("openstack-scs-1-32-v2"))
		g.Expect(classNames(g, ns)).To(ConsistOf("openstack-scs-1-32-v2"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

func TestUnusedReleasesAreCollected(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, repo := newNamespace(t), repoFor(t)
	publish(t, repo, v("v1"))
	publish(t, repo, v("v2"))
	newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = []string{"v1", "v2"} })
	expectReady(t, ns, "v1, v2", "openstack-scs-1-32-v2")

	cs := getCS(g, ns)
	cs.Spec.Versions = []string{"v2"}
	g.Expect(k8s.Update(ctx, cs)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(releaseNames(g, ns)).To(ConsistOf("openstack-scs-1-32-v2"))
		g.Expect(classNames(g, ns)).To(ConsistOf("openstack-scs-1-32-v2"))
		// The templates of v1 went with it.
		var tmpls unstructured.UnstructuredList
		tmpls.SetGroupVersionKind(schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "OpenStackMachineTemplateList"})
		g.Expect(k8s.List(ctx, &tmpls, client.InNamespace(ns))).To(Succeed())
		g.Expect(tmpls.Items).To(HaveLen(1))
		g.Expect(tmpls.Items[0].GetName()).To(Equal("openstack-scs-1-32-v2-machine"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	expectReady(t, ns, "v2", "openstack-scs-1-32-v2")
}

func TestInUseReleasesAreKept(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, repo := newNamespace(t), repoFor(t)
	publish(t, repo, v("v1"))
	publish(t, repo, v("v2"))
	newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = []string{"v1"} })
	expectReady(t, ns, "v1", "openstack-scs-1-32-v1")
	cl := newCluster(t, ns, "workload", "openstack-scs-1-32-v1")

	cs := getCS(g, ns)
	cs.Spec.Versions = []string{"v2"}
	g.Expect(k8s.Update(ctx, cs)).To(Succeed())
	// v1 stays desired (and ready) while the Cluster uses it.
	expectReady(t, ns, "v1, v2", "openstack-scs-1-32-v2")
	g.Expect(releaseNames(g, ns)).To(ConsistOf("openstack-scs-1-32-v1", "openstack-scs-1-32-v2"))

	// Deleting the release or the ClusterStack by hand is refused, naming the Cluster.
	err := k8s.Delete(ctx, getCSR(g, ns, "openstack-scs-1-32-v1"))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
	g.Expect(err.Error()).To(ContainSubstring("workload"))
	err = k8s.Delete(ctx, getCS(g, ns))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
	g.Expect(err.Error()).To(ContainSubstring("workload (ClusterClass openstack-scs-1-32-v1)"))

	// Once the Cluster moves to v2, v1 is collected.
	cl.Spec.Topology.ClassRef.Name = "openstack-scs-1-32-v2"
	g.Expect(k8s.Update(ctx, cl)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(releaseNames(g, ns)).To(ConsistOf("openstack-scs-1-32-v2"))
		g.Expect(classNames(g, ns)).To(ConsistOf("openstack-scs-1-32-v2"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

func TestHashVersionReleases(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, repo := newNamespace(t), repoFor(t)
	publish(t, repo, v("v0-sha.abc1234"))
	publish(t, repo, v("v0-sha.def5678"))
	newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) {
		cs.Spec.Channel = "custom"
		cs.Spec.Versions = []string{"v0-sha.abc1234"}
	})
	expectReady(t, ns, "v0-sha.abc1234", "openstack-scs-1-32-v0-sha-abc1234")
	// Dashed in the release name, dotted in the ClusterClass name.
	g.Expect(releaseNames(g, ns)).To(ConsistOf("openstack-scs-1-32-v0-sha-abc1234"))
	g.Expect(classNames(g, ns)).To(ConsistOf("openstack-scs-1-32-v0-sha.abc1234"))

	// A Cluster using the dotted ClusterClass name keeps the dashed release.
	newCluster(t, ns, "hashed", "openstack-scs-1-32-v0-sha.abc1234")
	cs := getCS(g, ns)
	cs.Spec.Versions = []string{"v0-sha.def5678"}
	g.Expect(k8s.Update(ctx, cs)).To(Succeed())
	expectReady(t, ns, "v0-sha.abc1234, v0-sha.def5678", "openstack-scs-1-32-v0-sha-def5678")
	err := k8s.Delete(ctx, getCSR(g, ns, "openstack-scs-1-32-v0-sha-abc1234"))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
}

func TestProviderReadinessFlips(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, repo := newNamespace(t), repoFor(t)
	publish(t, repo, v("v1"))
	tmpl := &infrav1alpha1.OpenStackClusterStackReleaseTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "openstack"},
		Spec: infrav1alpha1.OpenStackClusterStackReleaseTemplateSpec{Template: infrav1alpha1.OpenStackClusterStackReleaseTemplateResource{
			Spec: infrav1alpha1.OpenStackClusterStackReleaseSpec{IdentityRef: &infrav1alpha1.OpenStackIdentityReference{Kind: "Secret", Name: "my-cloud"}},
		}},
	}
	g.Expect(k8s.Create(ctx, tmpl)).To(Succeed())
	newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) {
		cs.Spec.Versions = []string{"v1"}
		cs.Spec.NoProvider = false
		cs.Spec.ProviderRef = &corev1.ObjectReference{Kind: "OpenStackClusterStackReleaseTemplate", Name: "openstack", APIVersion: infrav1alpha1.GroupVersion.String()}
	})

	const rel = "openstack-scs-1-32-v1"
	provider := &infrav1alpha1.OpenStackClusterStackRelease{}
	g.Eventually(func(g Gomega) {
		csr := getCSR(g, ns, rel)
		g.Expect(csr.Spec.ProviderRef).NotTo(BeNil())
		g.Expect(csr.Spec.ProviderRef.Name).To(Equal(rel))
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: rel}, provider)).To(Succeed())
		g.Expect(metav1.IsControlledBy(provider, csr)).To(BeTrue())
		g.Expect(provider.Spec.IdentityRef.Name).To(Equal("my-cloud"))
		ready := condition(csr.Status.Conditions, clusterstackv1alpha1.ReadyCondition)
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(clusterstackv1alpha1.ProviderNotReadyReason))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	// Nothing is applied before the provider is ready.
	g.Expect(classNames(g, ns)).To(BeEmpty())

	setProvider := func(ready bool, msg string) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(provider), provider)).To(Succeed())
		status := metav1.ConditionTrue
		reason := "Ready"
		if !ready {
			status, reason = metav1.ConditionFalse, "ImageImportFailed"
		}
		provider.Status.Ready = ready
		provider.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.Now(), ObservedGeneration: provider.Generation}}
		g.Expect(k8s.Status().Update(ctx, provider)).To(Succeed())
	}
	setProvider(true, "")
	expectReady(t, ns, "v1", rel)
	g.Expect(classNames(g, ns)).To(ConsistOf(rel))

	// Readiness that goes away makes the release (and the stack) not ready, with the reason.
	setProvider(false, "image ubuntu-capi-image-v1.32.5 failed to import")
	g.Eventually(func(g Gomega) {
		csr := getCSR(g, ns, rel)
		ready := condition(csr.Status.Conditions, clusterstackv1alpha1.ReadyCondition)
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(clusterstackv1alpha1.ProviderNotReadyReason))
		g.Expect(ready.Message).To(ContainSubstring("failed to import"))
		g.Expect(csr.Status.Ready).To(BeFalse())
		cs := getCS(g, ns)
		g.Expect(condition(cs.Status.Conditions, clusterstackv1alpha1.ReadyCondition).Status).To(Equal(metav1.ConditionFalse))
		g.Expect(cs.Status.UsableVersions).To(BeEmpty())
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	setProvider(true, "")
	expectReady(t, ns, "v1", rel)
}

func TestDriftIsRepaired(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, repo := newNamespace(t), repoFor(t)
	publish(t, repo, v("v1"))
	newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = []string{"v1"} })
	expectReady(t, ns, "v1", "openstack-scs-1-32-v1")

	// Someone else removes part of what the operator applied (a field the operator owns alone
	// can be restored without forcing; a field another manager took over would be a conflict,
	// which the operator reports instead of forcing).
	cc := &clusterv1.ClusterClass{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "openstack-scs-1-32-v1"}, cc)).To(Succeed())
	g.Expect(cc.Spec.Patches).NotTo(BeEmpty())
	g.Expect(k8s.Patch(ctx, cc, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"patches":null}}`)), client.FieldOwner("someone-else"))).To(Succeed())
	g.Expect(cc.Spec.Patches).To(BeEmpty())

	g.Eventually(func(g Gomega) {
		live := &clusterv1.ClusterClass{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(cc), live)).To(Succeed())
		g.Expect(live.Spec.Patches).To(HaveLen(1))
		g.Expect(live.Spec.Patches[0].Name).To(Equal("machine"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	// Reported once, as an event on the release.
	g.Eventually(func(g Gomega) {
		var evs eventsv1.EventList
		g.Expect(k8s.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
		n := 0
		for _, e := range evs.Items {
			if e.Reason == "DriftRepaired" && e.Regarding.Name == "openstack-scs-1-32-v1" {
				n++
				g.Expect(e.Note).To(ContainSubstring("ClusterClass/openstack-scs-1-32-v1"))
			}
		}
		g.Expect(n).To(Equal(1))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

func TestDeleteRemovesEverything(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, repo := newNamespace(t), repoFor(t)
	publish(t, repo, v("v1"))
	publish(t, repo, v("v2"))
	newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = []string{"v1", "v2"} })
	expectReady(t, ns, "v1, v2", "openstack-scs-1-32-v2")

	g.Expect(k8s.Delete(ctx, getCS(g, ns))).To(Succeed())
	g.Eventually(func(g Gomega) {
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "scs"}, &clusterstackv1alpha1.ClusterStack{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "ClusterStack still there: %v", err)
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Expect(releaseNames(g, ns)).To(BeEmpty())
	g.Expect(classNames(g, ns)).To(BeEmpty())
	for _, kind := range []schema.GroupVersionKind{
		{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "OpenStackMachineTemplateList"},
		{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "OpenStackClusterTemplateList"},
		{Group: "controlplane.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmControlPlaneTemplateList"},
		{Group: "bootstrap.cluster.x-k8s.io", Version: "v1beta2", Kind: "KubeadmConfigTemplateList"},
	} {
		var list unstructured.UnstructuredList
		list.SetGroupVersionKind(kind)
		g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		g.Expect(list.Items).To(BeEmpty(), kind.Kind)
	}
}

func TestBadReleases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("missing CRD", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		ns, repo := newNamespace(t), repoFor(t)
		publish(t, repo, fixtures.Options{StackVersion: "v1", Source: "openstack-scs-missingcrd"})
		newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = []string{"v1"} })
		g.Eventually(func(g Gomega) {
			csr := getCSR(g, ns, "openstack-scs-1-32-v1")
			applied := condition(csr.Status.Conditions, clusterstackv1alpha1.ResourcesAppliedCondition)
			g.Expect(applied.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(applied.Reason).To(Equal(clusterstackv1alpha1.MissingAPIReason))
			g.Expect(applied.Message).To(ContainSubstring("OpenStackServerGroup"))
			g.Expect(applied.Message).To(ContainSubstring("infrastructure provider"))
			g.Expect(condition(csr.Status.Conditions, clusterstackv1alpha1.StalledCondition).Status).To(Equal(metav1.ConditionTrue))
			g.Expect(csr.Status.Resources).To(BeEmpty())
			cs := getCS(g, ns)
			g.Expect(condition(cs.Status.Conditions, clusterstackv1alpha1.ReadyCondition).Status).To(Equal(metav1.ConditionFalse))
			g.Expect(condition(cs.Status.Conditions, clusterstackv1alpha1.StalledCondition).Status).To(Equal(metav1.ConditionTrue))
		}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
		// Not half-applied: the ClusterClass the chart also renders does not exist.
		g.Expect(classNames(g, ns)).To(BeEmpty())
	})
	t.Run("inconsistent metadata", func(t *testing.T) {
		t.Parallel()
		g := NewWithT(t)
		ns, repo := newNamespace(t), repoFor(t)
		// A release whose metadata claims another Kubernetes minor than its name.
		dir, err := fixtures.Build(t.TempDir(), fixtures.Options{StackVersion: "v1", KubernetesVersion: "v1.33.1"})
		g.Expect(err).NotTo(HaveOccurred())
		renamed := filepath.Join(filepath.Dir(dir), "openstack-scs-1-32-v1")
		g.Expect(os.Rename(dir, renamed)).To(Succeed())
		publishDir(t, repo, renamed, "openstack-scs-1-32-v1")
		newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = []string{"v1"} })
		g.Eventually(func(g Gomega) {
			csr := getCSR(g, ns, "openstack-scs-1-32-v1")
			avail := condition(csr.Status.Conditions, clusterstackv1alpha1.ReleaseAvailableCondition)
			g.Expect(avail.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(avail.Reason).To(Equal(clusterstackv1alpha1.InvalidReleaseReason))
			g.Expect(condition(csr.Status.Conditions, clusterstackv1alpha1.StalledCondition).Status).To(Equal(metav1.ConditionTrue))
		}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
		g.Expect(classNames(g, ns)).To(BeEmpty())
	})
	_ = ctx
}

func TestSourceOutage(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns, repo := newNamespace(t), repoFor(t)
	publish(t, repo, v("v1"))
	newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.AutoSubscribe = true })
	expectReady(t, ns, "v1", "openstack-scs-1-32-v1")

	registry.setBroken(repo, http.StatusServiceUnavailable)
	t.Cleanup(func() { registry.setBroken(repo, 0) })
	g.Eventually(func(g Gomega) {
		cs := getCS(g, ns)
		synced := condition(cs.Status.Conditions, clusterstackv1alpha1.ReleasesSyncedCondition)
		g.Expect(synced.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(synced.Reason).To(Equal(clusterstackv1alpha1.ReleaseSourceErrorReason))
		g.Expect(synced.Message).To(ContainSubstring("503"))
		g.Expect(condition(cs.Status.Conditions, clusterstackv1alpha1.ReadyCondition).Status).To(Equal(metav1.ConditionFalse))
		g.Expect(condition(cs.Status.Conditions, clusterstackv1alpha1.ReconcilingCondition).Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	// The outage collects nothing: the release it could not confirm stays, and ready.
	g.Expect(releaseNames(g, ns)).To(ConsistOf("openstack-scs-1-32-v1"))
	g.Expect(getCSR(g, ns, "openstack-scs-1-32-v1").Status.Ready).To(BeTrue())

	registry.setBroken(repo, 0)
	expectReady(t, ns, "v1", "openstack-scs-1-32-v1")
	cs := getCS(g, ns)
	g.Expect(condition(cs.Status.Conditions, clusterstackv1alpha1.ReleasesSyncedCondition).Status).To(Equal(metav1.ConditionTrue))
}

func TestORCImageAvailability(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, repo := newNamespace(t), repoFor(t)
	publish(t, repo, fixtures.Options{StackVersion: "v1", Source: "openstack-scs-orc"})
	newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = []string{"v1"} })

	img := &unstructured.Unstructured{}
	img.SetGroupVersionKind(schema.GroupVersionKind{Group: "openstack.k-orc.cloud", Version: "v1alpha1", Kind: "Image"})
	img.SetNamespace(ns)
	img.SetName("openstack-scs-1-32-v1")
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(img), img)).To(Succeed())
		csr := getCSR(g, ns, "openstack-scs-1-32-v1")
		ready := condition(csr.Status.Conditions, clusterstackv1alpha1.ReadyCondition)
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal("ImagesNotAvailable"))
		g.Expect(condition(csr.Status.Conditions, clusterstackv1alpha1.ResourcesAppliedCondition).Status).To(Equal(metav1.ConditionTrue))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	g.Expect(unstructured.SetNestedSlice(img.Object, []any{map[string]any{
		"type": "Available", "status": "True", "reason": "Success", "message": "Glance image is available",
		"lastTransitionTime": metav1.Now().UTC().Format("2006-01-02T15:04:05Z"), "observedGeneration": img.GetGeneration(),
	}}, "status", "conditions")).To(Succeed())
	g.Expect(k8s.Status().Update(ctx, img)).To(Succeed())
	expectReady(t, ns, "v1", "openstack-scs-1-32-v1")
}

func TestClusterAPIv1beta1Stack(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, repo := newNamespace(t), repoFor(t)
	publish(t, repo, fixtures.Options{StackVersion: "v1", Source: "openstack-scs-v1beta1"})
	newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = []string{"v1"} })
	expectReady(t, ns, "v1", "openstack-scs-1-32-v1")

	csr := getCSR(g, ns, "openstack-scs-1-32-v1")
	for _, r := range csr.Status.Resources {
		if strings.HasSuffix(r.Group, "cluster.x-k8s.io") && r.Group != "infrastructure.cluster.x-k8s.io" {
			g.Expect(r.Version).To(Equal("v1beta1"), "applied as rendered: %s", r.Kind)
		}
	}
	// Stored as v1beta2 through Cluster API's conversion: the v1beta1 refs became templateRefs
	// and the kubelet argument map became a list.
	cc := &clusterv1.ClusterClass{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "openstack-scs-1-32-v1"}, cc)).To(Succeed())
	g.Expect(cc.Spec.ControlPlane.TemplateRef.Name).To(Equal("openstack-scs-1-32-v1-control-plane"))
	g.Expect(cc.Spec.Workers.MachineDeployments[0].Bootstrap.TemplateRef.Kind).To(Equal("KubeadmConfigTemplate"))
}

// TestORCImageKeptWhileInUse rebuilds a release in place (a local source is re-read on every
// use, as during development) so that its chart no longer renders the ORC Image: the Image must
// stay while a Cluster uses the release, and go once none does.
func TestORCImageKeptWhileInUse(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	dir := t.TempDir()
	build := func(stack string) {
		g.Expect(os.RemoveAll(filepath.Join(dir, "openstack-scs-1-32-v1"))).To(Succeed())
		_, err := fixtures.Build(dir, fixtures.Options{StackVersion: "v1", Source: stack})
		g.Expect(err).NotTo(HaveOccurred())
	}
	build("openstack-scs-orc")
	newClusterStack(t, ns, "", func(cs *clusterstackv1alpha1.ClusterStack) {
		cs.Spec.Versions = []string{"v1"}
		cs.Spec.Source = &clusterstackv1alpha1.ReleaseSource{Local: &clusterstackv1alpha1.LocalSource{Path: dir}}
	})
	img := &unstructured.Unstructured{}
	img.SetGroupVersionKind(schema.GroupVersionKind{Group: "openstack.k-orc.cloud", Version: "v1alpha1", Kind: "Image"})
	img.SetNamespace(ns)
	img.SetName("openstack-scs-1-32-v1")
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(img), img)).To(Succeed())
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	cl := newCluster(t, ns, "workload", "openstack-scs-1-32-v1")

	// Rebuild without the Image and make the release look again.
	build("openstack-scs")
	touch := func() {
		csr := getCSR(g, ns, "openstack-scs-1-32-v1")
		base := csr.DeepCopy()
		if csr.Annotations == nil {
			csr.Annotations = map[string]string{}
		}
		csr.Annotations["test/touched"] = time.Now().String()
		g.Expect(k8s.Patch(ctx, csr, client.MergeFrom(base))).To(Succeed())
	}
	touch()
	g.Eventually(func(g Gomega) {
		csr := getCSR(g, ns, "openstack-scs-1-32-v1")
		// Re-rendered: the Image's hash annotation and label are still ours, and it is still in
		// the inventory although the chart no longer renders it.
		var kinds []string
		for _, r := range csr.Status.Resources {
			kinds = append(kinds, r.Kind)
		}
		g.Expect(kinds).To(ContainElement("Image"))
		g.Expect(csr.Status.ObservedGeneration).To(Equal(csr.Generation))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(img), img)).To(Succeed())
	}).WithTimeout(2 * time.Second).WithPolling(poll).Should(Succeed())

	// Without the Cluster the Image is pruned.
	g.Expect(k8s.Delete(ctx, cl)).To(Succeed())
	touch()
	g.Eventually(func(g Gomega) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(img), img)
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "Image still there: %v", err)
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

// TestSourceSuccessKeepsOtherFailures checks that a working source does not paper over a
// failure it did not fix (the reference set ReleasesSynced True after any successful listing).
func TestSourceSuccessKeepsOtherFailures(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, repo := newNamespace(t), repoFor(t)
	publish(t, repo, v("v1"))
	newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) {
		cs.Spec.AutoSubscribe = true
		cs.Spec.NoProvider = false
		cs.Spec.ProviderRef = &corev1.ObjectReference{Kind: "OpenStackClusterStackReleaseTemplate", Name: "absent"}
	})
	synced := func(g Gomega) metav1.Condition {
		return condition(getCS(g, ns).Status.Conditions, clusterstackv1alpha1.ReleasesSyncedCondition)
	}
	g.Eventually(func(g Gomega) {
		c := synced(g)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal("ProviderTemplateError"))
		g.Expect(c.Message).To(ContainSubstring("absent"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	// The source keeps answering (checked every second): the failure stays.
	g.Consistently(func(g Gomega) {
		g.Expect(synced(g).Reason).To(Equal("ProviderTemplateError"))
	}).WithTimeout(3 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())

	// A source outage on top is reported with it, and its recovery leaves the other failure.
	registry.setBroken(repo, http.StatusServiceUnavailable)
	t.Cleanup(func() { registry.setBroken(repo, 0) })
	g.Eventually(func(g Gomega) {
		c := synced(g)
		g.Expect(c.Message).To(ContainSubstring("503"))
		g.Expect(c.Message).To(ContainSubstring("absent"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	registry.setBroken(repo, 0)
	g.Eventually(func(g Gomega) {
		c := synced(g)
		g.Expect(c.Message).NotTo(ContainSubstring("503"))
		g.Expect(c.Reason).To(Equal("ProviderTemplateError"))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	// Creating the template fixes it: the provider object appears (and waits for its controller).
	tmpl := &infrav1alpha1.OpenStackClusterStackReleaseTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "absent"}}
	g.Expect(k8s.Create(ctx, tmpl)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(synced(g).Status).To(Equal(metav1.ConditionTrue))
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "openstack-scs-1-32-v1"}, &infrav1alpha1.OpenStackClusterStackRelease{})).To(Succeed())
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

// TestUnpublishedVersionStalls: a version the source's listing lacks stalls the ClusterStack
// (kstatus Failed, a Warning event) with the nearest versions the source has, and the next
// source check after it is published lets the ClusterStack become ready.
func TestUnpublishedVersionStalls(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, repo := newNamespace(t), repoFor(t)
	for _, ver := range []string{"v1", "v2", "v3", "v5", "v6", "v7"} {
		publish(t, repo, v(ver))
	}
	newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = []string{"v4"} })

	const msg = "spec.versions: version v4 is not in the release source (nearest: v2, v3, v5, v6)"
	g.Eventually(func(g Gomega) {
		cs := getCS(g, ns)
		stalled := condition(cs.Status.Conditions, clusterstackv1alpha1.StalledCondition)
		g.Expect(stalled.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(stalled.Reason).To(Equal(clusterstack.VersionNotFoundReason))
		g.Expect(stalled.Message).To(Equal(msg))
		g.Expect(condition(cs.Status.Conditions, clusterstackv1alpha1.ReadyCondition).Status).To(Equal(metav1.ConditionFalse))
		g.Expect(cs.Status.Conditions).NotTo(ContainElement(HaveField("Type", clusterstackv1alpha1.ReconcilingCondition)))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Eventually(func(g Gomega) {
		var evs eventsv1.EventList
		g.Expect(k8s.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
		var notes []string
		for _, e := range evs.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == clusterstack.VersionNotFoundReason && e.Regarding.Kind == "ClusterStack" {
				notes = append(notes, e.Note)
			}
		}
		g.Expect(notes).To(ContainElement(ContainSubstring("nearest: v2, v3, v5, v6")))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())

	publish(t, repo, v("v4"))
	expectReady(t, ns, "v4", "openstack-scs-1-32-v4")
	cs := getCS(g, ns)
	g.Expect(cs.Status.Conditions).NotTo(ContainElement(HaveField("Type", clusterstackv1alpha1.StalledCondition)))
}
