package clusteraddon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
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

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon"
	addonplan "github.com/seed-a720dd5e/clusterstack-operator/internal/addon/plan"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/chartdeps"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/reconciler"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/render"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/workloadcluster"
)

// Default waits of the ClusterAddon controller. Each bounds how late something the operator does
// not watch is noticed.
const (
	// DefaultClusterRetryInterval: kubeconfig Secrets are not watched (the operator does not cache
	// Secrets) and an unreachable API server sends no events.
	DefaultClusterRetryInterval = 20 * time.Second
	// DefaultConditionPollInterval: objects of workload clusters are not watched, so CEL
	// conditions are evaluated again this often.
	DefaultConditionPollInterval = 10 * time.Second
	// DefaultReleaseRetryInterval: a release that is not available yet (being downloaded).
	DefaultReleaseRetryInterval = 30 * time.Second
	// DefaultApplyRetryInterval: an apply that failed in the workload cluster.
	DefaultApplyRetryInterval = 30 * time.Second
	// DefaultDriftCheckInterval: converged addons are compared with the live objects this often,
	// to repair drift in workload clusters that are not watched.
	DefaultDriftCheckInterval = 5 * time.Minute
)

// ClusterAddonReconciler reconciles ClusterAddons: it renders the addons of a Cluster's release and applies
// them into its workload cluster, running the stages of the current hook first.
type ClusterAddonReconciler struct {
	Client client.Client
	// APIReader reads ClusterAddons from the API server: stage progress written by the last
	// reconcile must never be read back stale, or a stage would run twice.
	APIReader client.Reader
	// Mapper of the management cluster, to find the control plane and infrastructure objects.
	Mapper   meta.RESTMapper
	Releases Releases
	Renderer *addon.Renderer
	Workload *workloadcluster.Cache
	Recorder events.EventRecorder

	ClusterRetryInterval  time.Duration
	ConditionPollInterval time.Duration
	ReleaseRetryInterval  time.Duration
	ApplyRetryInterval    time.Duration
	DriftCheckInterval    time.Duration
	// Workers is how many ClusterAddons are reconciled at the same time; zero means
	// DefaultWorkers.
	Workers int

	// skeleton is the one reconcile shape (internal/reconciler) with this kind's steps.
	skeleton *reconciler.Kind[*csv1alpha1.ClusterAddon, report]

	// ownSpecWrites holds, per ClusterAddon UID, the generation of this controller's last spec write
	// whose spec the same reconcile fully observed.
	ownSpecWrites sync.Map
	// converged holds, per ClusterAddon UID, the convergedState of its last full drift check.
	converged sync.Map
}

// +kubebuilder:rbac:groups=clusterstack.x-k8s.io,resources=clusteraddons,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=clusterstack.x-k8s.io,resources=clusteraddons/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=clusterstack.x-k8s.io,resources=clusteraddons/finalizers,verbs=update
// +kubebuilder:rbac:groups=cluster.x-k8s.io,resources=clusters,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=controlplane.cluster.x-k8s.io;infrastructure.cluster.x-k8s.io,resources=*,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the controller. It watches Clusters for what changes the addons:
// the class (a release change), the initialized control plane, deletion.
func (r *ClusterAddonReconciler) SetupWithManager(mgr ctrl.Manager) error {
	workers := r.Workers
	if workers <= 0 {
		workers = DefaultWorkers
	}
	r.skeleton = &reconciler.Kind[*csv1alpha1.ClusterAddon, report]{
		Name: "ClusterAddon",
		New:  func() *csv1alpha1.ClusterAddon { return &csv1alpha1.ClusterAddon{} },
		// Stage progress written by the last reconcile must never be read back stale, or a
		// stage would run twice.
		Reader: r.APIReader,
		Client: r.Client,
		// No finalizer: see reconcileDelete.
		Normal:     r.reconcileNormal,
		Delete:     r.reconcileDelete,
		Status:     setClusterAddonStatus,
		Conditions: []string{csv1alpha1.ClusterReachableCondition, csv1alpha1.ResourcesAppliedCondition},
		// A Cluster that is gone says nothing about the spec, and the ClusterAddon goes with it;
		// a paused one was not looked at.
		Observed: func(rep report) bool { return !rep.gone && rep.paused == "" && outcome.Settled(rep.err) },
		Recorder: r.Recorder,
		// A workload cluster that does not answer or has no usable kubeconfig, objects it
		// refused or whose kind it does not serve, a chart repository that does not answer;
		// waiting for the control plane, a release or a stage's condition is no failure.
		FailureReasons: []string{csv1alpha1.ClusterUnreachableReason, csv1alpha1.KubeconfigInvalidReason, csv1alpha1.ApplyFailedReason,
			csv1alpha1.MissingAPIReason, csv1alpha1.DependencyUnavailableReason},
		Patch: r.patch,
	}
	return reconciler.NewController(mgr, "clusteraddon").
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		For(&csv1alpha1.ClusterAddon{}, predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, pauseAnnotationChanged), predicate.Funcs{UpdateFunc: r.notOwnSpecWrite, DeleteFunc: r.forgetSpecWrites}).
		Watches(&clusterv1.Cluster{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: addon.ClusterAddonName(o.GetName())}}}
		}), clusterChanged).
		Complete(r)
}

// notOwnSpecWrite drops the update event of a spec write this controller made with everything the
// new generation holds already observed (see patch): reconciling it would only find the work done.
// The record is in memory, so after a restart such an event costs one reconcile that writes
// nothing, as does any event with a generation no write of ours made.
//
// The record is keyed by UID, so a re-created ClusterAddon of the same name never inherits one.
// It is made before the write, with the generation the write makes when nobody else writes the
// spec in between; when someone does, patch drops it, and at worst an event passes that did not
// need to: one reconcile too many, never one too few.
func (r *ClusterAddonReconciler) notOwnSpecWrite(e event.UpdateEvent) bool {
	gen, ok := r.ownSpecWrites.LoadAndDelete(e.ObjectNew.GetUID())
	return !ok || gen.(int64) != e.ObjectNew.GetGeneration()
}

func (r *ClusterAddonReconciler) forgetSpecWrites(e event.DeleteEvent) bool {
	r.ownSpecWrites.Delete(e.Object.GetUID())
	r.converged.Delete(e.Object.GetUID())
	return true
}

// clusterChanged passes Cluster events that matter to addons (the class, the initialized control
// plane, pausing and resuming, deletion), and not the frequent status updates of a running
// Cluster.
var clusterChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*clusterv1.Cluster)
		n, ok2 := e.ObjectNew.(*clusterv1.Cluster)
		if !ok1 || !ok2 {
			return false
		}
		return o.Generation != n.Generation || controlPlaneInitialized(o) != controlPlaneInitialized(n) ||
			clusterPauseChanged.Update(e) || !n.DeletionTimestamp.IsZero()
	},
}

func controlPlaneInitialized(c *clusterv1.Cluster) bool {
	if p := c.Status.Initialization.ControlPlaneInitialized; p != nil {
		return *p
	}
	return conditions.IsTrue(c, clusterv1.ClusterControlPlaneInitializedCondition)
}

func (r *ClusterAddonReconciler) interval(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Reconcile runs the ClusterAddon's steps on the one reconcile skeleton (internal/reconciler).
func (r *ClusterAddonReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return r.skeleton.Reconcile(ctx, req)
}

// patch writes what a reconcile changed in at most two requests: spec and metadata first, then
// the whole status. It replaces Cluster API's patch helper, which sends the conditions in a
// request of their own (to merge them with other controllers' conditions, with retries on
// conflicts) and so costs a third write whenever conditions and other status fields change
// together. This controller is the only writer of a ClusterAddon's status, so one status patch
// is enough. The skeleton calls it as its Patch.
//
// A spec change made by a reconcile is its own decision (the release it installs, a finished
// hook), taken from the state the status describes. So the status records the generation of
// that spec write: recording the generation read would leave status.observedGeneration one
// behind, and the watch event of the spec write would cost another status write that only moves
// it. observedGeneration moves only when the reconcile succeeded (STYLE.md 5).
func (r *ClusterAddonReconciler) patch(ctx context.Context, before, ca *csv1alpha1.ClusterAddon, succeeded bool) error {
	var errs []error
	specChanged := !equality.Semantic.DeepEqual(before.Spec, ca.Spec)
	if specChanged || !equality.Semantic.DeepEqual(before.ObjectMeta, ca.ObjectMeta) {
		// The status of a custom resource with a status subresource is ignored here; leaving it
		// out keeps the request small.
		written := ca.DeepCopy()
		written.Status = before.Status
		read := ca.Generation
		if specChanged {
			// Recorded before the write: its watch event may be handled before Patch returns,
			// and would cost a reconcile (with a rendering) that finds the work done.
			r.ownSpecWrites.Store(ca.UID, read+1)
		}
		if err := r.Client.Patch(ctx, written, client.MergeFrom(before)); err != nil {
			r.ownSpecWrites.CompareAndDelete(ca.UID, read+1)
			errs = append(errs, fmt.Errorf("patching the spec of ClusterAddon: %w", err))
			succeeded = false
		} else {
			ca.ObjectMeta = written.ObjectMeta
			// Another writer's spec change that landed in between (the hooks server sets
			// spec.hook) was not seen by this reconcile: then its generation is not observed,
			// and the event of that change brings the next reconcile (the record made before
			// the write is dropped, so that no event of that change is taken for ours).
			if equality.Semantic.DeepEqual(written.Spec, ca.Spec) {
				r.ownSpecWrites.Store(ca.UID, written.Generation)
				for i := range ca.Status.Conditions {
					if ca.Status.Conditions[i].ObservedGeneration == read {
						ca.Status.Conditions[i].ObservedGeneration = written.Generation
					}
				}
			} else {
				r.ownSpecWrites.CompareAndDelete(ca.UID, read+1)
				ca.Generation = read
				succeeded = false
			}
		}
	}
	if succeeded {
		ca.Status.ObservedGeneration = ca.Generation
	}

	base := ca.DeepCopy()
	base.Status = before.Status
	data, err := client.MergeFrom(base).Data(ca)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("computing the status patch of ClusterAddon: %w", err))...)
	}
	if !bytes.Equal(data, []byte("{}")) {
		if err := r.Client.Status().Patch(ctx, ca, client.RawPatch(types.MergePatchType, data)); err != nil {
			errs = append(errs, fmt.Errorf("patching the status of ClusterAddon: %w", err))
		}
	}
	return errors.Join(errs...)
}

// reconcileDelete removes the reference operator's finalizer, if any (the deferred patch writes
// it). Addons are not deleted from the workload cluster: a ClusterAddon goes away with its
// Cluster, and removing a CNI from a live cluster because someone deleted the ClusterAddon would
// break it (the Cluster controller re-creates the ClusterAddon, which adopts the objects again).
// This controller does not add the finalizer for the same reason.
func (r *ClusterAddonReconciler) reconcileDelete(_ context.Context, ca *csv1alpha1.ClusterAddon) report {
	if ca.Spec.ClusterRef != nil {
		r.Workload.Drop(types.NamespacedName{Namespace: ca.Namespace, Name: ca.Spec.ClusterRef.Name})
	}
	r.converged.Delete(ca.UID)
	controllerutil.RemoveFinalizer(ca, csv1alpha1.ClusterAddonFinalizer)
	return report{gone: true}
}

// plan is the addon plan of one release.
type plan struct {
	rel *release.Release
	// cfg is clusteraddon.yaml; nil for the cluster-addon-values.yaml convention.
	cfg *addonplan.Config
	// addonDir is the extracted addon archive (clusteraddon.yaml convention).
	addonDir string
}

// umbrellaStage is the one stage of the cluster-addon-values.yaml convention.
const umbrellaStage = "cluster-addon"

// stages returns the stages of a hook.
func (p *plan) stages(hook string) []addonplan.Stage {
	if p.cfg == nil {
		return []addonplan.Stage{{Name: umbrellaStage, Action: addonplan.ActionApply}}
	}
	return p.cfg.Stages(hook)
}

// renderStage renders the objects of one chart as they are applied to the workload cluster of t:
// namespaced objects without a namespace go to addon.DefaultNamespace. A chart is rendered once
// per reconcile (t.rendered): the steady state applies the charts the hook's stages just applied,
// with the same input, and each rendering is a child process.
func (r *ClusterAddonReconciler) renderStage(ctx context.Context, p *plan, chart string, t *target) ([]*unstructured.Unstructured, error) {
	if objs, ok := t.rendered[chart]; ok {
		return objs, nil
	}
	var objs []*unstructured.Unstructured
	var err error
	if p.cfg == nil {
		objs, err = r.Renderer.RenderUmbrella(ctx, p.rel, t.in)
	} else {
		objs, err = r.Renderer.RenderChart(ctx, p.addonDir, chart, t.in)
	}
	if err != nil {
		return nil, err
	}
	// An unknown kind is not the release's fault yet: its CRD may come with a later stage.
	if err := apply.SetDefaultNamespace(objs, addon.DefaultNamespace, t.cluster.Mapper); err != nil {
		return nil, err
	}
	t.rendered[chart] = objs // Apply and Delete only read the objects
	return objs, nil
}

// renderSteady renders every addon a Cluster of this release runs once installed.
func (r *ClusterAddonReconciler) renderSteady(ctx context.Context, p *plan, t *target) ([]*unstructured.Unstructured, error) {
	if p.cfg == nil {
		objs, err := r.renderStage(ctx, p, umbrellaStage, t)
		if err == nil && len(objs) == 0 {
			err = fmt.Errorf("%w: the umbrella chart %s renders nothing", addon.ErrNothingRendered, filepath.Base(p.rel.ClusterAddonArchive))
		}
		return objs, err
	}
	var all []*unstructured.Unstructured
	charts := p.cfg.SteadyCharts()
	for _, chart := range charts {
		objs, err := r.renderStage(ctx, p, chart, t)
		if err != nil {
			return nil, err
		}
		all = append(all, objs...)
	}
	if len(all) == 0 && len(charts) > 0 {
		return nil, fmt.Errorf("%w: the addon plan applies charts %s, but together they render nothing", addon.ErrNothingRendered, strings.Join(charts, ", "))
	}
	return all, nil
}

// reconcileNormal runs the steps of a live ClusterAddon, each reporting why it stopped short of
// done (package outcome); setClusterAddonStatus turns the report into conditions.
func (r *ClusterAddonReconciler) reconcileNormal(ctx context.Context, ca *csv1alpha1.ClusterAddon) report {
	cluster, err := r.clusterOf(ctx, ca)
	if err != nil {
		return report{err: err}
	}
	if cluster == nil {
		return report{gone: true}
	}
	if paused, msg := clusterPaused(cluster); paused {
		// Nothing is decided or applied: the Cluster may be on its way to another management
		// cluster, whose operator takes over from this ClusterAddon's status.
		return report{paused: msg}
	}
	ref, err := decideRelease(ctx, ca, cluster)
	if err != nil {
		return report{err: err}
	}
	p, err := r.loadPlan(ctx, ref)
	if err != nil {
		return report{err: err}
	}
	wc, err := r.connect(ctx, client.ObjectKeyFromObject(cluster))
	if err != nil {
		rep := report{err: err}
		if _, ok := outcome.AsWaiting(err); ok {
			rep.reached = ptr.To(false)
		}
		return rep
	}
	t, err := r.newTarget(ctx, ca, cluster, p, wc)
	hookRan := ca.Spec.Hook != ""
	if err == nil {
		err = r.runHook(ctx, ca, p, t)
	}
	if err != nil {
		return report{err: err, reached: ptr.To(true)}
	}
	msg, err := r.holdSteadyState(ctx, ca, p, t, hookRan)
	return report{err: err, reached: ptr.To(true), readyMsg: msg, requeue: r.nextDriftCheck(ca.UID)}
}

// clusterOf returns the ClusterAddon's Cluster, nil when it is gone.
func (r *ClusterAddonReconciler) clusterOf(ctx context.Context, ca *csv1alpha1.ClusterAddon) (*clusterv1.Cluster, error) {
	if ca.Spec.ClusterRef == nil {
		// Only a user can help, by fixing spec.clusterRef.
		return nil, outcome.Stall(csv1alpha1.InvalidReleaseReason, "spec.clusterRef is not set")
	}
	key := types.NamespacedName{Namespace: ca.Namespace, Name: ca.Spec.ClusterRef.Name}
	cluster := &clusterv1.Cluster{}
	if err := r.Client.Get(ctx, key, cluster); err != nil {
		if apierrors.IsNotFound(err) {
			// The ClusterAddon is garbage collected with its Cluster.
			r.Workload.Drop(key)
			return nil, nil
		}
		return nil, fmt.Errorf("reading Cluster %s: %w", key, err)
	}
	return cluster, nil
}

// decideRelease returns the release the Cluster's class names. A class new to the ClusterAddon
// starts that release's hook from its first stage; a first install waits for the control plane.
func decideRelease(ctx context.Context, ca *csv1alpha1.ClusterAddon, cluster *clusterv1.Cluster) (resolver.Ref, error) {
	class := cluster.Spec.Topology.ClassRef.Name
	ref, ok := resolver.ReleaseOfCluster(cluster)
	if !ok {
		return ref, outcome.Stall(csv1alpha1.InvalidReleaseReason, "Cluster %s does not use a cluster-stack ClusterClass (class %q)", cluster.Name, class)
	}
	if ca.Spec.ClusterStack == "" && ca.Spec.Hook != csv1alpha1.HookAfterControlPlaneInitialized && !controlPlaneInitialized(cluster) {
		return ref, outcome.Wait(csv1alpha1.ControlPlaneNotInitializedReason, 0, "Waiting for the control plane of Cluster %s to be initialized", cluster.Name)
	}
	if ca.Spec.ClusterStack != class {
		// A new release: start its hook from the first stage. Whatever the previous release was
		// doing is abandoned, which is how a Cluster leaves a faulty release. The same path
		// serves class changes that keep the Kubernetes version, for which Cluster API calls no
		// hook.
		hook := csv1alpha1.HookBeforeClusterUpgrade
		if ca.Spec.ClusterStack == "" {
			hook = csv1alpha1.HookAfterControlPlaneInitialized
		}
		ctrl.LoggerFrom(ctx).Info("Installing the addons of a release", "ClusterClass", class, "Hook", hook, "Previous", ca.Spec.ClusterStack)
		ca.Spec.ClusterStack = class
		ca.Spec.Hook = hook
		ca.Spec.Version = ""
		ca.Status.Stages = nil
	}
	return ref, nil
}

// loadPlan returns the verified release ref names and its addon plan. The plan was parsed and
// checked when the release was loaded (an invalid one is an invalid release); what can fail here
// besides getting the release is extracting the addon archive.
func (r *ClusterAddonReconciler) loadPlan(ctx context.Context, ref resolver.Ref) (*plan, error) {
	rn := ref.Release
	rel, err := r.Releases.ReleaseFor(ctx, ref.Namespace, rn)
	if err != nil {
		return nil, r.releaseFailed(rn, err)
	}
	p := &plan{rel: rel}
	if rel.AddonConvention != release.AddonConventionConfig {
		return p, nil
	}
	p.cfg = rel.AddonPlan
	if p.addonDir, err = r.Renderer.Extract(rel); err != nil {
		return nil, fmt.Errorf("loading the addons of release %s: %w", rn, err)
	}
	return p, nil
}

// releaseFailed maps the class of a release error (resolver.Classify, the one classification
// of the release domain) to the ClusterAddon's outcome.
func (r *ClusterAddonReconciler) releaseFailed(rn name.Release, err error) error {
	retry := r.interval(r.ReleaseRetryInterval, DefaultReleaseRetryInterval)
	switch resolver.Classify(err) {
	case resolver.FailureInvalid:
		// A release does not change under its name: only moving the Cluster to another helps.
		return outcome.Stall(csv1alpha1.InvalidReleaseReason, "Release %s is invalid: %v", rn, err)
	case resolver.FailureSource:
		// The ClusterStack or its Secret must be fixed; neither is watched here.
		return outcome.StallRetry(csv1alpha1.ReleaseSourceErrorReason, retry, "Release %s cannot be read from its source: %v", rn, err)
	case resolver.FailureNotYet:
		return outcome.Wait(csv1alpha1.ReleaseNotAvailableReason, retry, "Release %s is not available yet: %v", rn, err)
	}
	return outcome.Retry(csv1alpha1.ReleaseNotAvailableReason, fmt.Errorf("getting release %s: %w", rn, err))
}

// connect returns the workload cluster, or why it cannot be reached (a *outcome.Waiting); any
// other error is a failed read of the kubeconfig Secret in the management cluster, retried with
// backoff and no news about the workload cluster.
func (r *ClusterAddonReconciler) connect(ctx context.Context, cluster types.NamespacedName) (*workloadcluster.Cluster, error) {
	wc, err := r.Workload.Get(ctx, cluster)
	if err == nil {
		err = wc.Ping(ctx)
	}
	if err == nil {
		return wc, nil
	}
	var reason, msg string
	switch {
	case errors.Is(err, workloadcluster.ErrUnreachable):
		reason = csv1alpha1.ClusterUnreachableReason
		msg = fmt.Sprintf("The API server of workload cluster %s does not answer", cluster.Name)
	case errors.Is(err, workloadcluster.ErrKubeconfigMissing):
		reason = csv1alpha1.KubeconfigMissingReason
		msg = fmt.Sprintf("Waiting for the kubeconfig Secret %s (key %q)", workloadcluster.SecretName(cluster.Name), workloadcluster.KubeconfigKey)
	case errors.Is(err, workloadcluster.ErrKubeconfigInvalid):
		reason = csv1alpha1.KubeconfigInvalidReason
		msg = fmt.Sprintf("The kubeconfig Secret %s holds no usable kubeconfig", workloadcluster.SecretName(cluster.Name))
	default:
		return nil, fmt.Errorf("connecting to workload cluster %s: %w", cluster.Name, err)
	}
	// The error text of an unreachable server carries no timestamps, but it may carry a
	// changing port or request ID; the message stays fixed so that a waiting ClusterAddon costs
	// no writes.
	ctrl.LoggerFrom(ctx).V(4).Info("Workload cluster not reachable", "Reason", reason, "Error", err.Error())
	return nil, outcome.Wait(reason, r.interval(r.ClusterRetryInterval, DefaultClusterRetryInterval), "%s", msg)
}

// target is where a reconcile installs addons: the workload cluster, an applier for it, and the
// input its charts are rendered with.
type target struct {
	cluster *workloadcluster.Cluster
	applier *apply.Applier
	in      addon.Input
	// class is the Cluster's ClusterClass, for messages and events.
	class string
	// rendered holds the charts rendered in this reconcile, by chart (renderStage).
	rendered map[string][]*unstructured.Unstructured
}

// newTarget returns where this reconcile installs the addons of p for cluster.
func (r *ClusterAddonReconciler) newTarget(ctx context.Context, ca *csv1alpha1.ClusterAddon, cluster *clusterv1.Cluster, p *plan, wc *workloadcluster.Cluster) (*target, error) {
	data, err := r.templateData(ctx, cluster)
	if err != nil {
		return nil, err
	}
	return &target{
		cluster: wc,
		// The target lives for one reconcile, whose stages and steady state apply the same
		// objects one after the other: what it just wrote is not read again.
		// The objects carry the ClusterAddon's UID as their inventory, for cheap drift checks.
		applier:  &apply.Applier{Client: wc.Client, FieldManager: FieldManager, TrustOwnWrites: true, Inventory: string(ca.UID)},
		in:       addon.Input{KubeVersion: p.rel.Metadata.Versions.Kubernetes, Data: data},
		class:    cluster.Spec.Topology.ClassRef.Name,
		rendered: map[string][]*unstructured.Unstructured{},
	}, nil
}

// runHook runs the stages of the hook in spec.hook as far as they go now, and ends the hook when
// all are done.
func (r *ClusterAddonReconciler) runHook(ctx context.Context, ca *csv1alpha1.ClusterAddon, p *plan, t *target) error {
	if ca.Spec.Hook == "" {
		return nil
	}
	stages := p.stages(ca.Spec.Hook)
	if !sameStages(ca.Status.Stages, stages) {
		ca.Status.Stages = make([]csv1alpha1.StageStatus, len(stages))
		for i, s := range stages {
			ca.Status.Stages[i] = csv1alpha1.StageStatus{Name: s.Name, Action: csv1alpha1.StageAction(s.Action), Phase: csv1alpha1.StagePhasePending}
		}
	}
	for i := range stages {
		if err := r.runStage(ctx, ca, p, stages[i], &ca.Status.Stages[i], t); err != nil {
			return err
		}
	}
	ctrl.LoggerFrom(ctx).Info("Finished the stages of a hook", "Hook", ca.Spec.Hook, "ClusterClass", t.class)
	r.Recorder.Eventf(ca, nil, corev1.EventTypeNormal, "HookDone", ca.Spec.Hook, "Ran the %d %s stages of %s", len(stages), ca.Spec.Hook, t.class)
	ca.Spec.Hook = ""
	return nil
}

// runStage advances one stage as far as it goes now: nil when the stage is done, else why not.
func (r *ClusterAddonReconciler) runStage(ctx context.Context, ca *csv1alpha1.ClusterAddon, p *plan, st addonplan.Stage, status *csv1alpha1.StageStatus, t *target) error {
	poll := r.interval(r.ConditionPollInterval, DefaultConditionPollInterval)
	for {
		switch status.Phase {
		case csv1alpha1.StagePhasePending, "":
			status.Phase = csv1alpha1.StagePhaseApplyingOrDeleting
			if st.WaitForPreCondition != nil {
				status.Phase = csv1alpha1.StagePhaseWaitingForPreCondition
			}
		case csv1alpha1.StagePhaseWaitingForPreCondition:
			res, err := st.WaitForPreCondition.Evaluate(ctx, t.cluster.Client)
			if err != nil {
				return fmt.Errorf("evaluating the pre-condition of stage %s: %w", st.Name, err)
			}
			if !res.Met {
				return outcome.Wait(csv1alpha1.WaitingForPreConditionReason, poll, "%s stage %s: waiting for its pre-condition: %s", ca.Spec.Hook, st.Name, res.Reason)
			}
			status.Phase = csv1alpha1.StagePhaseApplyingOrDeleting
		case csv1alpha1.StagePhaseApplyingOrDeleting:
			if err := r.applyStage(ctx, ca, p, st, t); err != nil {
				return err
			}
			status.Phase = csv1alpha1.StagePhaseDone
			if st.WaitForPostCondition != nil {
				status.Phase = csv1alpha1.StagePhaseWaitingForPostCondition
			}
		case csv1alpha1.StagePhaseWaitingForPostCondition:
			res, err := st.WaitForPostCondition.Evaluate(ctx, t.cluster.Client)
			if err != nil {
				return fmt.Errorf("evaluating the post-condition of stage %s: %w", st.Name, err)
			}
			if !res.Met {
				return outcome.Wait(csv1alpha1.WaitingForPostConditionReason, poll, "%s stage %s: waiting for its post-condition: %s", ca.Spec.Hook, st.Name, res.Reason)
			}
			status.Phase = csv1alpha1.StagePhaseDone
		case csv1alpha1.StagePhaseDone:
			return nil
		default:
			status.Phase = csv1alpha1.StagePhasePending
		}
	}
}

// applyStage applies (or deletes) the objects of one stage, recording them in status.resources.
func (r *ClusterAddonReconciler) applyStage(ctx context.Context, ca *csv1alpha1.ClusterAddon, p *plan, st addonplan.Stage, t *target) error {
	retry := r.interval(r.ApplyRetryInterval, DefaultApplyRetryInterval)
	objs, err := r.renderStage(ctx, p, st.Name, t)
	if err != nil {
		return r.renderFailed(ctx, p.rel.Name.String(), err)
	}
	if st.Action == addonplan.ActionDelete {
		refs := make([]apply.Ref, 0, len(objs))
		for _, o := range objs {
			refs = append(refs, apply.RefOf(o))
		}
		remaining, err := t.applier.Delete(ctx, refs)
		ca.Status.Resources = withoutDeleted(ca.Status.Resources, refs, remaining)
		if err != nil || len(remaining) > 0 {
			return failedApply(outcome.Wait(csv1alpha1.ApplyFailedReason, retry, "%s stage %s: deleting: %d objects remain: %v", ca.Spec.Hook, st.Name, len(remaining), err))
		}
		return nil
	}
	result, err := t.applier.Apply(ctx, objs, nil)
	if err != nil {
		return fmt.Errorf("applying stage %s: %w", st.Name, err)
	}
	ca.Status.Resources = merge(ca.Status.Resources, apply.ToResources(result))
	if err := result.Err(); err != nil {
		return failedApply(outcome.Wait(applyFailedReason(err), retry, "%s stage %s: %v", ca.Spec.Hook, st.Name, err))
	}
	return nil
}

// holdSteadyState applies everything the release runs and prunes what it no longer renders. It
// returns Ready's message. hookRan says that the stages of a hook ran in this reconcile: what
// they wrote is looked at, however recent the last look.
func (r *ClusterAddonReconciler) holdSteadyState(ctx context.Context, ca *csv1alpha1.ClusterAddon, p *plan, t *target, hookRan bool) (string, error) {
	wasReady := conditions.IsTrue(ca, csv1alpha1.ReadyCondition)
	rel := p.rel.Name.String()
	applied := fmt.Sprintf("%d addon objects of %s applied", len(ca.Status.Resources), t.class)
	input, inputErr := steadyDigest(rel, t.in, ca.Status.Resources)
	if inputErr == nil && r.stillConverged(ctx, ca, t, func(s convergedState) bool { return s.input == input }, hookRan) {
		return applied, nil
	}
	desired, err := r.renderSteady(ctx, p, t)
	if err != nil {
		r.converged.Delete(ca.UID)
		return "", r.renderFailed(ctx, p.rel.Name.String(), err)
	}
	// A changed input (the Cluster's status changes the values templates' data) often renders
	// the same objects.
	if output, err := outputDigest(desired, ca.Status.Resources); err == nil && r.stillConverged(ctx, ca, t, func(s convergedState) bool { return s.output == output }, hookRan) {
		if inputErr == nil {
			r.recordInput(ca.UID, input)
		}
		return applied, nil
	}
	r.converged.Delete(ca.UID)
	result, err := t.applier.Apply(ctx, desired, apply.FromResources(ca.Status.Resources))
	if err != nil {
		return "", failedApply(outcome.Retry(csv1alpha1.ApplyFailedReason, fmt.Errorf("applying addons of %s: %w", t.class, err)))
	}
	ca.Status.Resources = apply.ToResources(result)
	if err := result.Err(); err != nil {
		return "", failedApply(outcome.Wait(applyFailedReason(err), r.interval(r.ApplyRetryInterval, DefaultApplyRetryInterval), "Applying addons of %s: %v", t.class, err))
	}
	if len(result.Changed) > 0 || len(result.Pruned) > 0 {
		if wasReady {
			r.Recorder.Eventf(ca, nil, corev1.EventTypeWarning, "DriftRepaired", "Apply", "Re-applied %s; pruned %s", refList(result.Changed), refList(result.Pruned))
		} else {
			r.Recorder.Eventf(ca, nil, corev1.EventTypeNormal, "AddonsApplied", "Apply", "Applied %d objects of %s, pruned %d", len(result.Changed), t.class, len(result.Pruned))
		}
	}
	if v, err := p.rel.Metadata.AddonVersion(); err == nil {
		ca.Spec.Version = v.String()
	}
	r.recordConverged(ca, rel, t.in, desired, result)
	return fmt.Sprintf("%d addon objects of %s applied", len(result.Applied), t.class), nil
}

// applyFailedReason is the reason of objects the workload cluster refused: a kind it does not
// serve (yet) is MissingAPI.
func applyFailedReason(err error) string {
	if errors.Is(err, apply.ErrKindNotServed) {
		return csv1alpha1.MissingAPIReason
	}
	return csv1alpha1.ApplyFailedReason
}

// renderFailed classifies a rendering error. A chart or values template that fails is the
// release's fault: the ClusterAddon is stalled until the Cluster moves to another release. A kind
// the workload cluster does not serve yet may come with a later CRD, so that one is retried; so
// is a values template that fails on the Cluster's current state, which the Cluster's progress
// heals. A chart dependency that cannot be fetched is retried when its repository is unavailable,
// and stalls the ClusterAddon when it cannot be resolved as declared (retried slowly, since the
// repository may be fixed without any event here).
func (r *ClusterAddonReconciler) renderFailed(ctx context.Context, rel string, err error) error {
	var dep *chartdeps.DependencyError
	switch {
	case errors.Is(err, render.ErrRenderUnavailable), ctx.Err() != nil:
		// Not the release's fault: the rendering process could not run. Retried with backoff.
		return fmt.Errorf("rendering addons of release %s: %w", rel, err)
	case errors.Is(err, apply.ErrKindNotServed):
		return failedApply(outcome.Wait(csv1alpha1.MissingAPIReason, r.interval(r.ApplyRetryInterval, DefaultApplyRetryInterval), "Release %s: %v", rel, err))
	case errors.Is(err, addon.ErrValuesNotReady):
		return outcome.Wait(csv1alpha1.WaitingForClusterReason, r.interval(r.ConditionPollInterval, DefaultConditionPollInterval), "Release %s: waiting for the Cluster: %v", rel, err)
	case errors.Is(err, chartdeps.ErrUnavailable) && errors.As(err, &dep):
		// The cause of an unreachable repository may carry changing details (local ports); the
		// message stays fixed so that a waiting ClusterAddon costs no writes.
		ctrl.LoggerFrom(ctx).Info("Chart repository unavailable", "Chart", dep.Parent, "Dependency", dep.Name, "Error", err.Error())
		return outcome.Wait(csv1alpha1.DependencyUnavailableReason, r.interval(r.ReleaseRetryInterval, DefaultReleaseRetryInterval),
			"Release %s: dependency %s %s of chart %s: repository %s is unavailable; retrying", rel, dep.Name, dep.Version, dep.Parent, dep.Repository)
	case errors.Is(err, chartdeps.ErrUnavailable):
		return fmt.Errorf("rendering addons of release %s: %w", rel, err)
	case errors.Is(err, chartdeps.ErrUnresolvable):
		return outcome.StallRetry(csv1alpha1.DependencyUnresolvableReason, r.interval(r.DriftCheckInterval, DefaultDriftCheckInterval), "Release %s: %v", rel, err)
	case errors.Is(err, addon.ErrRender):
		return outcome.Stall(csv1alpha1.InvalidReleaseReason, "Release %s: %v", rel, err)
	}
	return fmt.Errorf("rendering addons of release %s: %w", rel, err)
}

// templateData returns the objects the values templates see: the Cluster, its control plane and
// its infrastructure cluster, as unstructured content. A referenced object that does not exist
// (yet) is left out rather than failing: templates that use it render empty values.
func (r *ClusterAddonReconciler) templateData(ctx context.Context, cluster *clusterv1.Cluster) (map[string]any, error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(cluster)
	if err != nil {
		return nil, fmt.Errorf("converting Cluster %s: %w", cluster.Name, err)
	}
	content["apiVersion"] = clusterv1.GroupVersion.String()
	content["kind"] = "Cluster"
	data := map[string]any{"Cluster": content}
	for key, ref := range map[string]clusterv1.ContractVersionedObjectReference{
		"ControlPlane": cluster.Spec.ControlPlaneRef,
		"InfraCluster": cluster.Spec.InfrastructureRef,
	} {
		if ref.Kind == "" || ref.Name == "" {
			continue
		}
		mapping, err := r.Mapper.RESTMapping(schema.GroupKind{Group: ref.APIGroup, Kind: ref.Kind})
		if err != nil {
			if meta.IsNoMatchError(err) {
				continue
			}
			return nil, fmt.Errorf("finding the API of %s %s: %w", ref.Kind, ref.Name, err)
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(mapping.GroupVersionKind)
		if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: cluster.Namespace, Name: ref.Name}, u); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("reading %s %s: %w", ref.Kind, ref.Name, err)
		}
		data[key] = u.Object
	}
	return data, nil
}

func sameStages(status []csv1alpha1.StageStatus, stages []addonplan.Stage) bool {
	return slices.EqualFunc(status, stages, func(s csv1alpha1.StageStatus, st addonplan.Stage) bool {
		return s.Name == st.Name && string(s.Action) == string(st.Action)
	})
}

func refList(refs []apply.Ref) string {
	if len(refs) == 0 {
		return "nothing"
	}
	s := make([]string, len(refs))
	for i, r := range refs {
		s[i] = r.String()
	}
	return strings.Join(s, ", ")
}
