package openstack

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/cluster-api/util/conditions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/nodeimage"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

// The tests of this file stay serial although each has its own fixture: their deadlines (300ms
// requests and transfers, 100ms retries) are short enough that the CPU taken by parallel tests
// would turn an ordinary request into a timeout and the message under test into another one.

// quickCloud are the fixture's options with small request timeouts and outage retries, so that
// tests of a misbehaving cloud wait for conditions, not for defaults.
func (f *fixture) quickCloud(releases ReleaseFiles) Options {
	opts := f.options(releases)
	opts.RequestTimeout = 300 * time.Millisecond
	opts.OutageRetryInterval = 100 * time.Millisecond
	opts.NodeImage.TransferProgressTimeout = 300 * time.Millisecond
	return opts
}

// waitReconciling waits until the object is Reconciling with reason and returns its message.
// observedGeneration is not checked: an object waiting for the cloud has not converged.
func (f *fixture) waitReconciling(g Gomega, name, reason string) string {
	var msg string
	g.Eventually(func(g Gomega) {
		nir := f.get(name)
		c := conditions.Get(nir, csv1alpha1.ReconcilingCondition)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), "Reconciling: %s", c.Message)
		g.Expect(c.Reason).To(Equal(reason), "Reconciling: %s", c.Message)
		g.Expect(conditions.IsTrue(nir, csv1alpha1.StalledCondition)).To(BeFalse())
		msg = c.Message
	}).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
	return msg
}

// TestHangingGlanceCall: a Glance call that never answers ends after the request timeout; the
// only worker is free again, the object says why it waits, and it becomes ready once Glance
// answers.
func TestHangingGlanceCall(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	hang := f.cloud.InjectFault(openstackdouble.Fault{Method: "GET", Path: pathOf(openstackdouble.CallListImages), Hang: true})
	opts := f.quickCloud(nil)
	opts.NodeImageWorkers = 1
	f.startManager(opts)
	f.nodeImage("hang", nil)

	msg := f.waitReconciling(g, "hang", infrav1.CloudUnavailableReason)
	g.Expect(msg).To(ContainSubstring("Glance did not answer within 300ms"))
	g.Expect(msg).To(MatchRegexp(`retrying at \d\d:\d\d:\d\d UTC \(in 100ms\)`))
	// More than one hanging call: each one was given up and the worker went on.
	g.Eventually(hang.Hits).WithTimeout(30 * time.Second).Should(BeNumerically(">=", 2))

	hang.Remove()
	f.waitReady(g, "hang")
	g.Expect(f.cloud.Images()).To(HaveLen(1))
}

// TestOutageShowsRetry: while Glance or Keystone is unavailable (429, 503, resets) the object is
// Reconciling with what is unavailable and when it retries (the cloud's Retry-After when it
// gives one); it is never marked as a credentials problem; it becomes ready when the outage ends.
func TestOutageShowsRetry(t *testing.T) {
	tests := []struct {
		name  string
		fault openstackdouble.Fault
		want  []string
	}{
		{name: "Glance 503 with Retry-After", fault: openstackdouble.Fault{Method: "GET", Path: pathOf(openstackdouble.CallListImages), Status: 503, RetryAfter: 2 * time.Second},
			want: []string{"Glance unavailable (HTTP 503)", "(in 2s)"}},
		{name: "Glance 429 with Retry-After", fault: openstackdouble.Fault{Method: "POST", Path: pathOf(openstackdouble.CallCreateImage), Status: 429, RetryAfter: time.Second},
			want: []string{"Glance rate limit reached (HTTP 429)", "(in 1s)"}},
		{name: "Glance resets", fault: openstackdouble.Fault{Method: "POST", Path: pathOf(openstackdouble.CallCreateImage), ResetConnection: true},
			want: []string{"Glance", "(in 100ms)"}},
		{name: "Keystone 503", fault: openstackdouble.Fault{Method: "POST", Path: pathOf(openstackdouble.CallAuthTokens), Status: 503, RetryAfter: time.Second},
			want: []string{"Keystone at ", "is unavailable (HTTP 503)", "(in 1s)"}},
		{name: "Keystone hangs", fault: openstackdouble.Fault{Method: "POST", Path: pathOf(openstackdouble.CallAuthTokens), Hang: true},
			want: []string{"cannot reach Keystone", "did not answer within 300ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			f := newFixture(t)
			fault := f.cloud.InjectFault(tt.fault)
			f.startManager(f.quickCloud(nil))
			f.nodeImage("outage", nil)

			msg := f.waitReconciling(g, "outage", infrav1.CloudUnavailableReason)
			for _, w := range tt.want {
				g.Expect(msg).To(ContainSubstring(w))
			}
			g.Expect(msg).To(MatchRegexp(`retrying at \d\d:\d\d:\d\d UTC`))
			g.Expect(conditions.GetReason(f.get("outage"), csv1alpha1.ReadyCondition)).NotTo(Equal(infrav1.InvalidCredentialsReason))

			fault.Remove()
			f.waitReady(g, "outage")
			g.Expect(f.cloud.Images()).To(HaveLen(1))
		})
	}
}

// TestOutageSummarisedByRelease: the OpenStackClusterStackRelease of an image waiting for an
// unavailable Glance says so, with the retry time, instead of only "waiting".
func TestOutageSummarisedByRelease(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	fault := f.cloud.InjectFault(openstackdouble.Fault{Method: "GET", Path: pathOf(openstackdouble.CallListImages), Status: 503, RetryAfter: time.Second})
	f.startManager(f.quickCloud(dirReleases{dir: buildReleases(t, []int{1})}))
	createRelease(t, f.ns, "openstack-scs-1-32-v1", f.secret)

	g.Eventually(func(g Gomega) {
		obj := &infrav1.OpenStackClusterStackRelease{}
		g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: "openstack-scs-1-32-v1"}, obj)).To(Succeed())
		c := conditions.Get(obj, csv1alpha1.ReconcilingCondition)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Reason).To(Equal(infrav1.CloudUnavailableReason), c.Message)
		g.Expect(c.Message).To(ContainSubstring("Glance unavailable (HTTP 503)"))
		g.Expect(c.Message).To(ContainSubstring("retrying at"))
	}).WithTimeout(30 * time.Second).Should(Succeed())

	fault.Remove()
	waitReleaseReady(g, f.ns, "openstack-scs-1-32-v1")
}

// TestKeystoneRefusesLogin: a 401 on login is a credentials problem (Stalled), unlike a 503.
func TestKeystoneRefusesLogin(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	f.cloud.InjectFault(openstackdouble.Fault{Method: "POST", Path: pathOf(openstackdouble.CallAuthTokens), Status: 401})
	f.startManager(f.quickCloud(nil))
	f.nodeImage("refused", nil)

	nir := f.waitCondition(g, "refused", csv1alpha1.StalledCondition, metav1.ConditionTrue, infrav1.InvalidCredentialsReason)
	g.Expect(stalledMessage(nir)).To(ContainSubstring("HTTP 401"))
	g.Expect(f.cloud.Images()).To(BeEmpty())
}

// TestQuotaRefusal: Glance takes part of the upload, refuses it for the quota (413) and leaves the
// image queued: the object is Stalled with the quota reason and a message saying what to change,
// and the image the operator created is deleted.
func TestQuotaRefusal(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	fault := f.cloud.InjectFault(openstackdouble.Fault{Method: "PUT", Path: pathOf(openstackdouble.CallUploadImage), AfterBytes: 64 << 10, Status: http.StatusRequestEntityTooLarge})
	f.startManager(f.quickCloud(nil))
	f.nodeImage("quota", withHash(f))

	nir := f.waitCondition(g, "quota", csv1alpha1.StalledCondition, metav1.ConditionTrue, infrav1.QuotaExceededReason)
	msg := stalledMessage(nir)
	g.Expect(msg).To(ContainSubstring("HTTP 413"))
	g.Expect(msg).To(ContainSubstring("raise the quota"))
	g.Expect(msg).To(ContainSubstring("was deleted"))
	g.Expect(fault.Hits()).To(Equal(1))
	g.Expect(f.cloud.Calls(openstackdouble.CallCreateImage)).To(Equal(1))
	g.Expect(f.cloud.Images()).To(BeEmpty(), "the queued image the operator created is deleted")
	g.Expect(nir.Status.ImageID).To(BeEmpty())
}

// TestStalledDownload: a download that stops half way fails after the progress deadline; with
// one attempt allowed the object is Stalled and its half-written image deleted.
func TestStalledDownload(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	f.stall.Store(true)
	opts := f.quickCloud(nil)
	opts.NodeImage.MaxTransferAttempts = 1
	f.startManager(opts)
	f.nodeImage("stalled", withHash(f))

	nir := f.waitCondition(g, "stalled", csv1alpha1.StalledCondition, metav1.ConditionTrue, infrav1.TransferFailedReason)
	g.Expect(stalledMessage(nir)).To(ContainSubstring("stalled: no data for 300ms"))
	g.Expect(f.cloud.Images()).To(BeEmpty())
}

// TestStalledUpload: Glance stops taking data mid-transfer and leaves the image saving. The
// upload fails after the progress deadline, the stuck image is bounded by SavingTimeout and
// replaced, and the retry makes the image ready.
func TestStalledUpload(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	stuck := f.cloud.InjectFault(openstackdouble.Fault{Method: "PUT", Path: pathOf(openstackdouble.CallUploadImage), AfterBytes: 64 << 10, Hang: true, Times: 1})
	opts := f.quickCloud(nil)
	opts.NodeImage.SavingTimeout = 300 * time.Millisecond
	f.startManager(opts)
	f.nodeImage("glance-stall", withHash(f))

	nir := f.waitReady(g, "glance-stall")
	g.Expect(stuck.Hits()).To(Equal(1))
	g.Expect(f.cloud.Calls(openstackdouble.CallCreateImage)).To(Equal(2), "the stuck image was replaced")
	g.Expect(f.cloud.Images()).To(HaveLen(1))
	g.Expect(f.cloud.Images()[0].ID).To(Equal(nir.Status.ImageID))
}

// TestStuckSavingImageReplaced: an image of this object left saving (by a run that crashed
// mid-upload) is waited on for SavingTimeout only, then deleted and replaced.
func TestStuckSavingImageReplaced(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	f.nodeImage("saving", nil)
	uid := f.get("saving").UID
	stuck := f.cloud.AddImage(openstackdouble.Image{Name: "ubuntu-capi-image-saving", Status: openstackdouble.StatusSaving, DiskFormat: "qcow2", ContainerFormat: "bare",
		Owner: f.cloud.ProjectID(openstackdouble.DefaultProject), Properties: map[string]string{nodeimage.PropertyOwnerUID: string(uid)}})
	opts := f.quickCloud(nil)
	opts.NodeImage.SavingTimeout = 300 * time.Millisecond
	f.startManager(opts)

	nir := f.waitReady(g, "saving")
	g.Expect(nir.Status.ImageID).NotTo(Equal(stuck.ID))
	_, ok := f.cloud.Image(stuck.ID)
	g.Expect(ok).To(BeFalse(), "the stuck image of this object is deleted")
	g.Expect(f.cloud.Images()).To(HaveLen(1))
}

var errCrash = errors.New("killed before the status write")

// TestCrashAfterCreate: the image is created in Glance, then the operator dies before the status
// says so. A fresh controller finds the image by name, knows from its ownership property that
// this object created it, and deletes it with the object under the default policy. An image of
// the same name with another owner (or none) stays foreign and is kept.
func TestCrashAfterCreate(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	f.nodeImage("crashed", nil)
	f.nodeImage("foreign", nil)
	foreign := f.cloud.AddImage(openstackdouble.Image{Name: "ubuntu-capi-image-foreign", Status: openstackdouble.StatusActive, DiskFormat: "qcow2", ContainerFormat: "bare",
		Owner: f.cloud.ProjectID(openstackdouble.DefaultProject), Properties: map[string]string{nodeimage.PropertyOwnerUID: "uid-of-another-object"}})

	// The run that crashed: the service creates the image, the status write fails.
	images, err := scope.NewFactory(env.Client).ImageClient(context.Background(), f.ns, f.get("crashed").Spec.IdentityRef)
	g.Expect(err).NotTo(HaveOccurred())
	niOpts := f.options(nil).NodeImage
	niOpts.HTTPClient = f.redirect
	svc := nodeimage.NewService(images, niOpts)
	_, err = svc.Ensure(context.Background(), f.get("crashed"), func(context.Context) error { return errCrash })
	g.Expect(err).To(MatchError(errCrash))
	g.Expect(f.cloud.Images()).To(HaveLen(2))
	g.Expect(f.get("crashed").Status.ImageID).To(BeEmpty(), "the status was lost")

	f.startManager(f.quickCloud(nil))
	crashed := f.waitReady(g, "crashed")
	g.Expect(crashed.Status.CreatedImage).To(BeTrue(), "recognised as created by this object")
	g.Expect(f.cloud.Calls(openstackdouble.CallCreateImage)).To(Equal(1))
	found := f.waitReady(g, "foreign")
	g.Expect(found.Status.ImageID).To(Equal(foreign.ID))
	g.Expect(found.Status.CreatedImage).To(BeFalse())

	deleteAndWaitGone(g, f, "crashed")
	deleteAndWaitGone(g, f, "foreign")
	_, ok := f.cloud.Image(crashed.Status.ImageID)
	g.Expect(ok).To(BeFalse(), "the image this object created is deleted under the default policy")
	_, ok = f.cloud.Image(foreign.ID)
	g.Expect(ok).To(BeTrue(), "a foreign image is kept")
}
