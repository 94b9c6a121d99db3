package openstack

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

// pathOf turns a call key ("POST /v2/images") into the path a Fault matches.
func pathOf(call string) string {
	_, p, _ := strings.Cut(call, " ")
	return p
}

func withHash(f *fixture) func(*infrav1.OpenStackNodeImageRelease) {
	return func(n *infrav1.OpenStackNodeImageRelease) {
		n.Spec.Image.Hash = &infrav1.ImageHash{Algorithm: infrav1.HashAlgorithmSHA512, Value: f.sha512()}
	}
}

func TestWebDownload(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newFixture(t)
	f.startManager(f.options(nil))
	f.nodeImage("web", nil)

	nir := f.waitReady(g, "web")
	g.Expect(nir.Status.ImageStatus).To(Equal("active"))
	g.Expect(nir.Status.CreatedImage).To(BeTrue())
	img, ok := f.cloud.Image(nir.Status.ImageID)
	g.Expect(ok).To(BeTrue())
	g.Expect(img.Status).To(Equal(openstackdouble.StatusActive))
	g.Expect(img.Properties).To(HaveKeyWithValue("os_purpose", "k8snode"))
	g.Expect(img.Properties).To(HaveKeyWithValue("image_source", f.url(imagePath)))
	g.Expect(img.Properties).To(HaveKeyWithValue("replace_frequency", "never"))
	g.Expect(img.Properties).To(HaveKey("image_build_date"))
	g.Expect(f.cloud.Calls(openstackdouble.CallImportImage)).To(Equal(1))
	g.Expect(f.cloud.Calls(openstackdouble.CallUploadImage)).To(Equal(0))
	g.Expect(f.cloud.Images()).To(HaveLen(1))
}

func TestUploadWithHash(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newFixture(t)
	f.startManager(f.options(nil))
	// A hash is asked for: the operator must verify it, so it uploads even though the cloud
	// offers web-download.
	f.nodeImage("upload", withHash(f))

	nir := f.waitReady(g, "upload")
	img, _ := f.cloud.Image(nir.Status.ImageID)
	g.Expect(img.Size).To(Equal(int64(len(f.data))))
	g.Expect(f.cloud.Calls(openstackdouble.CallUploadImage)).To(Equal(1))
	g.Expect(f.cloud.Calls(openstackdouble.CallImportImage)).To(Equal(0))
}

func TestUploadWithoutWebDownload(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newFixture(t, openstackdouble.WithWebDownload(false))
	f.startManager(f.options(nil))
	f.nodeImage("noweb", nil)

	f.waitReady(g, "noweb")
	g.Expect(f.cloud.Calls(openstackdouble.CallUploadImage)).To(Equal(1))
	g.Expect(f.cloud.Calls(openstackdouble.CallImportImage)).To(Equal(0))
}

func TestHashMismatchRefused(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newFixture(t)
	f.startManager(f.options(nil))
	f.nodeImage("bad", func(n *infrav1.OpenStackNodeImageRelease) {
		n.Spec.Image.Hash = &infrav1.ImageHash{Algorithm: infrav1.HashAlgorithmSHA512, Value: strings.Repeat("ab", 64)}
	})

	nir := f.waitCondition(g, "bad", csv1alpha1.StalledCondition, metav1.ConditionTrue, infrav1.HashMismatchReason)
	g.Expect(nir.Status.Ready).To(BeFalse())
	g.Expect(nir.Status.ImageID).To(BeEmpty())
	g.Expect(f.cloud.Calls(openstackdouble.CallCreateImage)).To(Equal(1))
	// The upload was aborted and the record deleted: nothing can boot from the wrong bytes.
	g.Expect(f.cloud.Images()).To(BeEmpty())
	// Stalled waits for a new spec: no further attempts.
	calls := f.cloud.TotalCalls()
	g.Consistently(f.cloud.TotalCalls).WithTimeout(time.Second).Should(Equal(calls))
}

func TestFailedImportRetried(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newFixture(t)
	fault := f.cloud.InjectFault(openstackdouble.Fault{Method: "POST", Path: pathOf(openstackdouble.CallImportImage), Times: 1, Import: openstackdouble.ImportFails})
	f.startManager(f.options(nil))
	f.nodeImage("retry", nil)

	nir := f.waitReady(g, "retry")
	g.Expect(fault.Hits()).To(Equal(1))
	g.Expect(nir.Status.TransferAttempts).To(Equal(int32(2)))
	g.Expect(f.cloud.Calls(openstackdouble.CallImportImage)).To(Equal(2))
	g.Expect(f.cloud.Images()).To(HaveLen(1))
}

func TestFailedImportTerminal(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newFixture(t)
	f.cloud.InjectFault(openstackdouble.Fault{Method: "POST", Path: pathOf(openstackdouble.CallImportImage), Import: openstackdouble.ImportFails})
	opts := f.options(nil)
	opts.NodeImage.MaxTransferAttempts = 3
	f.startManager(opts)
	f.nodeImage("doomed", nil)

	nir := f.waitCondition(g, "doomed", csv1alpha1.StalledCondition, metav1.ConditionTrue, infrav1.TransferFailedReason)
	g.Expect(nir.Status.TransferAttempts).To(Equal(int32(3)))
	g.Expect(f.cloud.Calls(openstackdouble.CallImportImage)).To(Equal(3))
	msg := nir.Status.Conditions[0].Message
	for _, c := range nir.Status.Conditions {
		if c.Type == csv1alpha1.ReadyCondition {
			msg = c.Message
		}
	}
	g.Expect(msg).To(ContainSubstring("os_glance_failed_import"))
	g.Expect(msg).To(ContainSubstring("3 attempts"))
}

// TestStuckImportReplaced stays serial: under the load of parallel tests the good import could
// outlast the 500ms import timeout too and be replaced a second time.
func TestStuckImportReplaced(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	f.cloud.InjectFault(openstackdouble.Fault{Method: "POST", Path: pathOf(openstackdouble.CallImportImage), Times: 1, Import: openstackdouble.ImportHangs})
	opts := f.options(nil)
	opts.NodeImage.ImportTimeout = 500 * time.Millisecond
	f.startManager(opts)
	f.nodeImage("stuck", nil)

	nir := f.waitReady(g, "stuck")
	// The hanging image was deleted and a fresh one imported.
	g.Expect(f.cloud.Calls(openstackdouble.CallCreateImage)).To(Equal(2))
	g.Expect(f.cloud.Images()).To(HaveLen(1))
	g.Expect(f.cloud.Images()[0].ID).To(Equal(nir.Status.ImageID))
}

func TestCrashBetweenCreateAndUpload(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newFixture(t, openstackdouble.WithWebDownload(false))
	// The upload hangs until the manager is stopped, like a process killed mid-upload.
	hang := f.cloud.InjectFault(openstackdouble.Fault{Method: "PUT", Path: pathOf(openstackdouble.CallUploadImage), Delay: time.Hour})
	stop := f.startManager(f.options(nil))
	f.nodeImage("crash", nil)

	g.Eventually(func() bool { return hang.Hits() > 0 }).WithTimeout(30 * time.Second).Should(BeTrue())
	id := f.get("crash").Status.ImageID
	g.Expect(id).NotTo(BeEmpty(), "the image ID is recorded before the upload starts")
	stop()
	hang.Remove()

	f.startManager(f.options(nil))
	nir := f.waitReady(g, "crash")
	g.Expect(nir.Status.ImageID).To(Equal(id))
	g.Expect(f.cloud.Images()).To(HaveLen(1))
	g.Expect(f.cloud.Calls(openstackdouble.CallCreateImage)).To(Equal(1))
}

func TestExistingImageFound(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		hidden     bool
		visibility string
	}{
		{name: "hidden", hidden: true, visibility: "private"},
		{name: "community", visibility: "community"},
		{name: "hidden-community", hidden: true, visibility: "community"},
		{name: "plain", visibility: "private"},
	}
	f := newFixture(t)
	f.startManager(f.options(nil))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			existing := f.cloud.AddImage(openstackdouble.Image{
				Name: "ubuntu-capi-image-" + tt.name, Status: openstackdouble.StatusActive, Visibility: tt.visibility, Hidden: tt.hidden,
				Owner: f.cloud.ProjectID(openstackdouble.DefaultProject), DiskFormat: "qcow2", ContainerFormat: "bare",
			})
			creates := f.cloud.Calls(openstackdouble.CallCreateImage)
			f.nodeImage(tt.name, func(n *infrav1.OpenStackNodeImageRelease) {
				n.Spec.Image.CreateOpts.Visibility = ptr.To(tt.visibility)
				n.Spec.Image.CreateOpts.Hidden = ptr.To(tt.hidden)
			})
			nir := f.waitReady(g, tt.name)
			g.Expect(nir.Status.ImageID).To(Equal(existing.ID))
			g.Expect(nir.Status.CreatedImage).To(BeFalse())
			g.Expect(f.cloud.Calls(openstackdouble.CallCreateImage)).To(Equal(creates))
		})
	}
}

func TestTokenExpiryMidRun(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newFixture(t)
	f.startManager(f.options(nil))
	f.nodeImage("first", nil)
	f.waitReady(g, "first")
	g.Expect(f.cloud.Calls(openstackdouble.CallAuthTokens)).To(Equal(1))

	f.cloud.ExpireTokens()
	f.nodeImage("second", withHash(f))
	f.waitReady(g, "second")
	// One re-authentication, on the cached client; no login per image or per reconcile.
	g.Expect(f.cloud.Calls(openstackdouble.CallAuthTokens)).To(Equal(2))
	g.Expect(f.cloud.Images()).To(HaveLen(2))
}

func TestRateLimitsHonoured(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newFixture(t)
	limited := f.cloud.InjectFault(openstackdouble.Fault{Method: "GET", Path: pathOf(openstackdouble.CallListImages), Status: 429, RetryAfter: time.Second, Times: 2})
	unavailable := f.cloud.InjectFault(openstackdouble.Fault{Method: "POST", Path: pathOf(openstackdouble.CallCreateImage), Status: 503, RetryAfter: time.Second, Times: 1})
	f.startManager(f.options(nil))
	f.nodeImage("limited", nil)

	nir := f.waitReady(g, "limited")
	g.Expect(limited.Hits()).To(Equal(2))
	g.Expect(unavailable.Hits()).To(Equal(1))
	g.Expect(f.cloud.Images()).To(HaveLen(1))
	g.Expect(f.cloud.Images()[0].ID).To(Equal(nir.Status.ImageID))
}

func TestWrongCredentials(t *testing.T) {
	t.Parallel()
	const password = "not-the-password-42"
	g := NewWithT(t)
	f := newFixture(t)
	f.addSecret("wrong", openstackdouble.CloudsYAMLOptions{Password: password})
	f.startManager(f.options(nil))
	f.nodeImage("wrong", func(n *infrav1.OpenStackNodeImageRelease) { n.Spec.IdentityRef.Name = "wrong" })
	f.nodeImage("absent", func(n *infrav1.OpenStackNodeImageRelease) { n.Spec.IdentityRef.Name = "absent" })

	nir := f.waitCondition(g, "wrong", csv1alpha1.StalledCondition, metav1.ConditionTrue, infrav1.InvalidCredentialsReason)
	for _, c := range nir.Status.Conditions {
		g.Expect(c.Message).NotTo(ContainSubstring(password))
	}
	msg := stalledMessage(nir)
	g.Expect(msg).To(ContainSubstring(f.ns + "/wrong"))
	g.Expect(msg).To(ContainSubstring("401"))

	nir = f.waitCondition(g, "absent", csv1alpha1.StalledCondition, metav1.ConditionTrue, infrav1.InvalidCredentialsReason)
	g.Expect(stalledMessage(nir)).To(ContainSubstring(f.ns + "/absent"))
	g.Expect(f.cloud.Images()).To(BeEmpty())
}

func stalledMessage(nir *infrav1.OpenStackNodeImageRelease) string {
	for _, c := range nir.Status.Conditions {
		if c.Type == csv1alpha1.StalledCondition {
			return c.Message
		}
	}
	return ""
}

func deleteAndWaitGone(g Gomega, f *fixture, name string) {
	g.Expect(env.Client.Delete(context.Background(), f.get(name))).To(Succeed())
	g.Eventually(func() bool {
		err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, &infrav1.OpenStackNodeImageRelease{})
		return apierrors.IsNotFound(err)
	}).WithTimeout(30 * time.Second).Should(BeTrue())
}

func TestDeletionPolicy(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newFixture(t)
	f.startManager(f.options(nil))

	// Created by the operator, policy unset: deleted.
	f.nodeImage("created", nil)
	created := f.waitReady(g, "created").Status.ImageID
	// Created, policy keep: kept.
	f.nodeImage("kept", func(n *infrav1.OpenStackNodeImageRelease) { n.Spec.DeletionPolicy = infrav1.DeletionPolicyKeep })
	kept := f.waitReady(g, "kept").Status.ImageID
	// Found, policy unset: kept.
	found := f.cloud.AddImage(openstackdouble.Image{Name: "ubuntu-capi-image-found", Status: openstackdouble.StatusActive,
		Owner: f.cloud.ProjectID(openstackdouble.DefaultProject), DiskFormat: "qcow2", ContainerFormat: "bare"})
	f.nodeImage("found", nil)
	f.waitReady(g, "found")

	deleteAndWaitGone(g, f, "created")
	deleteAndWaitGone(g, f, "kept")
	deleteAndWaitGone(g, f, "found")
	_, ok := f.cloud.Image(created)
	g.Expect(ok).To(BeFalse(), "the image the operator created is deleted")
	_, ok = f.cloud.Image(kept)
	g.Expect(ok).To(BeTrue(), "deletionPolicy keep keeps the image")
	_, ok = f.cloud.Image(found.ID)
	g.Expect(ok).To(BeTrue(), "an image the operator did not create is kept")

	// Protected: Glance refuses (403); the object says so and stays until a user decides.
	f.nodeImage("protected", func(n *infrav1.OpenStackNodeImageRelease) {
		n.Spec.Image.CreateOpts.Protected = ptr.To(true)
		n.Spec.DeletionPolicy = infrav1.DeletionPolicyDelete
	})
	protected := f.waitReady(g, "protected").Status.ImageID
	g.Expect(env.Client.Delete(context.Background(), f.get("protected"))).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(stalledMessage(f.get("protected"))).To(ContainSubstring("protected"))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	nir := f.get("protected")
	base := client.MergeFrom(nir.DeepCopy())
	nir.Spec.DeletionPolicy = infrav1.DeletionPolicyKeep
	g.Expect(env.Client.Patch(context.Background(), nir, base)).To(Succeed())
	g.Eventually(func() bool {
		err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: "protected"}, &infrav1.OpenStackNodeImageRelease{})
		return apierrors.IsNotFound(err)
	}).WithTimeout(30 * time.Second).Should(BeTrue())
	_, ok = f.cloud.Image(protected)
	g.Expect(ok).To(BeTrue())
}

func TestImageInUseNotDeleted(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newFixture(t)
	f.startManager(f.options(nil))
	f.nodeImage("used", nil)
	id := f.waitReady(g, "used").Status.ImageID

	tmpl := &unstructured.Unstructured{}
	tmpl.SetAPIVersion("infrastructure.cluster.x-k8s.io/v1beta1")
	tmpl.SetKind("OpenStackMachineTemplate")
	tmpl.SetNamespace(f.ns)
	tmpl.SetName("workers")
	// Shaped like the workers' template of a published SCS stack.
	g.Expect(unstructured.SetNestedField(tmpl.Object, "SCS-2V-4", "spec", "template", "spec", "flavor")).To(Succeed())
	g.Expect(unstructured.SetNestedField(tmpl.Object, int64(50), "spec", "template", "spec", "rootVolume", "sizeGiB")).To(Succeed())
	g.Expect(unstructured.SetNestedField(tmpl.Object, "ubuntu-capi-image-used", "spec", "template", "spec", "image", "filter", "name")).To(Succeed())
	g.Expect(env.Client.Create(context.Background(), tmpl)).To(Succeed())

	g.Expect(env.Client.Delete(context.Background(), f.get("used"))).To(Succeed())
	nir := f.waitCondition(g, "used", csv1alpha1.ReadyCondition, metav1.ConditionFalse, infrav1.ImageInUseReason)
	g.Expect(nir.Status.Conditions).To(ContainElement(HaveField("Message", ContainSubstring("OpenStackMachineTemplate "+f.ns+"/workers"))))
	g.Consistently(func() bool { _, ok := f.cloud.Image(id); return ok }).WithTimeout(time.Second).Should(BeTrue())

	g.Expect(env.Client.Delete(context.Background(), tmpl)).To(Succeed())
	g.Eventually(func() bool { _, ok := f.cloud.Image(id); return ok }).WithTimeout(30 * time.Second).Should(BeFalse())
}

func TestConvergedCostsNoCalls(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newFixture(t)
	f.startManager(f.options(nil))
	f.nodeImage("quiet", nil)
	f.waitReady(g, "quiet")

	calls := f.cloud.TotalCalls()
	// Touch the object: a reconcile runs but costs no OpenStack call.
	nir := f.get("quiet")
	base := client.MergeFrom(nir.DeepCopy())
	nir.Annotations = map[string]string{"touched": "yes"}
	g.Expect(env.Client.Patch(context.Background(), nir, base)).To(Succeed())
	g.Consistently(f.cloud.TotalCalls).WithTimeout(2 * time.Second).Should(Equal(calls))
}
