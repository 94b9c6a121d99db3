package openstack

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/keymutex"
	"sigs.k8s.io/cluster-api/util/conditions"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/nodeimage"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/reconciler"
)

// inUseRecheckInterval: machines are not watched (their CRDs may be absent), so a deletion held
// by machines looks again this often.
const inUseRecheckInterval = time.Minute

// Machine kinds of the OpenStack Cluster API provider that may use an image.
var (
	machineTemplateListGVK = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "OpenStackMachineTemplateList"}
	machineListGVK         = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "OpenStackMachineList"}
)

// OpenStackNodeImageReleaseReconciler makes one node image exist in one Glance project.
type OpenStackNodeImageReleaseReconciler struct {
	Client client.Client
	// APIReader reads the objects themselves (see newKind) and the namespace of an object whose
	// credentials are gone.
	APIReader       client.Reader
	ImageClients    ImageClients
	NodeImage       nodeimage.Options
	RecheckInterval time.Duration
	// InUseRecheck overrides inUseRecheckInterval.
	InUseRecheck time.Duration
	// OutageRetry is the wait before the next try while the cloud is unavailable and gives no
	// Retry-After; zero means defaultOutageRetry.
	OutageRetry time.Duration
	Recorder    events.EventRecorder
	// Workers is how many node images are brought into Glance at once; zero means
	// defaultNodeImageWorkers.
	Workers int

	// imageLocks serialises the work on images of the same Glance name: two objects naming one
	// image (releases sharing a node image, or ClusterStacks in several namespaces of one
	// project) must not both look it up, miss it and create it twice. Images of different names
	// go in parallel.
	imageLocks keymutex.KeyMutex
	kind       *reconciler.Kind[*infrav1.OpenStackNodeImageRelease, *report]
}

// defaultNodeImageWorkers lets a release's distinct images (and several releases' images) go
// into Glance side by side, while imageLocks keeps one image name to one worker.
const defaultNodeImageWorkers = 4

// +kubebuilder:rbac:groups=infrastructure.clusterstack.x-k8s.io,resources=openstacknodeimagereleases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=infrastructure.clusterstack.x-k8s.io,resources=openstacknodeimagereleases/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=infrastructure.clusterstack.x-k8s.io,resources=openstacknodeimagereleases/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get
// +kubebuilder:rbac:groups=infrastructure.cluster.x-k8s.io,resources=openstackmachinetemplates;openstackmachines,verbs=get;list
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the controller.
func (r *OpenStackNodeImageReleaseReconciler) SetupWithManager(mgr ctrl.Manager) error {
	workers := r.Workers
	if workers <= 0 {
		workers = defaultNodeImageWorkers
	}
	// A hashed key mutex: names that share a bucket wait for each other, which is safe.
	r.imageLocks = keymutex.NewHashed(64)
	r.kind = r.newKind()
	return reconciler.NewController(mgr, "openstacknodeimagerelease").
		// Only changes of spec, labels, annotations or deletion start a reconcile, not the
		// controller's own status writes: those carry the retry time during an outage, and
		// reacting to them would retry at once instead of when the cloud asked.
		For(&infrav1.OpenStackNodeImageRelease{}, predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, predicate.LabelChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
}

// Reconcile runs the one reconcile skeleton (see internal/reconciler) with this kind's steps.
func (r *OpenStackNodeImageReleaseReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return r.kind.Reconcile(ctx, req)
}

// newKind describes the kind to the skeleton.
func (r *OpenStackNodeImageReleaseReconciler) newKind() *reconciler.Kind[*infrav1.OpenStackNodeImageRelease, *report] {
	return &reconciler.Kind[*infrav1.OpenStackNodeImageRelease, *report]{
		Name: "OpenStackNodeImageRelease",
		New:  func() *infrav1.OpenStackNodeImageRelease { return &infrav1.OpenStackNodeImageRelease{} },
		// The API server, not the cache: this controller writes its status in the middle of a
		// reconcile (the image ID right after creating) and a reconcile started from a cache that
		// has not seen the last write would act on an old imageID or attempt count and create or
		// import twice.
		Reader:    r.APIReader,
		Client:    r.Client,
		Finalizer: infrav1.OpenStackNodeImageReleaseFinalizer,
		Normal: func(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease) *report {
			return r.finish(r.reconcileNormal(ctx, obj))
		},
		Delete: func(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease) *report {
			rep := r.reconcileDelete(ctx, obj)
			rep.deleting = true
			return r.finish(rep)
		},
		Status: func(obj *infrav1.OpenStackNodeImageRelease, rep *report) (ctrl.Result, error) {
			res, converged, err := setOpenStackNodeImageReleaseStatus(obj, *rep)
			rep.observed = converged
			return res, err
		},
		Observed: func(rep *report) bool { return rep.observed },
		Recorder: r.Recorder,
		// A cloud outage or an unexpected cloud answer; an upload or import under way is no
		// failure.
		FailureReasons: []string{infrav1.CloudUnavailableReason, infrav1.CloudErrorReason},
		// The whole reconcile, status patch included, holds the lock of the image's Glance name:
		// another object of the same name then sees the image ID this one recorded before it
		// looks the image up, adopts or deletes it.
		Lock: func(obj *infrav1.OpenStackNodeImageRelease) func() {
			if obj.Spec.Image == nil || obj.Spec.Image.CreateOpts == nil {
				return func() {}
			}
			name := obj.Spec.Image.CreateOpts.Name
			r.imageLocks.LockKey(name)
			return func() { _ = r.imageLocks.UnlockKey(name) } // fails only for a key not locked
		},
	}
}

// finish adds to a step's report what its status depends on besides the step's findings.
func (r *OpenStackNodeImageReleaseReconciler) finish(rep report) *report {
	rep.now, rep.recheck, rep.outageRetry = r.now(), r.RecheckInterval, r.OutageRetry
	return &rep
}

func (r *OpenStackNodeImageReleaseReconciler) now() time.Time {
	if r.NodeImage.Now != nil {
		return r.NodeImage.Now()
	}
	return time.Now()
}

func (r *OpenStackNodeImageReleaseReconciler) reconcileNormal(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease) report {
	upToDate := obj.Status.ObservedGeneration == obj.Generation
	// A converged image costs no OpenStack call (and no Secret read) unless a re-check is asked.
	if upToDate && obj.Status.Ready && obj.Status.ImageID != "" && obj.Status.ImageStatus == "active" && r.RecheckInterval == 0 {
		return report{unchanged: true, converged: true}
	}
	// A terminal image failure waits for a new spec; only what can be fixed outside the spec
	// and cannot be watched (credentials, quota) is tried again.
	if upToDate && conditions.IsTrue(obj, csv1alpha1.StalledCondition) &&
		!retriedStall(conditions.GetReason(obj, csv1alpha1.StalledCondition)) {
		return report{unchanged: true, converged: true}
	}
	if !upToDate && conditions.IsTrue(obj, csv1alpha1.StalledCondition) {
		// A changed spec deserves fresh attempts.
		obj.Status.TransferAttempts, obj.Status.RetryAt, obj.Status.TransferStartedAt = 0, nil, nil
	}

	images, err := r.ImageClients.ImageClient(ctx, obj.Namespace, obj.Spec.IdentityRef)
	if err != nil {
		var credErr *scope.CredentialsError
		if !errors.As(err, &credErr) {
			err = &kubeError{err: err}
		}
		return report{err: err}
	}
	svc := nodeimage.NewService(images, r.NodeImage)

	if upToDate && obj.Status.Ready && r.RecheckInterval > 0 {
		status, err := svc.Check(ctx, obj.Status.ImageID)
		if err != nil {
			return report{err: err}
		}
		if status == "active" {
			return report{outcome: nodeimage.Outcome{Ready: true, Message: conditions.GetMessage(obj, csv1alpha1.ReadyCondition)}}
		}
	}

	hadID := obj.Status.ImageID
	persist := func(ctx context.Context) error {
		// The status written right after the create is computed like any other.
		_, _, _ = setOpenStackNodeImageReleaseStatus(obj, *r.finish(report{outcome: nodeimage.Outcome{
			Reason: infrav1.CreatingImageReason, Message: fmt.Sprintf("Created image %s; bringing its data in", obj.Status.ImageID)}}))
		if err := reconciler.Persist(ctx); err != nil {
			return &kubeError{err: err}
		}
		return nil
	}
	out, err := svc.Ensure(ctx, obj, persist)
	if obj.Status.ImageID != "" && obj.Status.ImageID != hadID && obj.Status.CreatedImage {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, "ImageCreated", "Create", "Created Glance image %s (%s)", obj.Status.ImageID, obj.Spec.Image.CreateOpts.Name)
	}
	return report{outcome: out, err: err}
}

func (r *OpenStackNodeImageReleaseReconciler) reconcileDelete(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease) report {
	log := ctrl.LoggerFrom(ctx)
	if !controllerutil.ContainsFinalizer(obj, infrav1.OpenStackNodeImageReleaseFinalizer) {
		return report{unchanged: true, converged: true}
	}
	policy := obj.Spec.DeletionPolicy
	if policy == "" {
		policy = infrav1.DeletionPolicyKeep
		if obj.Status.CreatedImage {
			policy = infrav1.DeletionPolicyDelete
		}
	}
	if policy == infrav1.DeletionPolicyKeep || obj.Status.ImageID == "" {
		log.Info("Keeping the Glance image", "imageID", obj.Status.ImageID, "deletionPolicy", policy)
		controllerutil.RemoveFinalizer(obj, infrav1.OpenStackNodeImageReleaseFinalizer)
		return report{unchanged: true, converged: true}
	}

	users, err := r.imageUsers(ctx, obj)
	if err != nil {
		return report{err: &kubeError{err: err}}
	}
	if len(users) > 0 {
		wait := inUseRecheckInterval
		if r.InUseRecheck > 0 {
			wait = r.InUseRecheck
		}
		return report{outcome: nodeimage.Outcome{Reason: infrav1.ImageInUseReason, RequeueAfter: wait,
			Message: fmt.Sprintf("Image %s is not deleted while %s use it", obj.Status.ImageID, strings.Join(users, ", "))}}
	}

	images, err := r.ImageClients.ImageClient(ctx, obj.Namespace, obj.Spec.IdentityRef)
	if err != nil {
		var credErr *scope.CredentialsError
		if !errors.As(err, &credErr) {
			return report{err: &kubeError{err: err}}
		}
		if errors.Is(err, scope.ErrSecretNotFound) && r.namespaceTerminating(ctx, obj.Namespace) {
			// The whole namespace goes, its Secret first: waiting would block the namespace
			// forever, so the image is left behind, and said so.
			r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, "ImageOrphaned", "Delete", "Left Glance image %s behind: the namespace is being deleted and its credentials are gone", obj.Status.ImageID)
			controllerutil.RemoveFinalizer(obj, infrav1.OpenStackNodeImageReleaseFinalizer)
			return report{unchanged: true, converged: true}
		}
		return report{err: err}
	}
	if err := nodeimage.NewService(images, r.NodeImage).Delete(ctx, obj); err != nil {
		return report{err: err}
	}
	log.Info("Deleted the Glance image", "imageID", obj.Status.ImageID)
	r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, "ImageDeleted", "Delete", "Deleted Glance image %s", obj.Status.ImageID)
	controllerutil.RemoveFinalizer(obj, infrav1.OpenStackNodeImageReleaseFinalizer)
	return report{unchanged: true, converged: true}
}

// imageUsers lists what still uses the image: OpenStackMachineTemplates and OpenStackMachines of
// the namespace naming it by ID or name, and other OpenStackNodeImageReleases (any namespace)
// that adopted the same Glance image. Kinds whose CRD is not installed use nothing.
func (r *OpenStackNodeImageReleaseReconciler) imageUsers(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease) ([]string, error) {
	id, name := obj.Status.ImageID, obj.Spec.Image.CreateOpts.Name
	var users []string
	for _, gvk := range []schema.GroupVersionKind{machineTemplateListGVK, machineListGVK} {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk)
		if err := r.Client.List(ctx, list, client.InNamespace(obj.Namespace)); err != nil {
			if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("listing %s: %w", gvk.Kind, err)
		}
		kind := strings.TrimSuffix(gvk.Kind, "List")
		for _, item := range list.Items {
			if usesImage(item.Object, id, name) {
				users = append(users, fmt.Sprintf("%s %s", kind, klog.KObj(&item)))
			}
		}
	}
	others := &infrav1.OpenStackNodeImageReleaseList{}
	if err := r.Client.List(ctx, others); err != nil {
		return nil, fmt.Errorf("listing OpenStackNodeImageReleases: %w", err)
	}
	for _, o := range others.Items {
		if o.UID != obj.UID && o.Status.ImageID == id && o.DeletionTimestamp.IsZero() {
			users = append(users, fmt.Sprintf("OpenStackNodeImageRelease %s", klog.KObj(&o)))
		}
	}
	slices.Sort(users)
	return users, nil
}

// usesImage looks at the image fields of the OpenStack Cluster API provider's v1beta1 machine
// spec (image.id, image.filter.name), a template's spec.template.spec, and a machine's resolved
// image ID.
func usesImage(obj map[string]any, id, name string) bool {
	for _, path := range [][]string{{"spec", "template", "spec", "image"}, {"spec", "image"}} {
		if v, _, _ := unstructured.NestedString(obj, append(path, "id")...); v != "" && v == id {
			return true
		}
		if v, _, _ := unstructured.NestedString(obj, append(path, "filter", "name")...); v != "" && v == name {
			return true
		}
	}
	v, _, _ := unstructured.NestedString(obj, "status", "resolved", "imageID")
	return v != "" && v == id
}

func (r *OpenStackNodeImageReleaseReconciler) namespaceTerminating(ctx context.Context, namespace string) bool {
	ns := &corev1.Namespace{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		return false
	}
	return !ns.DeletionTimestamp.IsZero()
}
