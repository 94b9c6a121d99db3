package openstack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/reconciler"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
)

// defaultReleaseWorkers is how many OpenStackClusterStackReleases are reconciled at once unless
// Workers says otherwise.
const defaultReleaseWorkers = 4

// OpenStackClusterStackReleaseReconciler turns a release's node-images.yaml into
// OpenStackNodeImageReleases and reports Ready when all their images are active.
type OpenStackClusterStackReleaseReconciler struct {
	Client   client.Client
	Releases ReleaseFiles
	Recorder events.EventRecorder
	// Workers is how many releases are reconciled at once; zero means defaultReleaseWorkers.
	Workers int
	// Clouds gives the read-only clients of the capability check; nil turns the check off.
	Clouds CloudReaders
	// CapabilityInterval is how long a capability check's result is reused; zero means
	// DefaultCapabilityCheckInterval.
	CapabilityInterval time.Duration
	// OutageRetry is the wait before checking again while the cloud is unavailable and gives no
	// Retry-After; zero means defaultOutageRetry.
	OutageRetry time.Duration
	// Now replaces time.Now in tests.
	Now func() time.Time

	capabilities capabilityCache
	answers      answersCache

	kind *reconciler.Kind[*infrav1.OpenStackClusterStackRelease, releaseReport]
}

// +kubebuilder:rbac:groups=infrastructure.clusterstack.x-k8s.io,resources=openstackclusterstackreleases,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=infrastructure.clusterstack.x-k8s.io,resources=openstackclusterstackreleases/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=infrastructure.clusterstack.x-k8s.io,resources=openstackclusterstackreleases/finalizers,verbs=update

// SetupWithManager registers the controller. Node image objects are shared by several releases
// (non-controller owner references), so every owner is told when one changes.
func (r *OpenStackClusterStackReleaseReconciler) SetupWithManager(mgr ctrl.Manager) error {
	workers := r.Workers
	if workers <= 0 {
		workers = defaultReleaseWorkers
	}
	r.kind = &reconciler.Kind[*infrav1.OpenStackClusterStackRelease, releaseReport]{
		Name:      "OpenStackClusterStackRelease",
		New:       func() *infrav1.OpenStackClusterStackRelease { return &infrav1.OpenStackClusterStackRelease{} },
		Reader:    r.Client,
		Client:    r.Client,
		Finalizer: infrav1.OpenStackClusterStackReleaseFinalizer,
		Normal:    r.reconcileNormal,
		Delete: func(ctx context.Context, obj *infrav1.OpenStackClusterStackRelease) releaseReport {
			r.capabilities.forget(client.ObjectKeyFromObject(obj))
			return releaseReport{deleting: true, err: r.reconcileDelete(ctx, obj)}
		},
		Status:     setOpenStackClusterStackReleaseStatus,
		Recorder:   r.Recorder,
		Conditions: []string{infrav1.CloudCapableCondition},
		Gone:       r.capabilities.forget,
		// Its images' cloud is unavailable (each image has its own event too); a release not
		// published yet, or images on their way, are no failure.
		FailureReasons: []string{infrav1.CloudUnavailableReason},
	}
	return reconciler.NewController(mgr, "openstackclusterstackrelease").
		// Releases are independent: one waiting for its release to be fetched must not hold back
		// the next one's node images. Shared node image objects stay safe with several workers:
		// owners are added with optimistic locking, and a lost create race is retried.
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		For(&infrav1.OpenStackClusterStackRelease{}).
		Watches(&infrav1.OpenStackNodeImageRelease{},
			handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &infrav1.OpenStackClusterStackRelease{})).
		Complete(r)
}

// Reconcile runs the one reconcile skeleton (see internal/reconciler) with this kind's steps.
func (r *OpenStackClusterStackReleaseReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return r.kind.Reconcile(ctx, req)
}

// reconcileNormal gets the release (its node images parsed and validated at load) and ensures an
// object per image; what it finds is reported, the conditions follow from it in
// setOpenStackClusterStackReleaseStatus.
func (r *OpenStackClusterStackReleaseReconciler) reconcileNormal(ctx context.Context, obj *infrav1.OpenStackClusterStackRelease) releaseReport {
	n, err := name.Parse(obj.Name)
	if err != nil {
		return releaseReport{release: err}
	}
	rel, err := r.Releases.ReleaseFor(ctx, obj.Namespace, n)
	if err != nil {
		return releaseReport{release: err}
	}
	imgs := rel.NodeImages
	if len(imgs) == 0 {
		return releaseReport{capability: r.checkCapability(ctx, obj, rel, nil)}
	}
	version := rel.Metadata.Versions.Components.NodeImage
	if version == "" {
		version = rel.Metadata.Versions.ClusterStack
	}
	if v, err := name.ParseAnyVersion(version); err == nil {
		version = v.Dashed()
	}

	nirs := make([]*infrav1.OpenStackNodeImageRelease, 0, len(imgs))
	for _, img := range imgs {
		nir, err := r.ensureNodeImage(ctx, obj, rel.Name.Prefix(), version, img)
		if err != nil {
			return releaseReport{err: err}
		}
		nirs = append(nirs, nir)
	}
	return releaseReport{images: nirs, capability: r.checkCapability(ctx, obj, rel, nirs)}
}

// ensureNodeImage creates the shared OpenStackNodeImageRelease of one image or adds this release
// to its owners. An existing object's spec is left alone: releases sharing a node-image version
// ask for the same image.
func (r *OpenStackClusterStackReleaseReconciler) ensureNodeImage(ctx context.Context, owner *infrav1.OpenStackClusterStackRelease, prefix, version string, img infrav1.NodeImage) (*infrav1.OpenStackNodeImageRelease, error) {
	nir := &infrav1.OpenStackNodeImageRelease{}
	key := client.ObjectKey{Namespace: owner.Namespace, Name: NodeImageReleaseName(prefix, img.CreateOpts.Name, version)}
	err := r.Client.Get(ctx, key, nir)
	if apierrors.IsNotFound(err) {
		identity := owner.Spec.IdentityRef
		if identity == nil {
			identity = &infrav1.OpenStackIdentityReference{Kind: "Secret", Name: "openstack"}
		}
		nir = &infrav1.OpenStackNodeImageRelease{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
			Spec:       infrav1.OpenStackNodeImageReleaseSpec{IdentityRef: identity.DeepCopy(), Image: img.DeepCopy()},
		}
		if err := controllerutil.SetOwnerReference(owner, nir, r.Client.Scheme()); err != nil {
			return nil, err
		}
		// Created with its finalizer, which the node image controller (set up beside this one)
		// would otherwise add with a write of its own before it can start on the image.
		controllerutil.AddFinalizer(nir, infrav1.OpenStackNodeImageReleaseFinalizer)
		if err := r.Client.Create(ctx, nir); err != nil {
			// AlreadyExists: another release sharing this image created it a moment ago; the
			// retry finds it and adds this release as an owner.
			return nil, fmt.Errorf("creating OpenStackNodeImageRelease %s: %w", key.Name, err)
		}
		r.Recorder.Eventf(owner, nir, corev1.EventTypeNormal, "NodeImageCreated", "Create", "Created OpenStackNodeImageRelease %s", key.Name)
		return nir, nil
	}
	if err != nil {
		return nil, fmt.Errorf("getting OpenStackNodeImageRelease %s: %w", key.Name, err)
	}
	if !nir.DeletionTimestamp.IsZero() {
		return nil, fmt.Errorf("OpenStackNodeImageRelease %s is being deleted; waiting to recreate it", key.Name)
	}
	if !slices.ContainsFunc(nir.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == owner.UID }) {
		base := client.MergeFromWithOptions(nir.DeepCopy(), client.MergeFromWithOptimisticLock{})
		if err := controllerutil.SetOwnerReference(owner, nir, r.Client.Scheme()); err != nil {
			return nil, err
		}
		if err := r.Client.Patch(ctx, nir, base); err != nil {
			return nil, fmt.Errorf("adding release %s to the owners of %s: %w", owner.Name, key.Name, err)
		}
	}
	return nir, nil
}

// reconcileDelete removes this release from the owners of its node images and deletes those it
// owned alone. Owner references would let the garbage collector do the same, but doing it here
// keeps the finalizer meaningful and works where no garbage collector runs.
func (r *OpenStackClusterStackReleaseReconciler) reconcileDelete(ctx context.Context, obj *infrav1.OpenStackClusterStackRelease) error {
	list := &infrav1.OpenStackNodeImageReleaseList{}
	if err := r.Client.List(ctx, list, client.InNamespace(obj.Namespace)); err != nil {
		return fmt.Errorf("listing OpenStackNodeImageReleases: %w", err)
	}
	for i := range list.Items {
		nir := &list.Items[i]
		if !slices.ContainsFunc(nir.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == obj.UID }) {
			continue
		}
		others := slices.ContainsFunc(nir.OwnerReferences, func(o metav1.OwnerReference) bool {
			return o.UID != obj.UID && o.Kind == "OpenStackClusterStackRelease"
		})
		if !others {
			// Only the version this decision was made on is deleted: the list comes from the
			// cache, and another release may have just added itself to the owners (a conflict
			// then retries with a fresh view instead of deleting an image that release needs).
			pre := client.Preconditions{UID: &nir.UID, ResourceVersion: &nir.ResourceVersion}
			if err := r.Client.Delete(ctx, nir, pre); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting OpenStackNodeImageRelease %s: %w", nir.Name, err)
			}
			continue
		}
		base := client.MergeFromWithOptions(nir.DeepCopy(), client.MergeFromWithOptimisticLock{})
		nir.OwnerReferences = slices.DeleteFunc(nir.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == obj.UID })
		if err := r.Client.Patch(ctx, nir, base); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("removing release %s from the owners of %s: %w", obj.Name, nir.Name, err)
		}
	}
	controllerutil.RemoveFinalizer(obj, infrav1.OpenStackClusterStackReleaseFinalizer)
	return nil
}

var invalidNameChars = regexp.MustCompile(`[^a-z0-9.-]+`)

// NodeImageReleaseName is the reference's name of a node image object,
// <provider>-<stack>-<maj>-<min>-<image name>-<nodeImage version>, made a valid object name.
func NodeImageReleaseName(prefix, imageName, version string) string {
	n := invalidNameChars.ReplaceAllString(strings.ToLower(fmt.Sprintf("%s-%s-%s", prefix, imageName, version)), "-")
	n = strings.Trim(n, "-.")
	if len(n) > 253 {
		sum := sha256.Sum256([]byte(n))
		n = strings.Trim(n[:240], "-.") + "-" + hex.EncodeToString(sum[:])[:8]
	}
	return n
}
