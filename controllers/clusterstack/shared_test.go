package clusterstack_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/controllers/clusterstack"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
)

// sharedImage is the ORC Image every release of the openstack-scs-shared fixture renders.
const sharedImage = "ubuntu-capi-image-v1.32.5"

// stableWindow is how long a converged state is watched for writes and changes.
const stableWindow = 3 * time.Second

func shared(version string) fixtures.Options {
	return fixtures.Options{StackVersion: version, Source: "openstack-scs-shared"}
}

func imageKey(ns string) *unstructured.Unstructured {
	img := &unstructured.Unstructured{}
	img.SetGroupVersionKind(schema.GroupVersionKind{Group: "openstack.k-orc.cloud", Version: "v1alpha1", Kind: "Image"})
	img.SetNamespace(ns)
	img.SetName(sharedImage)
	return img
}

func getImage(g Gomega, ns string) *unstructured.Unstructured {
	img := imageKey(ns)
	g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(img), img)).To(Succeed())
	return img
}

// setImageAvailable reports the Image Available, as ORC does once the Glance image is active.
func setImageAvailable(t testing.TB, ns string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		img := getImage(g, ns)
		g.Expect(unstructured.SetNestedSlice(img.Object, []any{map[string]any{
			"type": "Available", "status": "True", "reason": "Success", "message": "Glance image is available",
			"lastTransitionTime": metav1.Now().UTC().Format(time.RFC3339), "observedGeneration": img.GetGeneration(),
		}}, "status", "conditions")).To(Succeed())
		g.Expect(k8s.Status().Update(context.Background(), img)).To(Succeed())
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

// expectImageOwnedBy waits until the Image carries the content of release version (its
// app.kubernetes.io/version label) and names that release in ReleaseLabel, keeping uid.
func expectImageOwnedBy(t *testing.T, ns, version string, uid types.UID) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		img := getImage(g, ns)
		g.Expect(img.GetUID()).To(Equal(uid), "the Image was deleted and created again")
		g.Expect(img.GetLabels()).To(HaveKeyWithValue(clusterstack.ReleaseLabel, "openstack-scs-1-32-"+version))
		g.Expect(img.GetLabels()).To(HaveKeyWithValue("app.kubernetes.io/version", version))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

// expectStable checks over stableWindow that the manager writes nothing in ns, that the Image
// does not change, and that the releases stay Ready, while each release is made to reconcile
// once more.
func expectStable(t *testing.T, ns string, releases ...string) {
	t.Helper()
	g := NewWithT(t)
	// The last status patches and events of the convergence land first.
	time.Sleep(2 * time.Second)
	rv := getImage(g, ns).GetResourceVersion()
	before := writesIn(ns)
	for _, rel := range releases {
		touch(t, ns, rel)
	}
	g.Consistently(func(g Gomega) {
		g.Expect(getImage(g, ns).GetResourceVersion()).To(Equal(rv), "the Image changed")
		for _, rel := range releases {
			g.Expect(getCSR(g, ns, rel).Status.Ready).To(BeTrue(), "%s not ready", rel)
		}
	}).WithTimeout(stableWindow).WithPolling(poll).Should(Succeed())
	g.Expect(writesIn(ns)-before).To(BeZero(), "API writes in namespace %s while converged", ns)
}

// touch changes an annotation of the release, which makes it reconcile.
func touch(t *testing.T, ns, rel string) {
	t.Helper()
	g := NewWithT(t)
	csr := getCSR(g, ns, rel)
	base := csr.DeepCopy()
	if csr.Annotations == nil {
		csr.Annotations = map[string]string{}
	}
	csr.Annotations["test/touched"] = time.Now().String()
	g.Expect(k8s.Patch(context.Background(), csr, client.MergeFrom(base))).To(Succeed())
}

func setVersions(t *testing.T, ns string, versions ...string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		cs := getCS(g, ns)
		cs.Spec.Versions = versions
		g.Expect(k8s.Update(context.Background(), cs)).To(Succeed())
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

func inventoryHasImage(csr *clusterstackv1alpha1.ClusterStackRelease) bool {
	for _, r := range csr.Status.Resources {
		if r.Kind == "Image" && r.Name == sharedImage {
			return true
		}
	}
	return false
}

// TestSharedImageOneOwner runs two releases of a stack that render the same ORC Image (as the
// published openstack/scs stack does): the newest release's content is live and nobody rewrites
// it; dropping either release keeps the Image (the same object: with ORC's managed policy a new
// one would delete and upload the Glance image again), and the remaining release takes it over;
// dropping both deletes it.
func TestSharedImageOneOwner(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, repo := newNamespace(t), repoFor(t)
	publish(t, repo, shared("v1"))
	publish(t, repo, shared("v2"))
	newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = []string{"v1", "v2"} })
	const v1, v2 = "openstack-scs-1-32-v1", "openstack-scs-1-32-v2"

	g.Eventually(func(g Gomega) { getImage(g, ns) }).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	setImageAvailable(t, ns)
	expectReady(t, ns, "v1, v2", v2)
	uid := getImage(g, ns).GetUID()
	expectImageOwnedBy(t, ns, "v2", uid)
	// Both releases list it: each one's in-use and prune decisions see the other.
	g.Expect(inventoryHasImage(getCSR(g, ns, v1))).To(BeTrue())
	g.Expect(inventoryHasImage(getCSR(g, ns, v2))).To(BeTrue())
	expectStable(t, ns, v1, v2)

	// The newest release goes: the older one takes the Image over, the same object.
	setVersions(t, ns, "v1")
	g.Eventually(func(g Gomega) { g.Expect(releaseNames(g, ns)).To(ConsistOf(v1)) }).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	expectImageOwnedBy(t, ns, "v1", uid)
	expectReady(t, ns, "v1", v1)
	expectStable(t, ns, v1)

	// A newer release comes back and takes it over again.
	setVersions(t, ns, "v1", "v2")
	expectImageOwnedBy(t, ns, "v2", uid)
	expectReady(t, ns, "v1, v2", v2)
	expectStable(t, ns, v1, v2)

	// The older release goes: the Image stays as it is.
	setVersions(t, ns, "v2")
	g.Eventually(func(g Gomega) { g.Expect(releaseNames(g, ns)).To(ConsistOf(v2)) }).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	expectImageOwnedBy(t, ns, "v2", uid)
	expectReady(t, ns, "v2", v2)
	expectStable(t, ns, v2)

	// No release renders it any more: it goes with the last one.
	g.Expect(k8s.Delete(ctx, getCS(g, ns))).To(Succeed())
	g.Eventually(func(g Gomega) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(imageKey(ns)), imageKey(ns))
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "Image still there: %v", err)
		g.Expect(releaseNames(g, ns)).To(BeEmpty())
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}

// TestSharedImageSurvivesReplacement follows autoSubscribe from v1 to v2 while v2 waits for its
// provider (node images being uploaded), so that v1 is deleted before v2 has applied anything:
// v1 must still see that v2 renders the Image, and leave it.
func TestSharedImageSurvivesReplacement(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, repo := newNamespace(t), repoFor(t)
	publish(t, repo, shared("v1"))
	g.Expect(k8s.Create(ctx, &infrav1alpha1.OpenStackClusterStackReleaseTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "openstack"}})).To(Succeed())
	newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) {
		cs.Spec.AutoSubscribe = true
		cs.Spec.NoProvider = false
		cs.Spec.ProviderRef = &corev1.ObjectReference{Kind: "OpenStackClusterStackReleaseTemplate", Name: "openstack", APIVersion: infrav1alpha1.GroupVersion.String()}
	})
	const v1, v2 = "openstack-scs-1-32-v1", "openstack-scs-1-32-v2"
	setProviderReady(t, ns, v1)
	g.Eventually(func(g Gomega) { getImage(g, ns) }).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	setImageAvailable(t, ns)
	expectReady(t, ns, "v1", v1)
	uid := getImage(g, ns).GetUID()

	publish(t, repo, shared("v2"))
	g.Eventually(func(g Gomega) {
		g.Expect(releaseNames(g, ns)).To(ConsistOf(v2))
		csr := getCSR(g, ns, v2)
		g.Expect(condition(csr.Status.Conditions, clusterstackv1alpha1.ProviderReadyCondition).Status).To(Equal(metav1.ConditionFalse))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(getImage(g, ns).GetUID()).To(Equal(uid), "the Image was deleted and created again")
	}).WithTimeout(2 * time.Second).WithPolling(poll).Should(Succeed())

	setProviderReady(t, ns, v2)
	expectReady(t, ns, "v2", v2)
	expectImageOwnedBy(t, ns, "v2", uid)
	expectStable(t, ns, v2)
}

// setProviderReady reports the release's OpenStackClusterStackRelease ready, as its controller
// (not running in this package) does once the node images exist.
func setProviderReady(t *testing.T, ns, rel string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		p := &infrav1alpha1.OpenStackClusterStackRelease{}
		g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: rel}, p)).To(Succeed())
		p.Status.Ready = true
		p.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Ready", LastTransitionTime: metav1.Now(), ObservedGeneration: p.Generation}}
		g.Expect(k8s.Status().Update(context.Background(), p)).To(Succeed())
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}
