package openstack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cluster-api/util/conditions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

// buildReleases builds fixture releases openstack-scs-1-32-v<n> for the versions, with node
// images unless listed in without.
func buildReleases(tb testing.TB, versions []int, without ...int) string {
	tb.Helper()
	dir := tb.TempDir()
	for _, v := range versions {
		withImages := true
		for _, w := range without {
			withImages = withImages && w != v
		}
		if _, err := fixtures.Build(dir, fixtures.Options{StackVersion: fmt.Sprintf("v%d", v), NodeImages: withImages}); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

func createRelease(tb testing.TB, ns, name, secret string) *infrav1.OpenStackClusterStackRelease {
	tb.Helper()
	obj := &infrav1.OpenStackClusterStackRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       infrav1.OpenStackClusterStackReleaseSpec{IdentityRef: &infrav1.OpenStackIdentityReference{Kind: "Secret", Name: secret}},
	}
	if err := env.Client.Create(context.Background(), obj); err != nil {
		tb.Fatal(err)
	}
	return obj
}

func waitReleaseReady(g Gomega, ns, name string) {
	obj := &infrav1.OpenStackClusterStackRelease{}
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj)).To(Succeed())
		g.Expect(conditions.IsTrue(obj, csv1alpha1.ReadyCondition)).To(BeTrue(), "Ready: %s", conditions.GetMessage(obj, csv1alpha1.ReadyCondition))
		g.Expect(obj.Status.Ready).To(BeTrue())
		g.Expect(obj.Status.ObservedGeneration).To(Equal(obj.Generation))
	}).WithTimeout(60 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
}

func TestClusterStackReleaseNodeImages(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	releases := dirReleases{dir: buildReleases(t, []int{1, 2, 3}, 3), adjust: map[string]func(*release.Release){
		// v2 ships the same node images as v1, so both share one object and one Glance image.
		"openstack-scs-1-32-v2": func(r *release.Release) { r.Metadata.Versions.Components.NodeImage = "v1" },
	}}
	f.startManager(f.options(releases))

	// No node images: simply ready.
	createRelease(t, f.ns, "openstack-scs-1-32-v3", f.secret)
	waitReleaseReady(g, f.ns, "openstack-scs-1-32-v3")

	v1 := createRelease(t, f.ns, "openstack-scs-1-32-v1", f.secret)
	waitReleaseReady(g, f.ns, v1.Name)
	const nirName = "openstack-scs-1-32-ubuntu-capi-image-v1.32.5-v1"
	nir := f.waitReady(g, nirName)
	g.Expect(nir.Spec.Image.URL).To(Equal("https://images.invalid/ubuntu-capi-image-v1.32.5.qcow2"))
	g.Expect(nir.Spec.IdentityRef.Name).To(Equal(f.secret))

	v2 := createRelease(t, f.ns, "openstack-scs-1-32-v2", f.secret)
	waitReleaseReady(g, f.ns, v2.Name)
	nir = f.get(nirName)
	g.Expect(nir.OwnerReferences).To(HaveLen(2))
	g.Expect(f.cloud.Images()).To(HaveLen(1))
	g.Expect(f.cloud.Calls(openstackdouble.CallImportImage)).To(Equal(1))

	// The shared object stays while one release uses it.
	g.Expect(env.Client.Delete(context.Background(), v1)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(f.get(nirName).OwnerReferences).To(HaveLen(1))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	g.Expect(f.cloud.Images()).To(HaveLen(1))

	g.Expect(env.Client.Delete(context.Background(), v2)).To(Succeed())
	g.Eventually(func() bool {
		err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: nirName}, &infrav1.OpenStackNodeImageRelease{})
		return apierrors.IsNotFound(err)
	}).WithTimeout(30 * time.Second).Should(BeTrue())
	g.Expect(f.cloud.Images()).To(BeEmpty())
}

func TestClusterStackReleaseSecondProject(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t,
		openstackdouble.WithUser(openstackdouble.User{Name: "alice", Password: "alice-pw", Projects: []string{"alpha"}}),
		openstackdouble.WithUser(openstackdouble.User{Name: "bob", Password: "bob-pw", Projects: []string{"beta"}}))
	other := f.newNamespace()
	f.addSecretIn(f.ns, "alpha", openstackdouble.CloudsYAMLOptions{User: "alice", Password: "alice-pw"})
	f.addSecretIn(other, "beta", openstackdouble.CloudsYAMLOptions{User: "bob", Password: "bob-pw"})
	f.startManager(f.options(dirReleases{dir: buildReleases(t, []int{1})}))

	createRelease(t, f.ns, "openstack-scs-1-32-v1", "alpha")
	createRelease(t, other, "openstack-scs-1-32-v1", "beta")
	waitReleaseReady(g, f.ns, "openstack-scs-1-32-v1")
	waitReleaseReady(g, other, "openstack-scs-1-32-v1")

	imgs := f.cloud.Images()
	g.Expect(imgs).To(HaveLen(2), "each project gets its own image")
	g.Expect([]string{imgs[0].Owner, imgs[1].Owner}).To(ConsistOf(f.cloud.ProjectID("alpha"), f.cloud.ProjectID("beta")))
}

func TestClusterStackReleaseInvalidNodeImages(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	// The release's own node-images.yaml is bad, so loading the release fails.
	dir := buildReleases(t, []int{1})
	bad := filepath.Join(dir, "openstack-scs-1-32-v1", release.NodeImagesFile)
	g.Expect(os.WriteFile(bad, []byte("openStackNodeImages:\n  - url: ftp://nope\n    createOpts: {name: x}\n"), 0o600)).To(Succeed())
	f.startManager(f.options(dirReleases{dir: dir}))
	createRelease(t, f.ns, "openstack-scs-1-32-v1", f.secret)
	g.Eventually(func(g Gomega) {
		obj := &infrav1.OpenStackClusterStackRelease{}
		g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: "openstack-scs-1-32-v1"}, obj)).To(Succeed())
		g.Expect(conditions.IsTrue(obj, csv1alpha1.StalledCondition)).To(BeTrue())
		g.Expect(conditions.GetReason(obj, csv1alpha1.StalledCondition)).To(Equal(infrav1.InvalidNodeImagesReason))
	}).WithTimeout(30 * time.Second).Should(Succeed())
}
