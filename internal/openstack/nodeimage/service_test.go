package nodeimage

import (
	"context"
	"crypto/rand"
	"errors"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

// world is a Glance double, a file server and a service logged in to the double.
type world struct {
	cloud *openstackdouble.Server
	files *httptest.Server
	data  []byte
	// stall makes the file server send half the file and then nothing.
	stall atomic.Bool
	svc   *Service
	now   time.Time
}

type secretReader struct{ s *corev1.Secret }

func (r secretReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	if key.Name != r.s.Name {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, key.Name)
	}
	r.s.DeepCopyInto(obj.(*corev1.Secret))
	return nil
}

func (secretReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("not used")
}

func newWorld(t *testing.T, opts Options, cloudOpts ...openstackdouble.Option) *world {
	t.Helper()
	w := &world{data: make([]byte, 256<<10), now: time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)}
	_, _ = rand.Read(w.data)
	w.files = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if w.stall.Load() {
			_, _ = rw.Write(w.data[:len(w.data)/2])
			rw.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		_, _ = rw.Write(w.data)
	}))
	t.Cleanup(w.files.Close)
	var err error
	w.cloud, err = openstackdouble.New(append([]openstackdouble.Option{openstackdouble.WithWebDownload(false)}, cloudOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.cloud.Close)
	content, cloud := w.cloud.CloudsYAML(openstackdouble.CloudsYAMLOptions{})
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "openstack", UID: "secret-uid", ResourceVersion: "1"},
		Data: map[string][]byte{scope.CloudsYAMLKey: []byte(content), scope.CloudNameKey: []byte(cloud)}}
	images, err := scope.NewFactory(secretReader{sec}, scope.WithRequestTimeout(time.Second)).ImageClient(t.Context(), "ns", nil)
	if err != nil {
		t.Fatal(err)
	}
	opts.Now = func() time.Time { return w.now }
	opts.RetryBackoff = time.Millisecond
	if opts.Egress == nil {
		// The file server listens on loopback, which the default policy refuses.
		opts.Egress = egress.AllowLoopbackForTests()
	}
	w.svc = NewService(images, opts)
	return w
}

func (w *world) object(uid string) *infrav1.OpenStackNodeImageRelease {
	return &infrav1.OpenStackNodeImageRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "img", UID: types.UID("uid-" + uid)},
		Spec: infrav1.OpenStackNodeImageReleaseSpec{Image: &infrav1.NodeImage{
			URL: w.files.URL + "/ubuntu.qcow2",
			CreateOpts: &infrav1.ImageCreateOpts{Name: "ubuntu", DiskFormat: "qcow2", ContainerFormat: "bare",
				Visibility: ptr.To("private"), Properties: map[string]string{PropertyOwnerUID: "a-release-cannot-claim-this"}},
		}},
	}
}

func noPersist(context.Context) error { return nil }

var errCrash = errors.New("the operator was killed before the status write")

// TestOwnershipSurvivesLostStatus creates an image and loses the status that recorded it, as a
// crash between the Glance create and the status write does: the next run finds the image by
// name and knows from its property that this object created it. An image of the same name
// without the property, or with another object's UID, is adopted as foreign.
func TestOwnershipSurvivesLostStatus(t *testing.T) {
	w := newWorld(t, Options{})
	obj := w.object("a")
	if _, err := w.svc.Ensure(t.Context(), obj, func(context.Context) error { return errCrash }); !errors.Is(err, errCrash) {
		t.Fatalf("Ensure with a failing status write: %v", err)
	}
	imgs := w.cloud.Images()
	if len(imgs) != 1 {
		t.Fatalf("images = %d, want 1", len(imgs))
	}
	if got := imgs[0].Properties[PropertyOwnerUID]; got != string(obj.UID) {
		t.Fatalf("owner property = %q, want the object's UID %q (the spec must not override it)", got, obj.UID)
	}
	if got := imgs[0].Properties[PropertyOwner]; got != "ns/img" {
		t.Errorf("owner name property = %q", got)
	}

	restarted := w.object("a") // same object, status lost
	out, err := w.svc.Ensure(t.Context(), restarted, noPersist)
	if err != nil || !out.Ready {
		t.Fatalf("Ensure after the restart: %+v, %v", out, err)
	}
	if restarted.Status.ImageID != imgs[0].ID || !restarted.Status.CreatedImage {
		t.Fatalf("status after the restart = %+v, want image %s created by this object", restarted.Status, imgs[0].ID)
	}
	if n := w.cloud.Calls(openstackdouble.CallCreateImage); n != 1 {
		t.Errorf("creates = %d, want 1", n)
	}

	for name, props := range map[string]map[string]string{
		"no owner property": nil,
		"another owner":     {PropertyOwnerUID: "uid-someone-else"},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, Options{})
			found := w.cloud.AddImage(openstackdouble.Image{Name: "ubuntu", Status: openstackdouble.StatusActive, DiskFormat: "qcow2", ContainerFormat: "bare",
				Owner: w.cloud.ProjectID(openstackdouble.DefaultProject), Properties: props})
			obj := w.object("b")
			out, err := w.svc.Ensure(t.Context(), obj, noPersist)
			if err != nil || !out.Ready {
				t.Fatalf("Ensure: %+v, %v", out, err)
			}
			if obj.Status.ImageID != found.ID || obj.Status.CreatedImage {
				t.Fatalf("status = %+v, want foreign image %s", obj.Status, found.ID)
			}
		})
	}
}

// TestUploadStallFailsAfterProgressDeadline stalls the download and the upload half way: each
// ends with a *TransferStalledError naming the side that stopped, once no byte moved for the
// progress deadline, and the attempt counts as failed.
func TestUploadStallFailsAfterProgressDeadline(t *testing.T) {
	tests := []struct {
		name  string
		setup func(w *world)
		phase int32
	}{
		{name: "download stalls", setup: func(w *world) { w.stall.Store(true) }, phase: PhaseDownload},
		{name: "Glance stops taking data", setup: func(w *world) {
			w.cloud.InjectFault(openstackdouble.Fault{Method: "PUT", Path: openstackdouble.CallUploadImage[len("PUT "):], AfterBytes: 64 << 10, Hang: true})
		}, phase: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, Options{TransferProgressTimeout: 100 * time.Millisecond, MaxTransferAttempts: 2})
			tt.setup(w)
			obj := w.object("s")
			img, err := w.svc.images.CreateImage(t.Context(), createOpts(obj, w.now))
			if err != nil {
				t.Fatal(err)
			}
			err = w.svc.upload(t.Context(), obj, img.ID)
			var stalled *TransferStalledError
			if !errors.As(err, &stalled) {
				t.Fatalf("upload: got %v, want a *TransferStalledError", err)
			}
			// The double's buffers may take the whole file before Glance "stops": then the
			// stall shows after the last byte. Both are Glance's side.
			if tt.phase >= 0 && stalled.Phase != tt.phase || tt.phase < 0 && stalled.Phase == PhaseDownload {
				t.Errorf("phase = %d (%v), want %d", stalled.Phase, stalled, tt.phase)
			}
			if stalled.After != 100*time.Millisecond {
				t.Errorf("After = %s", stalled.After)
			}

			// Through Ensure the stall is a failed attempt that is retried (another name: the
			// stuck image of the first upload would be adopted).
			obj = w.object("t")
			obj.Spec.Image.CreateOpts.Name = "ubuntu-2"
			out, err := w.svc.Ensure(t.Context(), obj, noPersist)
			if err != nil || out.Reason != infrav1.RetryingReason || obj.Status.TransferAttempts != 1 {
				t.Fatalf("Ensure: %+v, %v, attempts %d; want a retry after attempt 1", out, err, obj.Status.TransferAttempts)
			}
		})
	}
}

// TestSavingBounded: an image left saving (a stuck Glance, or an upload of a run that crashed)
// is waited on for SavingTimeout from when the operator first saw it, then replaced when it is
// ours, or reported when it is not.
func TestSavingBounded(t *testing.T) {
	w := newWorld(t, Options{SavingTimeout: time.Minute})
	obj := w.object("c")
	stuck := w.cloud.AddImage(openstackdouble.Image{Name: "ubuntu", Status: openstackdouble.StatusSaving, DiskFormat: "qcow2", ContainerFormat: "bare",
		Owner: w.cloud.ProjectID(openstackdouble.DefaultProject), Properties: map[string]string{PropertyOwnerUID: string(obj.UID)}})

	out, err := w.svc.Ensure(t.Context(), obj, noPersist)
	if err != nil || out.Reason != infrav1.UploadingReason || obj.Status.TransferStartedAt == nil {
		t.Fatalf("first look: %+v, %v, %+v", out, err, obj.Status)
	}
	w.now = w.now.Add(30 * time.Second)
	if out, err = w.svc.Ensure(t.Context(), obj, noPersist); err != nil || out.Reason != infrav1.UploadingReason {
		t.Fatalf("within the bound: %+v, %v", out, err)
	}
	w.now = w.now.Add(31 * time.Second)
	out, err = w.svc.Ensure(t.Context(), obj, noPersist)
	if err != nil || out.Reason != infrav1.RetryingReason {
		t.Fatalf("past the bound: %+v, %v; want a retry", out, err)
	}
	if _, ok := w.cloud.Image(stuck.ID); ok {
		t.Fatalf("the stuck image of ours was not deleted")
	}
	w.now = w.now.Add(time.Second)
	if out, err = w.svc.Ensure(t.Context(), obj, noPersist); err != nil || !out.Ready {
		t.Fatalf("retry: %+v, %v", out, err)
	}

	// Someone else's image stuck in saving is left alone and reported.
	w2 := newWorld(t, Options{SavingTimeout: time.Minute})
	foreign := w2.cloud.AddImage(openstackdouble.Image{Name: "ubuntu", Status: openstackdouble.StatusSaving, DiskFormat: "qcow2", ContainerFormat: "bare",
		Owner: w2.cloud.ProjectID(openstackdouble.DefaultProject)})
	obj = w2.object("d")
	if _, err := w2.svc.Ensure(t.Context(), obj, noPersist); err != nil {
		t.Fatal(err)
	}
	w2.now = w2.now.Add(2 * time.Minute)
	_, err = w2.svc.Ensure(t.Context(), obj, noPersist)
	var terminal *TerminalError
	if !errors.As(err, &terminal) || terminal.Reason != infrav1.ImageUnusableReason {
		t.Fatalf("foreign stuck image: got %v, want ImageUnusable", err)
	}
	if _, ok := w2.cloud.Image(foreign.ID); !ok {
		t.Fatalf("a foreign image was deleted")
	}
}

// TestQuotaRefusalDeletesCreatedImage: Glance takes part of the upload, then refuses it for the
// quota (413) and leaves the image queued. The error is the quota class, the attempt does not
// count, and the queued image the operator created is deleted.
func TestQuotaRefusalDeletesCreatedImage(t *testing.T) {
	w := newWorld(t, Options{})
	fault := w.cloud.InjectFault(openstackdouble.Fault{Method: "PUT", Path: openstackdouble.CallUploadImage[len("PUT "):], AfterBytes: 64 << 10, Status: http.StatusRequestEntityTooLarge})
	obj := w.object("q")
	_, err := w.svc.Ensure(t.Context(), obj, noPersist)
	var terminal *TerminalError
	if !errors.As(err, &terminal) || terminal.Reason != infrav1.QuotaExceededReason {
		t.Fatalf("got %v, want a QuotaExceeded TerminalError", err)
	}
	if clients.Classify(terminal.Err).Kind != clients.KindQuota {
		t.Errorf("the cause is not classified as quota: %v", terminal.Err)
	}
	if fault.Hits() != 1 {
		t.Errorf("fault hits = %d", fault.Hits())
	}
	if imgs := w.cloud.Images(); len(imgs) != 0 {
		t.Fatalf("images left in Glance: %+v", imgs)
	}
	if obj.Status.ImageID != "" || obj.Status.CreatedImage || obj.Status.TransferAttempts != 0 {
		t.Errorf("status = %+v, want no image and no used attempt", obj.Status)
	}
}
