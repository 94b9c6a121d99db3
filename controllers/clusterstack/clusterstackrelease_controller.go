package clusterstack

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/events"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/util/conditions"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/reconciler"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
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
	// defaultReleaseWorkers is how many releases are reconciled at the same time unless
	// Options.ReleaseWorkers says otherwise.
	defaultReleaseWorkers = 4
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
	// Workers is how many releases are reconciled at the same time; zero means
	// defaultReleaseWorkers.
	Workers int

	// prerendered holds the renderings made while releases waited for their provider object,
	// so that rendering (a child process) runs while the node images are uploaded instead of
	// after. The reconcile that applies takes its entry; a release that goes drops it. Only
	// releases waiting for their provider hold one.
	prerenderedMu sync.Mutex
	prerendered   map[types.NamespacedName]prerendering
	// primed are the kinds prerender has primed the API server with (Applier.Prime).
	primedMu sync.Mutex
	primed   map[schema.GroupVersionKind]bool

	// converged holds, per release, what its last apply that changed nothing found (see
	// convergence), so that a reconcile of a release nothing changed renders and applies nothing.
	convergedMu sync.Mutex
	converged   map[types.NamespacedName]convergence
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
	workers := r.Workers
	if workers <= 0 {
		workers = defaultReleaseWorkers
	}
	b := reconciler.NewController(mgr, "clusterstackrelease").
		// Releases are independent and a reconcile mostly waits for the registry and the API
		// server, so a few run side by side; rendering is the only CPU-heavy step.
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		// The releases a ClusterStack creates right after the start are fetched and rendered
		// while the other watches still fill their caches (the ClusterClass's fills last on a
		// fresh API server): every other kind is read through the cache, which waits for it.
		StartOnForSync().
		// Its own status writes do not bring a release back: what follows from them is on its
		// way through the watches (the applied objects' events, the provider object's).
		For(&clusterstackv1alpha1.ClusterStackRelease{}, notOnlyStatusChanged).
		// Its provider object, whose mere progress (repeated in the release's message) is shown
		// a moment later, coalesced.
		Watches(&infrav1alpha1.OpenStackClusterStackRelease{}, reconciler.EnqueueControllerOnProgress(clusterstackv1alpha1.GroupVersion.WithKind("ClusterStackRelease").GroupKind(), reconciler.ProgressCoalescing)).
		// A new Cluster changes nothing a release does: it protects what it uses when a prune or
		// the deletion reads the Clusters live. What a release waits for is a Cluster leaving it.
		Watches(&clusterv1.Cluster{}, handler.EnqueueRequestsFromMapFunc(releaseOfClusterRequest), resolver.ReleaseUseChanged(false)).
		// A release that lets a shared object go hands it to the next newest holder (shared.go).
		Watches(&clusterstackv1alpha1.ClusterStackRelease{}, handler.EnqueueRequestsFromMapFunc(r.releasesSharingWith),
			inventoryOrDeletionChanged).
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

// notOnlyStatusChanged passes every event but an update that changed nothing but the status (and
// the resourceVersion and managed fields that come with it).
var notOnlyStatusChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld, e.ObjectNew
		if o == nil || n == nil {
			return true
		}
		return !reconciler.OnlyStatusChanged(o, n)
	},
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

// Reconcile runs the one reconciler shape (package reconciler) with this kind's steps and its
// status function (setClusterStackReleaseStatus).
func (r *ClusterStackReleaseReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	k := reconciler.Kind[*clusterstackv1alpha1.ClusterStackRelease, releaseReport]{
		Name: "ClusterStackRelease",
		New:  func() *clusterstackv1alpha1.ClusterStackRelease { return &clusterstackv1alpha1.ClusterStackRelease{} },
		// Read from the API server, not the cache: status.resources is the inventory that
		// decides what is pruned (and what an ORC Image in use keeps), and the status patch does
		// not use optimistic locking. A reconcile started from a cache that has not seen the last
		// status patch would apply with an old inventory, write it back, and orphan what the
		// newer one listed (a loaded run lost an in-use ORC Image from the inventory that way).
		Reader:     r.APIReader,
		Client:     r.Client,
		Finalizer:  clusterstackv1alpha1.ClusterStackReleaseFinalizer,
		Conditions: releaseSteps,
		Normal:     r.reconcileNormal,
		Delete: func(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease) releaseReport {
			r.forgetConvergence(client.ObjectKeyFromObject(csr))
			return releaseReport{deletion: true, err: r.reconcileDelete(ctx, csr)}
		},
		Status: setClusterStackReleaseStatus,
		Gone: func(nn types.NamespacedName) {
			r.dropPrerendering(nn)
			r.forgetConvergence(nn)
		},
		Recorder: r.Recorder,
		// A release source that does not answer, objects the API server refused; waiting for the
		// provider object or a ClusterStack is no failure.
		FailureReasons: []string{clusterstackv1alpha1.ReleaseSourceErrorReason, clusterstackv1alpha1.ApplyFailedReason},
	}
	return k.Reconcile(ctx, req)
}

// prerendering is the cluster-class chart of one release content rendered for one namespace.
type prerendering struct {
	// key is the release's content digest and namespace: what the rendering depends on.
	key  string
	objs []*unstructured.Unstructured
}

func prerenderKey(csr *clusterstackv1alpha1.ClusterStackRelease, rel *release.Release) string {
	return rel.Digest + " " + csr.Namespace
}

// prerender renders the chart of a release that waits for its provider object, once, keeps the
// objects for the reconcile that applies them and primes the API server with a read of each of
// their kinds (Applier.Prime). A failure keeps nothing: that reconcile
// renders again and reports it, so the conditions say what they said without the head start.
func (r *ClusterStackReleaseReconciler) prerender(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease, rel *release.Release) {
	if rel.Digest == "" {
		return // content not known by digest: nothing to key the rendering by
	}
	key, nn := prerenderKey(csr, rel), client.ObjectKeyFromObject(csr)
	r.prerenderedMu.Lock()
	p, ok := r.prerendered[nn]
	r.prerenderedMu.Unlock()
	if ok && p.key == key {
		return
	}
	objs, err := renderChart(ctx, rel, csr.Namespace)
	if err != nil {
		return
	}
	r.prerenderedMu.Lock()
	if r.prerendered == nil {
		r.prerendered = map[types.NamespacedName]prerendering{}
	}
	r.prerendered[nn] = prerendering{key: key, objs: objs}
	r.prerenderedMu.Unlock()
	// The first requests of the release's kinds are slow on an API server that has not served
	// them yet; made now, they overlap with the images' upload instead of delaying the apply.
	// Once per kind and process: the API server keeps a kind's storage once it has served it.
	r.primedMu.Lock()
	var unprimed []*unstructured.Unstructured
	for _, o := range objs {
		if gvk := o.GroupVersionKind(); !r.primed[gvk] {
			if r.primed == nil {
				r.primed = map[schema.GroupVersionKind]bool{}
			}
			r.primed[gvk] = true
			unprimed = append(unprimed, o)
		}
	}
	r.primedMu.Unlock()
	if len(unprimed) == 0 {
		return
	}
	primeCtx, cancel := context.WithTimeout(ctx, primeTimeout)
	defer cancel()
	r.Applier.Prime(primeCtx, unprimed, csr.Namespace)
}

// primeTimeout bounds the reads of Applier.Prime: they only save the apply time, and the release
// waits for its node images meanwhile.
const primeTimeout = 5 * time.Second

// takePrerendering returns and forgets the rendering prerender kept for this content, if any.
func (r *ClusterStackReleaseReconciler) takePrerendering(csr *clusterstackv1alpha1.ClusterStackRelease, rel *release.Release) []*unstructured.Unstructured {
	nn := client.ObjectKeyFromObject(csr)
	r.prerenderedMu.Lock()
	defer r.prerenderedMu.Unlock()
	p, ok := r.prerendered[nn]
	delete(r.prerendered, nn)
	if !ok || rel.Digest == "" || p.key != prerenderKey(csr, rel) {
		return nil
	}
	return p.objs
}

func (r *ClusterStackReleaseReconciler) dropPrerendering(nn types.NamespacedName) {
	r.prerenderedMu.Lock()
	defer r.prerenderedMu.Unlock()
	delete(r.prerendered, nn)
}

// reconcileNormal runs the steps in order until one does not finish: materialise the release,
// wait for the provider object, render, apply, look at the ORC Images.
func (r *ClusterStackReleaseReconciler) reconcileNormal(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease) releaseReport {
	rep := releaseReport{steps: map[string]error{}}
	rel, err := r.materialise(ctx, csr)
	if rep.stopsAt(clusterstackv1alpha1.ReleaseAvailableCondition, err) {
		return rep
	}
	rep.kubernetesVersion = rel.Metadata.Versions.Kubernetes

	// Nothing is applied before the provider object is ready: the ClusterClass must not be
	// offered before its node images exist. Its status change brings the release back (Owns).
	// Meanwhile the chart is rendered, so that the images' upload and the rendering overlap.
	providerErr := r.providerReady(ctx, csr)
	if rep.stopsAt(clusterstackv1alpha1.ProviderReadyCondition, providerErr) {
		r.prerender(ctx, csr, rel)
		return rep
	}

	// A release nothing changed since its objects were last found as rendered is done.
	if due, ok := r.stillConverged(ctx, csr, rel); ok {
		rep.steps[clusterstackv1alpha1.ResourcesAppliedCondition] = nil
		rep.imagesWaiting, rep.err = r.imagesWaiting(ctx, csr)
		rep.driftCheck = due
		return rep
	}
	r.forgetConvergence(client.ObjectKeyFromObject(csr))

	// Rendering is the first half of ResourcesApplied: its success is no news yet.
	renderStart := time.Now()
	objs, err := r.render(ctx, csr, rel)
	if err != nil {
		rep.stopsAt(clusterstackv1alpha1.ResourcesAppliedCondition, err)
		return rep
	}
	applyStart := time.Now()
	err = r.apply(ctx, csr, objs, convergenceKey(csr, rel))
	ctrl.LoggerFrom(ctx).V(4).Info("Rendered and applied", "render", applyStart.Sub(renderStart), "apply", time.Since(applyStart), "objects", len(objs), "error", err)
	if rep.stopsAt(clusterstackv1alpha1.ResourcesAppliedCondition, err) {
		return rep
	}

	rep.imagesWaiting, rep.err = r.imagesWaiting(ctx, csr)
	rep.driftCheck = r.driftCheck()
	return rep
}

// driftCheck returns when a converged release compares its objects with the live ones again.
func (r *ClusterStackReleaseReconciler) driftCheck() time.Duration {
	interval := r.DriftCheckInterval
	if interval <= 0 {
		interval = DefaultDriftCheckInterval
	}
	return wait.Jitter(interval, driftJitter)
}

// materialise gets the verified release. The ClusterStack it belongs to is looked up first, so
// that a release no ClusterStack provides is told from one its source does not have.
func (r *ClusterStackReleaseReconciler) materialise(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease) (*release.Release, error) {
	n, err := name.Parse(csr.Name) // as releaseOf does
	if err != nil {
		return nil, releaseFailure(err)
	}
	cs, err := r.Releases.ClusterStackFor(ctx, csr.Namespace, n)
	if err != nil {
		if resolver.Classify(err) == resolver.FailureNotYet {
			// ClusterStacks are not watched by this controller: look again after a while.
			return nil, outcome.Wait(NoClusterStackReason, releaseRetryInterval, "No ClusterStack of this namespace provides this release: create one for its provider, stack and Kubernetes version")
		}
		return nil, releaseFailure(err)
	}
	rel, err := r.Releases.Release(ctx, cs, n)
	if err != nil {
		return nil, releaseFailure(err)
	}
	return rel, nil
}

// releaseFailure maps the class of a failure to get the release (resolver.Classify) to the
// outcome of ReleaseAvailable.
func releaseFailure(err error) error {
	switch resolver.Classify(err) {
	case resolver.FailureInvalid:
		// Published content does not change under its name: retrying cannot help.
		return outcome.Stall(clusterstackv1alpha1.InvalidReleaseReason, "%s", err)
	case resolver.FailureNotYet:
		// Not published yet; no watch announces it.
		return outcome.Wait(clusterstackv1alpha1.ReleaseSourceErrorReason, releaseRetryInterval, "%s", err)
	case resolver.FailureSource:
		// A user must fix the source or its Secret; Secrets are not watched.
		return outcome.StallRetry(clusterstackv1alpha1.ReleaseSourceErrorReason, releaseRetryInterval, "%s", err)
	}
	return outcome.Retry(clusterstackv1alpha1.ReleaseSourceErrorReason, err)
}

// providerReady waits until the provider object is ready; a release without one has nothing to
// wait for.
func (r *ClusterStackReleaseReconciler) providerReady(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease) error {
	ref := csr.Spec.ProviderRef
	if ref == nil {
		return nil
	}
	if ref.Kind != "" && ref.Kind != providerKind {
		return outcome.Wait(clusterstackv1alpha1.ProviderNotReadyReason, 0, "spec.providerRef has kind %s: only %s is supported", ref.Kind, providerKind)
	}
	ns := ref.Namespace
	if ns == "" {
		ns = csr.Namespace
	}
	var p infrav1alpha1.OpenStackClusterStackRelease
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, &p); err != nil {
		if apierrors.IsNotFound(err) {
			return outcome.Wait(clusterstackv1alpha1.ProviderNotReadyReason, 0, "Waiting for %s %s to be created", providerKind, ref.Name)
		}
		return fmt.Errorf("reading %s %s: %w", providerKind, ref.Name, err)
	}
	readyCond := conditions.Get(&p, clusterstackv1alpha1.ReadyCondition)
	if !p.Status.Ready || (readyCond != nil && readyCond.Status != metav1.ConditionTrue) {
		msg := fmt.Sprintf("%s %s is not ready", providerKind, ref.Name)
		if readyCond != nil && readyCond.Message != "" {
			msg += ": " + readyCond.Message
		}
		return outcome.Wait(clusterstackv1alpha1.ProviderNotReadyReason, 0, "%s", msg)
	}
	return nil
}

// render renders the cluster-class chart the way csctl's users expect: Helm release name
// <provider>-<stack>-<maj>-<min>, the release's namespace, the release's Kubernetes version.
func (r *ClusterStackReleaseReconciler) render(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease, rel *release.Release) ([]*unstructured.Unstructured, error) {
	objs, err := r.takePrerendering(csr, rel), error(nil)
	if objs == nil {
		objs, err = renderChart(ctx, rel, csr.Namespace)
	}
	switch {
	case err != nil && (errors.Is(err, render.ErrRenderUnavailable) || ctx.Err() != nil):
		// Not the release's fault: the rendering process could not run. Retried with backoff.
		return nil, outcome.Retry(clusterstackv1alpha1.ProgressingReason, fmt.Errorf("rendering the cluster-class chart: %w", err))
	case err != nil:
		// A template error or a chart over a budget (render.IsBudgetError): the same release
		// renders the same way again, so only a new release or a larger budget helps.
		return nil, outcome.Stall(clusterstackv1alpha1.InvalidReleaseReason, "Rendering the cluster-class chart: %s", err)
	}
	if err := checkClusterClass(objs, rel.Name.ClusterClassName()); err != nil {
		return nil, outcome.Stall(clusterstackv1alpha1.InvalidReleaseReason, "Nothing applied: %s", err)
	}
	if err := apply.SetDefaultNamespace(objs, csr.Namespace, r.Mapper); err != nil {
		if errors.Is(err, apply.ErrKindNotServed) {
			return nil, missingAPI(err)
		}
		return nil, fmt.Errorf("setting namespaces: %w", err)
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
		return nil, missingAPI(err)
	}
	return objs, nil
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

// missingAPI stalls naming the missing kinds and what provides them. CRDs are not watched (the
// operator may not list them), so the release looks again after a while.
func missingAPI(err error) error {
	msg := "Nothing applied: " + err.Error()
	if hints := installHints(missingKinds(err)); hints != "" {
		msg += ". " + hints
	}
	return outcome.StallRetry(clusterstackv1alpha1.MissingAPIReason, missingAPIRetryInterval, "%s", msg)
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

// apply applies the rendered objects, prunes what an earlier apply left behind, and records the
// inventory. ORC Images are never pruned while a Cluster uses the release: machines that exist
// still boot from them. Failures that need a human stall: a conflict with another field manager
// is not retried in a loop, since the operator never forces, and objects the operator may not
// write (RBAC) are not applied at all, nor any other object of the release.
//
// An apply that found everything as rendered is remembered under key (see convergence).
func (r *ClusterStackReleaseReconciler) apply(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease, objs []*unstructured.Unstructured, key string) error {
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
	// The Clusters using the release and the other releases are read side by side: two round
	// trips that do not depend on each other.
	var (
		inUse  resolver.Usage
		shared *sharing
		reads  errgroup.Group
	)
	if len(candidates) > 0 {
		// Only what is pruned depends on the Clusters using the release: without candidates the
		// fleet's Clusters are not listed.
		reads.Go(func() (err error) {
			inUse, err = resolver.ClustersByRelease(ctx, r.APIReader, csr.Namespace)
			return err
		})
	}
	reads.Go(func() (err error) {
		shared, err = r.readSharing(ctx, csr, append(refs, candidates...))
		return err
	})
	if err := reads.Wait(); err != nil {
		return err
	}
	applier := r.Applier
	if len(inUse[csr.Name].Clusters) > 0 {
		applier = r.Applier.WithKeepOnPrune(func(ref apply.Ref) bool {
			return ref.Group == orcImage.Group && ref.Kind == orcImage.Kind
		})
	}
	held, err := r.heldElsewhere(ctx, shared, candidates)
	if err != nil {
		return err
	}
	applier = applier.WithSharing(shared.writtenByOther, keyed(held))
	res, err := applier.Apply(ctx, objs, previous)
	var forbidden *apply.ForbiddenError
	if errors.As(err, &forbidden) {
		// RBAC is not watched: look again after a while, as for a missing CRD.
		return outcome.StallRetry(clusterstackv1alpha1.ForbiddenReason, forbiddenRetryInterval, "%s", forbiddenMessage(forbidden))
	}
	if err != nil {
		return outcome.Retry(clusterstackv1alpha1.ApplyFailedReason, err)
	}
	csr.Status.Resources = apply.ToResources(res)
	r.remember(csr, key, len(objs), res, shared)

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
		return nil
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
	if conflictsOnly {
		// Only whoever took the fields over can resolve this; the drift check looks again.
		return outcome.StallRetry(clusterstackv1alpha1.ApplyFailedReason, r.driftCheck(), "Applying: %s", strings.Join(failed, "; "))
	}
	return outcome.Retry(clusterstackv1alpha1.ApplyFailedReason, fmt.Errorf("applying: %s", strings.Join(failed, "; ")))
}

// forbiddenMessage names the kinds the operator may not write and the rules its ClusterRole
// lacks. It depends only on the denied permissions, so a release that keeps being refused costs
// no status writes, and the stall event is sent once, when the refusal starts.
func forbiddenMessage(fe *apply.ForbiddenError) string {
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
	return fmt.Sprintf("Nothing applied: the operator is not allowed to write %s. Its ClusterRole needs %s",
		strings.Join(kinds, ", "), strings.Join(grants, "; "))
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

// reconcileDelete removes what the release applied, once no Cluster uses its ClusterClass. It
// returns nil once the finalizer is gone, or the outcome of waiting.
func (r *ClusterStackReleaseReconciler) reconcileDelete(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease) error {
	if !controllerutil.ContainsFinalizer(csr, clusterstackv1alpha1.ClusterStackReleaseFinalizer) {
		return nil
	}
	inUse, err := resolver.ClustersByRelease(ctx, r.APIReader, csr.Namespace)
	if err != nil {
		return err
	}
	if users := inUse[csr.Name].Clusters; len(users) > 0 {
		// The Cluster watch brings the release back when a Cluster goes.
		return outcome.Wait(clusterstackv1alpha1.InUseReason, 0, "ClusterClass %s is used by Clusters %s: delete them or move them to another ClusterClass first", classNameOf(csr.Name), strings.Join(users, ", "))
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
		return err
	}
	held, err := r.heldElsewhere(ctx, shared, inventory)
	if err != nil {
		return err
	}
	remaining, err := r.Applier.WithSharing(nil, keyed(held)).Delete(ctx, inventory)
	csr.Status.Resources = apply.ToResources(apply.Result{Applied: remaining})
	if err != nil {
		return fmt.Errorf("deleting the objects of release %s: %w", csr.Name, err)
	}
	if len(remaining) > 0 {
		return outcome.Wait(clusterstackv1alpha1.DeletingReason, deleteWaitInterval, "Waiting for %d objects to be deleted", len(remaining))
	}
	if ref := csr.Spec.ProviderRef; ref != nil {
		// The garbage collector would delete it too; deleting it now frees its node images
		// without waiting for the collector.
		p := &infrav1alpha1.OpenStackClusterStackRelease{ObjectMeta: metav1.ObjectMeta{Namespace: csr.Namespace, Name: ref.Name}}
		if err := r.Client.Delete(ctx, p); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting %s %s: %w", providerKind, ref.Name, err)
		}
	}
	controllerutil.RemoveFinalizer(csr, clusterstackv1alpha1.ClusterStackReleaseFinalizer)
	return nil
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
