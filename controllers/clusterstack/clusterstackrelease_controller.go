package clusterstack

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/util/conditions"
	"sigs.k8s.io/cluster-api/util/patch"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/kstatus"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/render"
)

const (
	// FieldManager is the server-side apply field manager of everything a release applies.
	FieldManager = "clusterstack-operator"
	// ReleaseLabel is set on every object a release applies, with the release name, so that a
	// change to one of them (drift, an ORC Image becoming available) reaches the right release.
	// On an object several releases render it names the one that writes it (see shared.go).
	ReleaseLabel = "clusterstack.x-k8s.io/release"
	// DefaultDriftCheckInterval is how often a converged release compares its objects with the
	// live ones, for the kinds it does not watch. ClusterClasses and ORC Images are watched.
	DefaultDriftCheckInterval = 10 * time.Minute
	// driftJitter spreads the re-checks of many releases.
	driftJitter = 0.2
	// releaseRetryInterval is when a release that is not (yet) published or has no ClusterStack
	// is looked for again.
	releaseRetryInterval = time.Minute
	// missingAPIRetryInterval is when a release waiting for a CRD looks again; CRDs are not
	// watched (the operator may not list them).
	missingAPIRetryInterval = time.Minute
	// forbiddenRetryInterval is when a release the operator may not write (RBAC) tries again;
	// RBAC objects are not watched.
	forbiddenRetryInterval = time.Minute
	// releaseWorkers is how many releases are reconciled at the same time.
	releaseWorkers = 4
	// deleteWaitInterval is how often a release being deleted looks at objects whose deletion
	// is still in progress (finalizers of other controllers).
	deleteWaitInterval = 5 * time.Second
)

// Reasons of the ClusterStackRelease's conditions that are specific to this controller.
const (
	// NoClusterStackReason means no ClusterStack owns or matches the release.
	NoClusterStackReason = "NoClusterStack"
	// ImagesNotAvailableReason means ORC Images of the release are not Available yet.
	ImagesNotAvailableReason = "ImagesNotAvailable"
)

// orcImage is the ORC Image kind: current SCS stacks render one per release, and the release is
// only usable once ORC reports the image Available.
var orcImage = schema.GroupVersionKind{Group: "openstack.k-orc.cloud", Version: "v1alpha1", Kind: "Image"}

// releaseConditions are the conditions the ClusterStackRelease controller owns.
var releaseConditions = []string{
	clusterstackv1alpha1.ReadyCondition,
	clusterstackv1alpha1.ReconcilingCondition,
	clusterstackv1alpha1.StalledCondition,
	clusterstackv1alpha1.ReleaseAvailableCondition,
	clusterstackv1alpha1.ProviderReadyCondition,
	clusterstackv1alpha1.ResourcesAppliedCondition,
}

// ClusterStackReleaseReconciler installs one release: it materialises it, waits for its provider
// object, renders its cluster-class chart and applies the objects with server-side apply.
type ClusterStackReleaseReconciler struct {
	Client client.Client
	// APIReader reads the release itself (its inventory must be current) and the Clusters for
	// the in-use checks that decide what may be pruned or deleted (an ORC Image, the whole
	// release) from the API server: the cache may not have the last status patch or a Cluster
	// that was created a moment ago.
	APIReader client.Reader
	Releases  *resolver.Resolver
	Applier   *apply.Applier
	Mapper    meta.RESTMapper
	Recorder  events.EventRecorder
	// DriftCheckInterval is the slow re-check of converged releases; zero means
	// DefaultDriftCheckInterval.
	DriftCheckInterval time.Duration
}

// +kubebuilder:rbac:groups=clusterstack.x-k8s.io,resources=clusterstackreleases,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=clusterstack.x-k8s.io,resources=clusterstackreleases/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=clusterstack.x-k8s.io,resources=clusterstackreleases/finalizers,verbs=update
// +kubebuilder:rbac:groups=clusterstack.x-k8s.io,resources=clusterstacks,verbs=get;list;watch
// +kubebuilder:rbac:groups=infrastructure.clusterstack.x-k8s.io,resources=openstackclusterstackreleases,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=cluster.x-k8s.io,resources=clusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=cluster.x-k8s.io,resources=clusterclasses,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=controlplane.cluster.x-k8s.io,resources=kubeadmcontrolplanetemplates,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=bootstrap.cluster.x-k8s.io,resources=kubeadmconfigtemplates,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=infrastructure.cluster.x-k8s.io,resources=*,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=openstack.k-orc.cloud,resources=images,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=selfsubjectaccessreviews,verbs=create

// SetupWithManager registers the controller. ORC Images are only watched when their CRD is
// installed at start; without it a release that renders one reports the missing CRD instead.
func (r *ClusterStackReleaseReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		Named("clusterstackrelease").
		// Releases are independent and a reconcile mostly waits for the registry and the API
		// server, so a few run side by side; rendering is the only CPU-heavy step.
		WithOptions(controller.Options{MaxConcurrentReconciles: releaseWorkers}).
		For(&clusterstackv1alpha1.ClusterStackRelease{}).
		Owns(&infrav1alpha1.OpenStackClusterStackRelease{}).
		Watches(&clusterv1.Cluster{}, handler.EnqueueRequestsFromMapFunc(releaseOfClusterRequest)).
		// A release that lets a shared object go hands it to the next newest holder (shared.go).
		Watches(&clusterstackv1alpha1.ClusterStackRelease{}, handler.EnqueueRequestsFromMapFunc(r.releasesSharingWith),
			builder.WithPredicates(inventoryOrDeletionChanged)).
		// Metadata is enough: any change, spec or status, bumps the resourceVersion and brings
		// the release to compare, and metadata informers keep far less in memory.
		WatchesMetadata(&clusterv1.ClusterClass{}, handler.EnqueueRequestsFromMapFunc(r.releasesHolding))
	if _, err := r.Mapper.RESTMapping(orcImage.GroupKind(), orcImage.Version); err == nil {
		img := &metav1.PartialObjectMetadata{}
		img.SetGroupVersionKind(orcImage)
		b = b.WatchesMetadata(img, handler.EnqueueRequestsFromMapFunc(r.releasesHolding))
	}
	return b.Complete(r)
}

// releaseOfAppliedObject maps an object a release applied to the release, through ReleaseLabel,
// else (ClusterClasses applied before the label existed) through the parsed ClusterClass name.
func releaseOfAppliedObject(_ context.Context, obj client.Object) []reconcile.Request {
	if rel := obj.GetLabels()[ReleaseLabel]; rel != "" {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: rel}}}
	}
	if n, err := name.ParseClusterClassName(obj.GetName()); err == nil && obj.GetObjectKind().GroupVersionKind().Kind == "ClusterClass" {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: n.String()}}}
	}
	return nil
}

// releaseOfClusterRequest maps a Cluster to the release whose ClusterClass it uses, so that a
// release waiting to be deleted notices the Cluster going away.
func releaseOfClusterRequest(_ context.Context, obj client.Object) []reconcile.Request {
	cl, ok := obj.(*clusterv1.Cluster)
	if !ok {
		return nil
	}
	ref, ok := resolver.ReleaseOfCluster(cl)
	if !ok {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ref.Namespace, Name: ref.Release.String()}}}
}

// Reconcile follows STYLE.md: get, logger, finalizer, patch helper, deferred patch, then delete or
// normal.
func (r *ClusterStackReleaseReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	csr := &clusterstackv1alpha1.ClusterStackRelease{}
	// Read from the API server, not the cache: status.resources is the inventory that decides
	// what is pruned (and what an ORC Image in use keeps), and the status patch does not use
	// optimistic locking. A reconcile started from a cache that has not seen the last status
	// patch would apply with an old inventory, write it back, and orphan what the newer one
	// listed (a loaded run lost an in-use ORC Image from the inventory that way).
	if err := r.APIReader.Get(ctx, req.NamespacedName, csr); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	log := ctrl.LoggerFrom(ctx).WithValues("ClusterStackRelease", klog.KObj(csr))
	ctx = ctrl.LoggerInto(ctx, log)

	if csr.DeletionTimestamp.IsZero() && !controllerutil.ContainsFinalizer(csr, clusterstackv1alpha1.ClusterStackReleaseFinalizer) {
		base := client.MergeFrom(csr.DeepCopy())
		controllerutil.AddFinalizer(csr, clusterstackv1alpha1.ClusterStackReleaseFinalizer)
		if err := r.Client.Patch(ctx, csr, base); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding the finalizer: %w", err)
		}
	}

	helper, err := patch.NewHelper(csr, r.Client)
	if err != nil {
		return ctrl.Result{}, err
	}
	defer func() {
		kstatus.BoundConditions(csr)
		opts := []patch.Option{patch.WithOwnedConditions{Conditions: releaseConditions}}
		if reterr == nil {
			opts = append(opts, patch.WithStatusObservedGeneration{})
		}
		if err := helper.Patch(ctx, csr, opts...); err != nil && !apierrors.IsNotFound(err) {
			reterr = kerrors.NewAggregate([]error{reterr, fmt.Errorf("patching ClusterStackRelease: %w", err)})
		}
	}()

	if !csr.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, csr)
	}
	return r.reconcileNormal(ctx, csr)
}

func (r *ClusterStackReleaseReconciler) reconcileNormal(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease) (ctrl.Result, error) {
	st := &releaseStatus{}
	defer setReleaseStatus(csr, st)

	rel, res, err := r.materialise(ctx, csr, st)
	if rel == nil {
		return res, err
	}
	csr.Status.KubernetesVersion = rel.Metadata.Versions.Kubernetes

	if ready, err := r.providerReady(ctx, csr); err != nil {
		return ctrl.Result{}, err
	} else if !ready {
		// Nothing is applied before the provider object is ready: the ClusterClass must not be
		// offered before its node images exist. Its status change brings the release back (Owns).
		return ctrl.Result{}, nil
	}

	objs, res, err := r.render(ctx, csr, rel, st)
	if objs == nil {
		return res, err
	}

	inUse, err := resolver.ClustersByRelease(ctx, r.APIReader, csr.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	outcome, err := r.apply(ctx, csr, objs, len(inUse[csr.Name].Clusters) > 0)
	if err != nil {
		return ctrl.Result{}, err
	}
	switch outcome {
	case applyConflicts:
		st.stalled = true
	case applyForbidden:
		st.stalled = true
		// RBAC is not watched: look again after a while, as for a missing CRD.
		return ctrl.Result{RequeueAfter: forbiddenRetryInterval}, nil
	}

	waiting, err := r.imagesWaiting(ctx, csr)
	if err != nil {
		return ctrl.Result{}, err
	}
	st.imagesWaiting = waiting

	interval := r.DriftCheckInterval
	if interval <= 0 {
		interval = DefaultDriftCheckInterval
	}
	return ctrl.Result{RequeueAfter: wait.Jitter(interval, driftJitter)}, nil
}

// materialise gets the verified release. A nil release means the reconcile ends with the
// returned result and error; the conditions say why.
func (r *ClusterStackReleaseReconciler) materialise(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease, st *releaseStatus) (*release.Release, ctrl.Result, error) {
	rel, err := releaseOf(ctx, r.Releases, csr)
	if err == nil {
		conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.ReleaseAvailableCondition, Status: metav1.ConditionTrue, Reason: clusterstackv1alpha1.ReadyReason})
		return rel, ctrl.Result{}, nil
	}
	unavailable := func(reason, msg string) {
		conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.ReleaseAvailableCondition, Status: metav1.ConditionFalse, Reason: reason, Message: msg})
	}
	switch {
	case errors.Is(err, resolver.ErrNoClusterStack):
		unavailable(NoClusterStackReason, "No ClusterStack of this namespace provides this release: create one for its provider, stack and Kubernetes version")
		return nil, ctrl.Result{RequeueAfter: releaseRetryInterval}, nil
	case errors.Is(err, release.ErrInvalid), errors.Is(err, name.ErrInvalidName), errors.Is(err, resolver.ErrWrongStack),
		errors.Is(err, source.ErrInvalidArtifact), errors.Is(err, source.ErrTooLarge):
		// Published content does not change under its name: retrying cannot help.
		unavailable(clusterstackv1alpha1.InvalidReleaseReason, err.Error())
		st.stalled = true
		return nil, ctrl.Result{}, nil
	case errors.Is(err, source.ErrNotFound):
		unavailable(clusterstackv1alpha1.ReleaseSourceErrorReason, err.Error())
		return nil, ctrl.Result{RequeueAfter: releaseRetryInterval}, nil
	case terminalSourceError(err):
		unavailable(clusterstackv1alpha1.ReleaseSourceErrorReason, err.Error())
		st.stalled = true
		return nil, ctrl.Result{RequeueAfter: releaseRetryInterval}, nil
	}
	unavailable(clusterstackv1alpha1.ReleaseSourceErrorReason, err.Error())
	return nil, ctrl.Result{}, fmt.Errorf("materialising release %s: %w", csr.Name, err)
}

// providerReady reports whether the provider object is ready (true when there is none) and sets
// ProviderReady.
func (r *ClusterStackReleaseReconciler) providerReady(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease) (bool, error) {
	ref := csr.Spec.ProviderRef
	if ref == nil {
		conditions.Delete(csr, clusterstackv1alpha1.ProviderReadyCondition)
		return true, nil
	}
	notReady := func(msg string) {
		conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.ProviderReadyCondition, Status: metav1.ConditionFalse, Reason: clusterstackv1alpha1.ProviderNotReadyReason, Message: msg})
	}
	if ref.Kind != "" && ref.Kind != providerKind {
		notReady(fmt.Sprintf("spec.providerRef has kind %s: only %s is supported", ref.Kind, providerKind))
		return false, nil
	}
	ns := ref.Namespace
	if ns == "" {
		ns = csr.Namespace
	}
	var p infrav1alpha1.OpenStackClusterStackRelease
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, &p); err != nil {
		if apierrors.IsNotFound(err) {
			notReady(fmt.Sprintf("Waiting for %s %s to be created", providerKind, ref.Name))
			return false, nil
		}
		return false, fmt.Errorf("reading %s %s: %w", providerKind, ref.Name, err)
	}
	readyCond := conditions.Get(&p, clusterstackv1alpha1.ReadyCondition)
	if !p.Status.Ready || (readyCond != nil && readyCond.Status != metav1.ConditionTrue) {
		msg := fmt.Sprintf("%s %s is not ready", providerKind, ref.Name)
		if readyCond != nil && readyCond.Message != "" {
			msg += ": " + readyCond.Message
		}
		notReady(msg)
		return false, nil
	}
	conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.ProviderReadyCondition, Status: metav1.ConditionTrue, Reason: clusterstackv1alpha1.ReadyReason})
	return true, nil
}

// render renders the cluster-class chart the way csctl's users expect: Helm release name
// <provider>-<stack>-<maj>-<min>, the release's namespace, the release's Kubernetes version. A
// nil result ends the reconcile; the conditions say why.
func (r *ClusterStackReleaseReconciler) render(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease, rel *release.Release, st *releaseStatus) ([]*unstructured.Unstructured, ctrl.Result, error) {
	objs, err := renderChart(ctx, rel, csr.Namespace)
	switch {
	case err != nil && (errors.Is(err, render.ErrRenderUnavailable) || ctx.Err() != nil):
		// Not the release's fault: the rendering process could not run. Retried with backoff.
		conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.ResourcesAppliedCondition, Status: metav1.ConditionFalse, Reason: clusterstackv1alpha1.ProgressingReason, Message: "Rendering the cluster-class chart: " + err.Error()})
		return nil, ctrl.Result{}, fmt.Errorf("rendering the cluster-class chart of %s: %w", csr.Name, err)
	case err != nil:
		// A template error or a chart over a budget (render.IsBudgetError): the same release
		// renders the same way again, so only a new release or a larger budget helps.
		conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.ResourcesAppliedCondition, Status: metav1.ConditionFalse, Reason: clusterstackv1alpha1.InvalidReleaseReason, Message: "Rendering the cluster-class chart: " + err.Error()})
		st.stalled = true
		return nil, ctrl.Result{}, nil
	}
	if err := checkClusterClass(objs, rel.Name.ClusterClassName()); err != nil {
		conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.ResourcesAppliedCondition, Status: metav1.ConditionFalse, Reason: clusterstackv1alpha1.InvalidReleaseReason, Message: "Nothing applied: " + err.Error()})
		st.stalled = true
		return nil, ctrl.Result{}, nil
	}
	if err := apply.SetDefaultNamespace(objs, csr.Namespace, r.Mapper); err != nil {
		if errors.Is(err, apply.ErrKindNotServed) {
			r.missingAPI(csr, err, missingKinds(err), st)
			return nil, ctrl.Result{RequeueAfter: missingAPIRetryInterval}, nil
		}
		return nil, ctrl.Result{}, fmt.Errorf("setting namespaces: %w", err)
	}
	for _, o := range objs {
		labels := o.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[ReleaseLabel] = csr.Name
		o.SetLabels(labels)
	}
	// Preflight before writing anything: a release is applied whole or not at all.
	if err := r.Applier.Preflight(ctx, objs); err != nil {
		r.missingAPI(csr, err, missingKinds(err), st)
		return nil, ctrl.Result{RequeueAfter: missingAPIRetryInterval}, nil
	}
	return objs, ctrl.Result{}, nil
}

// renderChart renders the release's cluster-class chart the way csctl's users expect (see
// render).
func renderChart(ctx context.Context, rel *release.Release, namespace string) ([]*unstructured.Unstructured, error) {
	return render.Chart(ctx, rel.ClusterClassChart, render.Options{
		ReleaseName: rel.Name.Prefix(),
		Namespace:   namespace,
		KubeVersion: rel.Metadata.Versions.Kubernetes,
	})
}

// renderRelease renders the release's objects as they are applied, namespaces defaulted to
// namespace, without the release label.
func renderRelease(ctx context.Context, rel *release.Release, namespace string, mapper meta.RESTMapper) ([]*unstructured.Unstructured, error) {
	objs, err := renderChart(ctx, rel, namespace)
	if err != nil {
		return nil, fmt.Errorf("rendering release %s: %w", rel.Name, err)
	}
	if err := apply.SetDefaultNamespace(objs, namespace, mapper); err != nil {
		return nil, fmt.Errorf("rendering release %s: %w", rel.Name, err)
	}
	return objs, nil
}

// checkClusterClass makes sure the chart renders the release's ClusterClass, and no other: what
// Clusters and the ClusterStack find by the release's name must exist, and a chart must not
// write (or, with the operator's field manager, take over) another release's ClusterClass.
func checkClusterClass(objs []*unstructured.Unstructured, want string) error {
	var names []string
	found := false
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		if gvk.Group != clusterv1.GroupVersion.Group || gvk.Kind != "ClusterClass" {
			continue
		}
		names = append(names, o.GetName())
		found = found || o.GetName() == want
	}
	sort.Strings(names)
	switch {
	case len(names) == 0:
		return fmt.Errorf("the cluster-class chart renders no ClusterClass; it must render the ClusterClass %s ({{ .Release.Name }}-{{ .Chart.Version }})", want)
	case !found:
		return fmt.Errorf("the cluster-class chart renders the ClusterClass %s, not %s: a release must render the ClusterClass named after it ({{ .Release.Name }}-{{ .Chart.Version }})", strings.Join(names, ", "), want)
	case len(names) > 1:
		return fmt.Errorf("the cluster-class chart renders the ClusterClasses %s: a release must render only its own, %s", strings.Join(names, ", "), want)
	}
	return nil
}

// missingAPI sets ResourcesApplied False naming the missing kinds and what provides them.
func (r *ClusterStackReleaseReconciler) missingAPI(csr *clusterstackv1alpha1.ClusterStackRelease, err error, kinds []schema.GroupVersionKind, st *releaseStatus) {
	msg := "Nothing applied: " + err.Error()
	if hints := installHints(kinds); hints != "" {
		msg += ". " + hints
	}
	conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.ResourcesAppliedCondition, Status: metav1.ConditionFalse, Reason: clusterstackv1alpha1.MissingAPIReason, Message: msg})
	st.stalled = true
}

// missingKinds extracts the kinds of an apply.MissingKindsError.
func missingKinds(err error) []schema.GroupVersionKind {
	var mk *apply.MissingKindsError
	if errors.As(err, &mk) {
		return mk.Kinds
	}
	return nil
}

// installHints says which component provides the CRDs of the given kinds.
func installHints(kinds []schema.GroupVersionKind) string {
	providers := map[string]string{
		"openstack.k-orc.cloud":           "install the OpenStack Resource Controller (ORC), which the OpenStack Cluster API provider v0.12+ needs anyway",
		"infrastructure.cluster.x-k8s.io": "install the Cluster API infrastructure provider (e.g. the OpenStack provider, CAPO)",
		"cluster.x-k8s.io":                "install Cluster API core",
		"controlplane.cluster.x-k8s.io":   "install the Cluster API kubeadm control-plane provider",
		"bootstrap.cluster.x-k8s.io":      "install the Cluster API kubeadm bootstrap provider",
	}
	seen := map[string]bool{}
	var hints []string
	for _, k := range kinds {
		if h, ok := providers[k.Group]; ok && !seen[h] {
			seen[h] = true
			hints = append(hints, fmt.Sprintf("For %s (%s): %s", k.Kind, k.GroupVersion(), h))
		}
	}
	sort.Strings(hints)
	return strings.Join(hints, "; ")
}

// applyOutcome says what apply left for a human to fix.
type applyOutcome int

const (
	applyDone      applyOutcome = iota // applied, or failed in a way worth retrying with backoff
	applyConflicts                     // only conflicts with other field managers: not forced, not retried
	applyForbidden                     // the operator may not write some objects: nothing applied
)

// apply applies the rendered objects, prunes what an earlier apply left behind, and records the
// inventory. ORC Images are never pruned while a Cluster uses the release: machines that exist
// still boot from them. It reports whether the failures (if any) need a human: a conflict with
// another field manager is not retried in a loop, since the operator never forces, and objects
// the operator may not write (RBAC) are not applied at all, nor any other object of the release.
func (r *ClusterStackReleaseReconciler) apply(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease, objs []*unstructured.Unstructured, inUse bool) (applyOutcome, error) {
	applier := r.Applier
	if inUse {
		applier = r.Applier.WithKeepOnPrune(func(ref apply.Ref) bool {
			return ref.Group == orcImage.Group && ref.Kind == orcImage.Kind
		})
	}
	// Objects other releases render too: one writes them, none deletes what another holds.
	previous := apply.FromResources(csr.Status.Resources)
	desired := map[apply.Ref]bool{}
	refs := make([]apply.Ref, 0, len(objs)+len(previous))
	for _, o := range objs {
		ref := apply.RefOf(o)
		desired[ref.Key()] = true
		refs = append(refs, ref)
	}
	var candidates []apply.Ref
	for _, ref := range previous {
		if !desired[ref.Key()] {
			candidates = append(candidates, ref)
		}
	}
	shared, err := r.readSharing(ctx, csr, append(refs, candidates...))
	if err != nil {
		return applyDone, err
	}
	held, err := r.heldElsewhere(ctx, shared, candidates)
	if err != nil {
		return applyDone, err
	}
	applier = applier.WithSharing(shared.writtenByOther, keyed(held))
	res, err := applier.Apply(ctx, objs, previous)
	var forbidden *apply.ForbiddenError
	if errors.As(err, &forbidden) {
		r.forbidden(csr, forbidden)
		return applyForbidden, nil
	}
	if err != nil {
		conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.ResourcesAppliedCondition, Status: metav1.ConditionFalse, Reason: clusterstackv1alpha1.ApplyFailedReason, Message: err.Error()})
		return applyDone, fmt.Errorf("applying release %s: %w", csr.Name, err)
	}
	csr.Status.Resources = apply.ToResources(res)

	if len(res.Drifted) > 0 {
		// Reported once: the repair converges, and a converged release writes nothing.
		var changed []string
		for _, ref := range res.Drifted {
			changed = append(changed, ref.Kind+"/"+ref.Name)
		}
		sort.Strings(changed)
		ctrl.LoggerFrom(ctx).Info("Repaired drift", "objects", changed)
		r.Recorder.Eventf(csr, nil, corev1.EventTypeWarning, "DriftRepaired", "Apply", "Re-applied objects that differed from the release: %s", strings.Join(changed, ", "))
	}
	if len(res.Failed) == 0 {
		conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.ResourcesAppliedCondition, Status: metav1.ConditionTrue, Reason: clusterstackv1alpha1.ReadyReason})
		return applyDone, nil
	}
	var failed []string
	conflictsOnly := true
	for ref, ferr := range res.Failed {
		failed = append(failed, fmt.Sprintf("%s %s: %v", ref.Kind, ref.Name, ferr))
		var conflict *apply.ConflictError
		if !errors.As(ferr, &conflict) {
			conflictsOnly = false
		}
	}
	sort.Strings(failed)
	msg := "Applying: " + strings.Join(failed, "; ")
	conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.ResourcesAppliedCondition, Status: metav1.ConditionFalse, Reason: clusterstackv1alpha1.ApplyFailedReason, Message: msg})
	if conflictsOnly {
		return applyConflicts, nil
	}
	return applyDone, fmt.Errorf("applying release %s: %w", csr.Name, res.Err())
}

// forbidden sets ResourcesApplied False naming the kinds the operator may not write and the
// rules its ClusterRole lacks. The message depends only on the denied permissions, so a release
// that keeps being refused costs no status writes; the event is sent when the refusal starts.
func (r *ClusterStackReleaseReconciler) forbidden(csr *clusterstackv1alpha1.ClusterStackRelease, fe *apply.ForbiddenError) {
	var kinds, grants []string
	seen := map[string]bool{}
	for _, rule := range fe.Rules() {
		for _, k := range rule.Kinds {
			kind := k
			if rule.Group != "" {
				kind += "." + rule.Group
			}
			if !seen[kind] {
				seen[kind] = true
				kinds = append(kinds, kind)
			}
		}
		group := fmt.Sprintf("API group %q", rule.Group)
		if rule.Group == "" {
			group = `the core API group ("")`
		}
		grants = append(grants, fmt.Sprintf("verbs %s on resource %s in %s", strings.Join(rule.Verbs, ", "), rule.Resource, group))
	}
	msg := fmt.Sprintf("Nothing applied: the operator is not allowed to write %s. Its ClusterRole needs %s",
		strings.Join(kinds, ", "), strings.Join(grants, "; "))
	if prev := conditions.Get(csr, clusterstackv1alpha1.ResourcesAppliedCondition); prev == nil || prev.Reason != clusterstackv1alpha1.ForbiddenReason || prev.Message != msg {
		r.Recorder.Eventf(csr, nil, corev1.EventTypeWarning, clusterstackv1alpha1.ForbiddenReason, "Apply", "%s", msg)
	}
	conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.ResourcesAppliedCondition, Status: metav1.ConditionFalse, Reason: clusterstackv1alpha1.ForbiddenReason, Message: msg})
}

// imagesWaiting returns descriptions of the release's ORC Images that are not Available.
func (r *ClusterStackReleaseReconciler) imagesWaiting(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease) ([]string, error) {
	var waiting []string
	for _, res := range csr.Status.Resources {
		if res.Group != orcImage.Group || res.Kind != orcImage.Kind {
			continue
		}
		img := &unstructured.Unstructured{}
		img.SetGroupVersionKind(schema.GroupVersionKind{Group: res.Group, Version: res.Version, Kind: res.Kind})
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: res.Namespace, Name: res.Name}, img); err != nil {
			if apierrors.IsNotFound(err) {
				waiting = append(waiting, fmt.Sprintf("Image %s (not found)", res.Name))
				continue
			}
			return nil, fmt.Errorf("reading ORC Image %s: %w", res.Name, err)
		}
		cond, err := conditions.UnstructuredGet(img, "Available")
		if err == nil && cond != nil && cond.Status == metav1.ConditionTrue {
			continue
		}
		desc := fmt.Sprintf("Image %s", res.Name)
		if cond != nil && cond.Message != "" {
			desc += " (" + cond.Message + ")"
		}
		waiting = append(waiting, desc)
	}
	sort.Strings(waiting)
	return waiting, nil
}

// reconcileDelete removes what the release applied, once no Cluster uses its ClusterClass.
func (r *ClusterStackReleaseReconciler) reconcileDelete(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(csr, clusterstackv1alpha1.ClusterStackReleaseFinalizer) {
		return ctrl.Result{}, nil
	}
	inUse, err := resolver.ClustersByRelease(ctx, r.APIReader, csr.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	if users := inUse[csr.Name].Clusters; len(users) > 0 {
		msg := fmt.Sprintf("ClusterClass %s is used by Clusters %s: delete them or move them to another ClusterClass first", classNameOf(csr.Name), strings.Join(users, ", "))
		conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: clusterstackv1alpha1.InUseReason, Message: msg})
		conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.ReconcilingCondition, Status: metav1.ConditionTrue, Reason: clusterstackv1alpha1.InUseReason, Message: msg})
		csr.Status.Ready = false
		// The Cluster watch brings the release back when a Cluster goes.
		return ctrl.Result{}, nil
	}

	inventory := apply.FromResources(csr.Status.Resources)
	// Objects a crashed earlier run applied without recording them are found by rendering the
	// release again, when it is still available.
	if rel, err := releaseOf(ctx, r.Releases, csr); err == nil {
		if objs, err := renderRelease(ctx, rel, csr.Namespace, r.Mapper); err == nil {
			seen := map[apply.Ref]bool{}
			for _, ref := range inventory {
				seen[ref.Key()] = true
			}
			for _, o := range objs {
				if ref := apply.RefOf(o); !seen[ref.Key()] {
					inventory = append(inventory, ref)
				}
			}
		}
	}
	// What another release still holds (or will, once it applies) stays: it is theirs now.
	shared, err := r.readSharing(ctx, csr, inventory)
	if err != nil {
		return ctrl.Result{}, err
	}
	held, err := r.heldElsewhere(ctx, shared, inventory)
	if err != nil {
		return ctrl.Result{}, err
	}
	remaining, err := r.Applier.WithSharing(nil, keyed(held)).Delete(ctx, inventory)
	csr.Status.Resources = apply.ToResources(apply.Result{Applied: remaining})
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("deleting the objects of release %s: %w", csr.Name, err)
	}
	if len(remaining) > 0 {
		msg := fmt.Sprintf("Waiting for %d objects to be deleted", len(remaining))
		conditions.Set(csr, metav1.Condition{Type: clusterstackv1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: clusterstackv1alpha1.DeletingReason, Message: msg})
		return ctrl.Result{RequeueAfter: deleteWaitInterval}, nil
	}
	if ref := csr.Spec.ProviderRef; ref != nil {
		// The garbage collector would delete it too; deleting it now frees its node images
		// without waiting for the collector.
		p := &infrav1alpha1.OpenStackClusterStackRelease{ObjectMeta: metav1.ObjectMeta{Namespace: csr.Namespace, Name: ref.Name}}
		if err := r.Client.Delete(ctx, p); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("deleting %s %s: %w", providerKind, ref.Name, err)
		}
	}
	controllerutil.RemoveFinalizer(csr, clusterstackv1alpha1.ClusterStackReleaseFinalizer)
	return ctrl.Result{}, nil
}

func classNameOf(releaseName string) string {
	if n, err := name.Parse(releaseName); err == nil {
		return n.ClusterClassName()
	}
	return releaseName
}

// releaseOf returns the verified release of csr; its name is parsed here, where it enters from
// the API (the CRD's CEL rule makes a name that does not parse rare).
func releaseOf(ctx context.Context, releases *resolver.Resolver, csr *clusterstackv1alpha1.ClusterStackRelease) (*release.Release, error) {
	n, err := name.Parse(csr.Name)
	if err != nil {
		return nil, err
	}
	return releases.ReleaseFor(ctx, csr.Namespace, n)
}
