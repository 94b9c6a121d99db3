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
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/keymutex"
	"sigs.k8s.io/cluster-api/util/conditions"
	"sigs.k8s.io/cluster-api/util/patch"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/kstatus"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/nodeimage"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
)

// Named waits of the node image controller.
const (
	// credentialsRetryInterval: Secrets are not watched, so a fixed Secret is noticed this late.
	credentialsRetryInterval = 2 * time.Minute
	// inUseRecheckInterval: machines are not watched (their CRDs may be absent), so a deletion
	// held by machines looks again this often.
	inUseRecheckInterval = time.Minute
	// protectedRecheckInterval: a protected image needs a human; look again now and then.
	protectedRecheckInterval = 5 * time.Minute
	// defaultRetryAfter is used when the cloud asks to slow down without saying how long.
	defaultRetryAfter = 10 * time.Second
)

// nodeImageConditions are the conditions this controller owns on its objects.
var nodeImageConditions = []string{csv1alpha1.ReadyCondition, csv1alpha1.ReconcilingCondition, csv1alpha1.StalledCondition}

// Machine kinds of the OpenStack Cluster API provider that may use an image.
var (
	machineTemplateListGVK = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "OpenStackMachineTemplateList"}
	machineListGVK         = schema.GroupVersionKind{Group: "infrastructure.cluster.x-k8s.io", Version: "v1beta1", Kind: "OpenStackMachineList"}
)

// NodeImageReleaseReconciler makes one node image exist in one Glance project.
type NodeImageReleaseReconciler struct {
	Client client.Client
	// APIReader reads the namespace of an object whose credentials are gone.
	APIReader       client.Reader
	ImageClients    ImageClients
	NodeImage       nodeimage.Options
	RecheckInterval time.Duration
	// InUseRecheck overrides inUseRecheckInterval.
	InUseRecheck time.Duration
	Recorder     events.EventRecorder
	// Workers is how many node images are brought into Glance at once; zero means
	// defaultNodeImageWorkers.
	Workers int

	// imageLocks serialises the work on images of the same Glance name: two objects naming one
	// image (releases sharing a node image, or ClusterStacks in several namespaces of one
	// project) must not both look it up, miss it and create it twice. Images of different names
	// go in parallel.
	imageLocks keymutex.KeyMutex
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
func (r *NodeImageReleaseReconciler) SetupWithManager(mgr ctrl.Manager) error {
	workers := r.Workers
	if workers <= 0 {
		workers = defaultNodeImageWorkers
	}
	// A hashed key mutex: names that share a bucket wait for each other, which is safe.
	r.imageLocks = keymutex.NewHashed(64)
	return ctrl.NewControllerManagedBy(mgr).
		Named("openstacknodeimagerelease").
		For(&infrav1.OpenStackNodeImageRelease{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
}

// Reconcile follows STYLE.md: get, logger, finalizer, patch helper, deferred patch, then delete
// or normal.
func (r *NodeImageReleaseReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	obj := &infrav1.OpenStackNodeImageRelease{}
	// Read from the API server, not the cache: this controller writes its status in the middle of
	// a reconcile (the image ID right after creating) and a reconcile started from a cache that
	// has not seen the last write would act on an old imageID or attempt count and create or
	// import twice.
	if err := r.APIReader.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	log := ctrl.LoggerFrom(ctx).WithValues("OpenStackNodeImageRelease", klog.KObj(obj))
	ctx = ctrl.LoggerInto(ctx, log)

	// The whole reconcile, status patch included (this defer runs last), holds the lock of the
	// image's Glance name: another object of the same name then sees the image ID this one
	// recorded before it looks the image up, adopts or deletes it.
	if obj.Spec.Image != nil && obj.Spec.Image.CreateOpts != nil {
		name := obj.Spec.Image.CreateOpts.Name
		r.imageLocks.LockKey(name)
		defer func() { _ = r.imageLocks.UnlockKey(name) }() // fails only for a key not locked
	}

	if obj.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(obj, infrav1.OpenStackNodeImageReleaseFinalizer) {
		base := client.MergeFrom(obj.DeepCopy())
		controllerutil.AddFinalizer(obj, infrav1.OpenStackNodeImageReleaseFinalizer)
		if err := r.Client.Patch(ctx, obj, base); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding the finalizer: %w", err)
		}
	}

	helper, err := patch.NewHelper(obj, r.Client)
	if err != nil {
		return ctrl.Result{}, err
	}
	// converged is set by the reconcile when the outcome describes the current spec (ready, or
	// stalled for good); only then is observedGeneration recorded.
	converged := false
	defer func() {
		obj.Status.Ready = conditions.IsTrue(obj, csv1alpha1.ReadyCondition)
		opts := []patch.Option{patch.WithOwnedConditions{Conditions: nodeImageConditions}}
		if reterr == nil && converged {
			opts = append(opts, patch.WithStatusObservedGeneration{})
		}
		if err := helper.Patch(ctx, obj, opts...); err != nil && !apierrors.IsNotFound(err) {
			reterr = kerrors.NewAggregate([]error{reterr, fmt.Errorf("patching OpenStackNodeImageRelease: %w", err)})
		}
	}()

	if !obj.DeletionTimestamp.IsZero() {
		// Conditions set while deleting describe the deletion of this generation.
		converged = true
		return r.reconcileDelete(ctx, obj)
	}
	// persist writes the status at once and starts a new patch helper from what was written, so
	// that the deferred patch compares against the stored state (a field cleared after persist,
	// like an imageID after a refused upload, must be removed, not lost in an empty diff).
	persist := func(ctx context.Context) error {
		if err := helper.Patch(ctx, obj, patch.WithOwnedConditions{Conditions: nodeImageConditions}); err != nil {
			return err
		}
		h, err := patch.NewHelper(obj, r.Client)
		if err != nil {
			return err
		}
		helper = h
		return nil
	}
	return r.reconcileNormal(ctx, obj, persist, &converged)
}

func (r *NodeImageReleaseReconciler) reconcileNormal(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease, persistStatus nodeimage.Persist, converged *bool) (ctrl.Result, error) {
	upToDate := obj.Status.ObservedGeneration == obj.Generation
	// A converged image costs no OpenStack call (and no Secret read) unless a re-check is asked.
	if upToDate && obj.Status.Ready && obj.Status.ImageID != "" && obj.Status.ImageStatus == "active" && r.RecheckInterval == 0 {
		*converged = true
		return ctrl.Result{}, nil
	}
	// A terminal image failure waits for a new spec; only credentials problems are retried,
	// because Secrets are not watched.
	if upToDate && conditions.IsTrue(obj, csv1alpha1.StalledCondition) &&
		conditions.GetReason(obj, csv1alpha1.StalledCondition) != infrav1.InvalidCredentialsReason {
		*converged = true
		return ctrl.Result{}, nil
	}
	if !upToDate && conditions.IsTrue(obj, csv1alpha1.StalledCondition) {
		// A changed spec deserves fresh attempts.
		obj.Status.TransferAttempts, obj.Status.RetryAt, obj.Status.TransferStartedAt = 0, nil, nil
	}

	images, res, err := r.imageClient(ctx, obj, converged)
	if images == nil {
		return res, err
	}
	svc := nodeimage.NewService(images, r.NodeImage)

	if upToDate && obj.Status.Ready && r.RecheckInterval > 0 {
		status, err := svc.Check(ctx, obj.Status.ImageID)
		if err != nil {
			return r.cloudError(ctx, obj, err, converged)
		}
		if status == "active" {
			*converged = true
			return ctrl.Result{RequeueAfter: r.RecheckInterval}, nil
		}
	}

	hadID := obj.Status.ImageID
	persist := func(ctx context.Context) error {
		kstatus.MarkProgressing(obj, infrav1.CreatingImageReason, fmt.Sprintf("Created image %s; bringing its data in", obj.Status.ImageID))
		return persistStatus(ctx)
	}
	out, err := svc.Ensure(ctx, obj, persist)
	if obj.Status.ImageID != "" && obj.Status.ImageID != hadID && obj.Status.CreatedImage {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, "ImageCreated", "Create", "Created Glance image %s (%s)", obj.Status.ImageID, obj.Spec.Image.CreateOpts.Name)
	}
	if err != nil {
		return r.cloudError(ctx, obj, err, converged)
	}
	if out.Ready {
		wasReady := conditions.IsTrue(obj, csv1alpha1.ReadyCondition)
		kstatus.MarkReady(obj, infrav1.ImageActiveReason, out.Message)
		if !wasReady {
			r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, "ImageActive", "Ensure", "%s", out.Message)
		}
		*converged = true
		if r.RecheckInterval > 0 {
			return ctrl.Result{RequeueAfter: r.RecheckInterval}, nil
		}
		return ctrl.Result{}, nil
	}
	kstatus.MarkProgressing(obj, out.Reason, out.Message)
	return ctrl.Result{RequeueAfter: out.RequeueAfter}, nil
}

// imageClient returns the Glance client, or nil with the result to return when the credentials
// cannot be used.
func (r *NodeImageReleaseReconciler) imageClient(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease, converged *bool) (clients.ImageClient, ctrl.Result, error) {
	images, err := r.ImageClients.ImageClient(ctx, obj.Namespace, obj.Spec.IdentityRef)
	if err == nil {
		return images, ctrl.Result{}, nil
	}
	var credErr *scope.CredentialsError
	if !errors.As(err, &credErr) {
		return nil, ctrl.Result{}, err
	}
	if credErr.Retryable() {
		kstatus.MarkProgressing(obj, infrav1.InvalidCredentialsReason, credErr.Error())
		return nil, ctrl.Result{}, err
	}
	if !conditions.IsTrue(obj, csv1alpha1.StalledCondition) || conditions.GetMessage(obj, csv1alpha1.StalledCondition) != credErr.Error() {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, infrav1.InvalidCredentialsReason, "Authenticate", "%s", credErr.Error())
	}
	kstatus.MarkStalled(obj, infrav1.InvalidCredentialsReason, credErr.Error())
	*converged = true
	return nil, ctrl.Result{RequeueAfter: credentialsRetryInterval}, nil
}

// cloudError turns an error of the service into conditions and a result: terminal errors stall
// the object, transient ones are retried without touching conditions (a 409 or a 503 is no news
// for a user), honouring Retry-After.
func (r *NodeImageReleaseReconciler) cloudError(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease, err error, converged *bool) (ctrl.Result, error) {
	var terminal *nodeimage.TerminalError
	if errors.As(err, &terminal) {
		if !conditions.IsTrue(obj, csv1alpha1.StalledCondition) || conditions.GetMessage(obj, csv1alpha1.StalledCondition) != terminal.Message {
			r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, terminal.Reason, "Ensure", "%s", terminal.Message)
		}
		kstatus.MarkStalled(obj, terminal.Reason, terminal.Message)
		*converged = true
		return ctrl.Result{}, nil
	}
	class := clients.Classify(err)
	switch class.Kind {
	case clients.KindRetryable:
		wait := class.RetryAfter
		if wait == 0 && class.StatusCode != 0 {
			wait = defaultRetryAfter
		}
		if wait > 0 {
			ctrl.LoggerFrom(ctx).V(4).Info("OpenStack asked to retry later", "after", wait, "error", err.Error())
			return ctrl.Result{RequeueAfter: wait}, nil
		}
		return ctrl.Result{}, err
	case clients.KindConflict:
		return ctrl.Result{}, err
	}
	kstatus.MarkProgressing(obj, infrav1.CloudErrorReason, err.Error())
	return ctrl.Result{}, err
}

func (r *NodeImageReleaseReconciler) reconcileDelete(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	if !controllerutil.ContainsFinalizer(obj, infrav1.OpenStackNodeImageReleaseFinalizer) {
		return ctrl.Result{}, nil
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
		return ctrl.Result{}, nil
	}

	users, err := r.imageUsers(ctx, obj)
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(users) > 0 {
		msg := fmt.Sprintf("Image %s is not deleted while %s use it", obj.Status.ImageID, strings.Join(users, ", "))
		if conditions.GetMessage(obj, csv1alpha1.ReadyCondition) != msg {
			r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, infrav1.ImageInUseReason, "Delete", "%s", msg)
		}
		setDeleting(obj, infrav1.ImageInUseReason, msg, false)
		wait := inUseRecheckInterval
		if r.InUseRecheck > 0 {
			wait = r.InUseRecheck
		}
		return ctrl.Result{RequeueAfter: wait}, nil
	}

	images, err := r.ImageClients.ImageClient(ctx, obj.Namespace, obj.Spec.IdentityRef)
	if err != nil {
		var credErr *scope.CredentialsError
		if errors.As(err, &credErr) && errors.Is(err, scope.ErrSecretNotFound) && r.namespaceTerminating(ctx, obj.Namespace) {
			// The whole namespace goes, its Secret first: waiting would block the namespace
			// forever, so the image is left behind, and said so.
			r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, "ImageOrphaned", "Delete", "Left Glance image %s behind: the namespace is being deleted and its credentials are gone", obj.Status.ImageID)
			controllerutil.RemoveFinalizer(obj, infrav1.OpenStackNodeImageReleaseFinalizer)
			return ctrl.Result{}, nil
		}
		if errors.As(err, &credErr) {
			setDeleting(obj, infrav1.InvalidCredentialsReason, credErr.Error(), !credErr.Retryable())
			return ctrl.Result{RequeueAfter: credentialsRetryInterval}, nil
		}
		return ctrl.Result{}, err
	}
	if err := nodeimage.NewService(images, r.NodeImage).Delete(ctx, obj); err != nil {
		class := clients.Classify(err)
		switch {
		case class.StatusCode == 403:
			msg := fmt.Sprintf("Glance refused to delete image %s (HTTP 403): it is protected or the policy forbids it; unprotect it or set deletionPolicy keep", obj.Status.ImageID)
			if conditions.GetMessage(obj, csv1alpha1.StalledCondition) != msg {
				r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, infrav1.ProtectedReason, "Delete", "%s", msg)
			}
			setDeleting(obj, infrav1.ProtectedReason, msg, true)
			return ctrl.Result{RequeueAfter: protectedRecheckInterval}, nil
		case class.Kind == clients.KindRetryable && class.RetryAfter > 0:
			return ctrl.Result{RequeueAfter: class.RetryAfter}, nil
		}
		return ctrl.Result{}, err
	}
	log.Info("Deleted the Glance image", "imageID", obj.Status.ImageID)
	r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, "ImageDeleted", "Delete", "Deleted Glance image %s", obj.Status.ImageID)
	controllerutil.RemoveFinalizer(obj, infrav1.OpenStackNodeImageReleaseFinalizer)
	return ctrl.Result{}, nil
}

// imageUsers lists what still uses the image: OpenStackMachineTemplates and OpenStackMachines of
// the namespace naming it by ID or name, and other OpenStackNodeImageReleases (any namespace)
// that adopted the same Glance image. Kinds whose CRD is not installed use nothing.
func (r *NodeImageReleaseReconciler) imageUsers(ctx context.Context, obj *infrav1.OpenStackNodeImageRelease) ([]string, error) {
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

func (r *NodeImageReleaseReconciler) namespaceTerminating(ctx context.Context, namespace string) bool {
	ns := &corev1.Namespace{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		return false
	}
	return !ns.DeletionTimestamp.IsZero()
}

func setDeleting(obj *infrav1.OpenStackNodeImageRelease, reason, msg string, stalled bool) {
	if stalled {
		kstatus.MarkStalled(obj, reason, msg)
		return
	}
	kstatus.MarkProgressing(obj, reason, msg)
}
