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
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/reconciler"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
)

const (
	// DefaultReleaseCheckInterval is how often a source is asked for new releases when neither
	// the operator flag nor the ClusterStack says otherwise.
	DefaultReleaseCheckInterval = 5 * time.Minute
	// checkJitter spreads the source checks of many ClusterStacks so that they do not hit the
	// registry at the same moment after a restart.
	checkJitter = 0.2
	// deletionWaitInterval is how often a ClusterStack being deleted looks at releases whose own
	// deletion it waits for, besides the watch on them.
	deletionWaitInterval = 30 * time.Second
	// parallelReleaseWrites bounds the releases (with their provider objects) one reconcile
	// creates or updates at once.
	parallelReleaseWrites = 4
	// providerKind is the kind of the provider objects made from templates.
	providerKind = "OpenStackClusterStackRelease"
	// providerTemplateKind is the kind spec.providerRef must point at.
	providerTemplateKind = "OpenStackClusterStackReleaseTemplate"
)

// Reasons of the ClusterStack's conditions that are specific to this controller.
const (
	// ProviderTemplateErrorReason means spec.providerRef does not point at a usable template.
	ProviderTemplateErrorReason = "ProviderTemplateError"
	// ReleasesNotReadyReason means some desired releases exist but are not ready yet.
	ReleasesNotReadyReason = "ReleasesNotReady"
)

// ClusterStackReconciler makes the ClusterStackReleases of a ClusterStack exist: the listed
// versions, the newest release of the channel with autoSubscribe, and every release a Cluster of
// the namespace uses; it removes the releases nobody wants any more.
type ClusterStackReconciler struct {
	Client client.Client
	// APIReader reads Clusters from the API server for the in-use checks that decide what is
	// deleted: a Cluster created a moment ago may not be in the cache yet, and a release it uses
	// must not be garbage-collected for that. Only a reconcile that would delete reads it.
	APIReader client.Reader
	Releases  *resolver.Resolver
	Recorder  events.EventRecorder
	// CheckInterval is the default interval of source checks; zero means
	// DefaultReleaseCheckInterval.
	CheckInterval time.Duration
	// ProviderFinalizer is given to the provider objects it creates (see Options).
	ProviderFinalizer string
	// Workers is how many ClusterStacks are reconciled at the same time; zero means the
	// manager's default (one).
	Workers int

	mu sync.Mutex
	// checks remembers the last source check per ClusterStack. It lives in memory on purpose: a
	// restarted operator checks every source once, which is what it should do anyway.
	checks map[types.NamespacedName]*sourceCheck
}

// sourceCheck is the outcome of the last listing of a ClusterStack's source.
type sourceCheck struct {
	// uid tells a recreated ClusterStack of the same name from the old one.
	uid        types.UID
	generation int64
	next       time.Time
	// known is true once a listing succeeded; latest is only meaningful then, and stays at the
	// last good value while the source fails, so that an outage never garbage-collects releases.
	// latest is nil when the source holds no release cs provides.
	known  bool
	latest *name.Release
	// listed are the releases of cs's stack (resolver.OfStack) in the last successful listing:
	// what spec.versions may ask for.
	listed []name.Release
	// err is the failure of the last listing, classified (sourceFailure): a stall or a
	// transient failure.
	err error
}

// +kubebuilder:rbac:groups=clusterstack.x-k8s.io,resources=clusterstacks,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=clusterstack.x-k8s.io,resources=clusterstacks/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=clusterstack.x-k8s.io,resources=clusterstacks/finalizers,verbs=update
// +kubebuilder:rbac:groups=clusterstack.x-k8s.io,resources=clusterstackreleases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=infrastructure.clusterstack.x-k8s.io,resources=openstackclusterstackreleasetemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=infrastructure.clusterstack.x-k8s.io,resources=openstackclusterstackreleases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=cluster.x-k8s.io,resources=clusters,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the controller.
func (r *ClusterStackReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.checks = map[types.NamespacedName]*sourceCheck{}
	return reconciler.NewController(mgr, "clusterstack").
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Workers}).
		// The source check (a registry listing) of the stacks found at the start runs while the
		// Clusters' cache fills: the releases, Clusters and templates are read through the
		// cache, which waits for them.
		StartOnForSync().
		// Its own status writes do not bring a ClusterStack back: nothing it computes depends
		// on its status.
		For(&clusterstackv1alpha1.ClusterStack{}, notOnlyStatusChanged).
		// The releases it controls, their mere progress shown a moment later, coalesced.
		Watches(&clusterstackv1alpha1.ClusterStackRelease{}, reconciler.EnqueueControllerOnProgress(clusterstackv1alpha1.GroupVersion.WithKind("ClusterStack").GroupKind(), reconciler.ProgressCoalescing)).
		Watches(&clusterv1.Cluster{}, handler.EnqueueRequestsFromMapFunc(r.clusterStacksOfCluster), resolver.ReleaseUseChanged(true)).
		Watches(&infrav1alpha1.OpenStackClusterStackReleaseTemplate{}, handler.EnqueueRequestsFromMapFunc(r.clusterStacksOfTemplate)).
		Complete(r)
}

// clusterStacksOfCluster maps a Cluster to the ClusterStacks of its namespace that provide its
// ClusterClass, so that a release a new Cluster uses is kept (and one no longer used collected).
func (r *ClusterStackReconciler) clusterStacksOfCluster(ctx context.Context, obj client.Object) []reconcile.Request {
	cl, ok := obj.(*clusterv1.Cluster)
	if !ok {
		return nil
	}
	ref, ok := resolver.ReleaseOfCluster(cl)
	if !ok {
		return nil
	}
	var list clusterstackv1alpha1.ClusterStackList
	if err := r.Client.List(ctx, &list, client.InNamespace(ref.Namespace)); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if resolver.OfStack(&list.Items[i], ref.Release) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}

func (r *ClusterStackReconciler) clusterStacksOfTemplate(ctx context.Context, obj client.Object) []reconcile.Request {
	var list clusterstackv1alpha1.ClusterStackList
	if err := r.Client.List(ctx, &list, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if ref := list.Items[i].Spec.ProviderRef; ref != nil && ref.Name == obj.GetName() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}

// Reconcile runs the one reconciler shape (package reconciler) with this kind's steps and its
// status function (setClusterStackStatus).
func (r *ClusterStackReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	k := reconciler.Kind[*clusterstackv1alpha1.ClusterStack, clusterStackReport]{
		Name:   "ClusterStack",
		New:    func() *clusterstackv1alpha1.ClusterStack { return &clusterstackv1alpha1.ClusterStack{} },
		Reader: r.Client,
		Client: r.Client,
		// The finalizer lets the controller delete the releases itself: it must not rely on the
		// garbage collector, which would delete releases in use if the webhook was bypassed.
		Finalizer:  clusterstackv1alpha1.ClusterStackFinalizer,
		Conditions: []string{clusterstackv1alpha1.ReleasesSyncedCondition},
		Normal:     r.reconcileNormal,
		Delete: func(ctx context.Context, cs *clusterstackv1alpha1.ClusterStack) clusterStackReport {
			return clusterStackReport{deletion: true, err: r.reconcileDelete(ctx, cs)}
		},
		Status:   setClusterStackStatus,
		Gone:     r.forget,
		Recorder: r.Recorder,
		// A release source that does not answer; waits for releases being deleted are no failure.
		FailureReasons: []string{clusterstackv1alpha1.ReleaseSourceErrorReason},
	}
	return k.Reconcile(ctx, req)
}

func (r *ClusterStackReconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.checks, key)
}

// reconcileDelete deletes the ClusterStack's releases and waits until they are gone. Each release
// keeps its own finalizer while a Cluster uses it, so nothing in use disappears even when the
// delete webhook was bypassed. It returns nil once the finalizer is gone, or the outcome of
// waiting.
func (r *ClusterStackReconciler) reconcileDelete(ctx context.Context, cs *clusterstackv1alpha1.ClusterStack) error {
	owned, err := r.ownedReleases(ctx, cs)
	if err != nil {
		return err
	}
	if len(owned) == 0 {
		r.forget(client.ObjectKeyFromObject(cs))
		controllerutil.RemoveFinalizer(cs, clusterstackv1alpha1.ClusterStackFinalizer)
		return nil
	}
	inUse, err := resolver.ClustersByRelease(ctx, r.APIReader, cs.Namespace)
	if err != nil {
		return err
	}
	var waiting, blocked []string
	for _, csr := range owned {
		waiting = append(waiting, csr.Name)
		if users := inUse[csr.Name].Clusters; len(users) > 0 {
			// Not even asked to go: the delete webhook would refuse, and retrying that in a loop
			// helps nobody. The Cluster watch brings the ClusterStack back when a Cluster goes.
			blocked = append(blocked, fmt.Sprintf("%s (Clusters %s)", csr.Name, strings.Join(users, ", ")))
			continue
		}
		if csr.DeletionTimestamp.IsZero() {
			if err := r.Client.Delete(ctx, csr); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting ClusterStackRelease %s: %w", csr.Name, err)
			}
		}
	}
	sort.Strings(waiting)
	sort.Strings(blocked)
	if len(blocked) > 0 {
		return outcome.Wait(clusterstackv1alpha1.InUseReason, deletionWaitInterval, "Releases in use, delete these Clusters first: %s", strings.Join(blocked, "; "))
	}
	return outcome.Wait(clusterstackv1alpha1.DeletingReason, deletionWaitInterval, "Waiting for releases to be deleted: %s", strings.Join(waiting, ", "))
}

// ownedReleases returns the ClusterStackReleases of the namespace that cs controls.
func (r *ClusterStackReconciler) ownedReleases(ctx context.Context, cs *clusterstackv1alpha1.ClusterStack) (map[string]*clusterstackv1alpha1.ClusterStackRelease, error) {
	all, err := r.releasesOfNamespace(ctx, cs.Namespace)
	if err != nil {
		return nil, err
	}
	out := map[string]*clusterstackv1alpha1.ClusterStackRelease{}
	for n, csr := range all {
		if metav1.IsControlledBy(csr, cs) {
			out[n] = csr
		}
	}
	return out, nil
}

func (r *ClusterStackReconciler) releasesOfNamespace(ctx context.Context, namespace string) (map[string]*clusterstackv1alpha1.ClusterStackRelease, error) {
	var list clusterstackv1alpha1.ClusterStackReleaseList
	if err := r.Client.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing the ClusterStackReleases of namespace %s: %w", namespace, err)
	}
	out := make(map[string]*clusterstackv1alpha1.ClusterStackRelease, len(list.Items))
	for i := range list.Items {
		out[list.Items[i].Name] = &list.Items[i]
	}
	return out, nil
}

// reconcileNormal makes the desired releases exist (with their provider objects) and collects
// the releases nobody wants any more.
func (r *ClusterStackReconciler) reconcileNormal(ctx context.Context, cs *clusterstackv1alpha1.ClusterStack) clusterStackReport {
	k8s, err := name.ParseKubernetesMinor(cs.Spec.KubernetesVersion)
	if err != nil {
		// CEL refuses such a spec; only an object stored before the rule existed gets here.
		return clusterStackReport{err: outcome.Stall(InvalidSpecReason, "spec.kubernetesVersion: %v", err)}
	}

	// The source is consulted first: its answer decides the desired set.
	check, nextCheck := r.checkSource(ctx, cs, k8s)

	// The cache's Clusters decide the desired set (their watch brings this ClusterStack back when
	// one changes); a deletion is decided on a live read only (collectReleases). A live list of
	// every Cluster in each reconcile would cost a round trip and the decoding of the whole
	// fleet's Clusters, for the rare reconcile that deletes.
	inUse, err := resolver.ClustersByRelease(ctx, r.Client, cs.Namespace)
	if err != nil {
		return clusterStackReport{err: err}
	}
	desired, badVersions := desiredReleases(cs, k8s, check, inUse)
	all, err := r.releasesOfNamespace(ctx, cs.Namespace)
	if err != nil {
		return clusterStackReport{err: err}
	}
	rep := clusterStackReport{desired: desired, releases: all, check: check, badVersions: badVersions, nextCheck: nextCheck}

	var tmpl *infrav1alpha1.OpenStackClusterStackReleaseTemplate
	if !cs.Spec.NoProvider {
		tmpl, rep.templateErr = r.providerTemplate(ctx, cs)
	}
	// Each release with its provider object is independent of the others: they are written side
	// by side, so that the last release of a stack is not created a few round trips after the
	// first.
	type ensured struct {
		csr  *clusterstackv1alpha1.ClusterStackRelease
		errs []error
	}
	results := make([]ensured, len(desired))
	var g errgroup.Group
	g.SetLimit(parallelReleaseWrites)
	for i, n := range desired {
		existing := all[n.String()]
		g.Go(func() error {
			csr, err := r.ensureRelease(ctx, cs, n, existing, !cs.Spec.NoProvider)
			if err != nil {
				results[i].errs = append(results[i].errs, err)
				return nil
			}
			results[i].csr = csr
			if tmpl != nil && metav1.IsControlledBy(csr, cs) {
				if err := r.ensureProvider(ctx, csr, tmpl); err != nil {
					results[i].errs = append(results[i].errs, err)
				}
			}
			return nil
		})
	}
	_ = g.Wait() // the results carry the errors
	for i, n := range desired {
		if results[i].csr != nil {
			all[n.String()] = results[i].csr
		}
		rep.syncErrs = append(rep.syncErrs, results[i].errs...)
	}

	// Garbage collection only runs when the desired set is complete: without a successful
	// source listing the newest release is unknown, and deleting on a guess could remove the
	// release autoSubscribe provided a moment ago.
	if !cs.Spec.AutoSubscribe || check.known {
		var errs []error
		rep.deleting, errs = r.collectReleases(ctx, cs, desired, all, inUse)
		rep.syncErrs = append(rep.syncErrs, errs...)
	}
	return rep
}

// collectReleases deletes the releases cs controls that are neither desired nor used by a
// Cluster. It returns their names, sorted, with those already being deleted.
func (r *ClusterStackReconciler) collectReleases(ctx context.Context, cs *clusterstackv1alpha1.ClusterStack, desired []name.Release, all map[string]*clusterstackv1alpha1.ClusterStackRelease, inUse resolver.Usage) ([]string, []error) {
	wanted := map[string]bool{}
	for _, n := range desired {
		wanted[n.String()] = true
	}
	var candidates []string
	for n, csr := range all {
		if !wanted[n] && metav1.IsControlledBy(csr, cs) && len(inUse[n].Clusters) == 0 {
			candidates = append(candidates, n)
		}
	}
	if len(candidates) == 0 {
		return nil, nil
	}
	// inUse came from the cache, which may not hold a Cluster created a moment ago: what is
	// deleted is decided on the API server's answer.
	live, err := resolver.ClustersByRelease(ctx, r.APIReader, cs.Namespace)
	if err != nil {
		return nil, []error{err}
	}
	var (
		deleting []string
		errs     []error
	)
	for _, n := range candidates {
		csr := all[n]
		if len(live[n].Clusters) > 0 {
			continue
		}
		deleting = append(deleting, n)
		if !csr.DeletionTimestamp.IsZero() {
			continue
		}
		if err := r.Client.Delete(ctx, csr); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting ClusterStackRelease %s: %w", n, err))
			continue
		}
		ctrl.LoggerFrom(ctx).Info("Deleted a release that is no longer desired", "ClusterStackRelease", n)
		r.Recorder.Eventf(cs, csr, corev1.EventTypeNormal, "ReleaseDeleted", "Delete", "Deleted release %s: no longer desired and not used by any Cluster", n)
	}
	sort.Strings(deleting)
	return deleting, errs
}

// checkSource lists the ClusterStack's source when a check is due (first reconcile, a new
// generation, the interval elapsed, or the last check failed) and returns the last outcome and
// how long until the next check. A ClusterStack with spec.versions is checked too, so that a
// version the source lacks is told (and a version published later noticed on the next check).
func (r *ClusterStackReconciler) checkSource(ctx context.Context, cs *clusterstackv1alpha1.ClusterStack, k8s name.KubernetesMinor) (sourceCheck, time.Duration) {
	if !cs.Spec.AutoSubscribe && len(cs.Spec.Versions) == 0 {
		return sourceCheck{known: true}, 0
	}
	now := time.Now()
	key := client.ObjectKeyFromObject(cs)
	r.mu.Lock()
	st, ok := r.checks[key]
	if ok && st.uid != cs.UID {
		ok = false
	}
	if !ok {
		st = &sourceCheck{uid: cs.UID}
		r.checks[key] = st
	}
	due := !ok || st.err != nil || st.generation != cs.Generation || !now.Before(st.next)
	cur := *st
	r.mu.Unlock()
	if !due {
		return cur, cur.next.Sub(now)
	}

	interval := r.interval(cs)
	next := sourceCheck{uid: cs.UID, generation: cs.Generation, next: now.Add(wait.Jitter(interval, checkJitter)), known: cur.known, latest: cur.latest, listed: cur.listed}
	latest, listed, err := r.listStack(ctx, cs)
	if err != nil {
		next.err = sourceFailure(err)
		ctrl.LoggerFrom(ctx).Error(err, "Checking the release source failed")
	} else {
		next.known, next.latest, next.listed = true, latest, listed
	}
	r.mu.Lock()
	r.checks[key] = &next
	r.mu.Unlock()
	return next, next.next.Sub(now)
}

func (r *ClusterStackReconciler) interval(cs *clusterstackv1alpha1.ClusterStack) time.Duration {
	if cs.Spec.Source != nil && cs.Spec.Source.CheckInterval != nil && cs.Spec.Source.CheckInterval.Duration > 0 {
		return cs.Spec.Source.CheckInterval.Duration
	}
	if r.CheckInterval > 0 {
		return r.CheckInterval
	}
	return DefaultReleaseCheckInterval
}

// listStack returns the newest release cs provides (resolver.Latest), nil when the source holds
// none, and the releases of cs's stack the source holds (resolver.OfStack).
func (r *ClusterStackReconciler) listStack(ctx context.Context, cs *clusterstackv1alpha1.ClusterStack) (*name.Release, []name.Release, error) {
	src, err := r.Releases.SourceFor(ctx, cs)
	if err != nil {
		return nil, nil, err
	}
	releases, err := src.List(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("listing releases at %s: %w", src.ID(), err)
	}
	var listed []name.Release
	for _, n := range releases {
		if resolver.OfStack(cs, n) {
			listed = append(listed, n)
		}
	}
	if n, ok := resolver.Latest(cs, releases); ok {
		return &n, listed, nil
	}
	return nil, listed, nil
}

// sourceFailure classifies a failed listing of the source (resolver.Classify): a source that
// cannot be read as configured stalls until a user fixes the ClusterStack or its Secret; anything
// else (an outage, a repository not there yet) is retried with backoff.
func sourceFailure(err error) error {
	if resolver.Classify(err) == resolver.FailureSource {
		return outcome.Stall(clusterstackv1alpha1.ReleaseSourceErrorReason, "%s", err)
	}
	return outcome.Retry(clusterstackv1alpha1.ReleaseSourceErrorReason, err)
}

// desiredReleases returns the releases cs must provide, ascending, and the spec versions that do
// not parse. Releases used by Clusters are desired whatever their channel: a Cluster must never
// lose its ClusterClass.
func desiredReleases(cs *clusterstackv1alpha1.ClusterStack, k8s name.KubernetesMinor, check sourceCheck, inUse resolver.Usage) ([]name.Release, []string) {
	set := map[string]name.Release{}
	var bad []string
	for _, v := range cs.Spec.Versions {
		ver, err := name.ParseVersion(v)
		if err != nil {
			bad = append(bad, v)
			continue
		}
		n := name.Release{Provider: cs.Spec.Provider, Stack: cs.Spec.Name, Kubernetes: k8s, Version: ver}
		set[n.String()] = n
	}
	if cs.Spec.AutoSubscribe && check.latest != nil {
		set[check.latest.String()] = *check.latest
	}
	for _, u := range inUse {
		if resolver.InChannel(cs, u.Release) {
			set[u.Release.String()] = u.Release
		}
	}
	out := make([]name.Release, 0, len(set))
	for _, n := range set {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Compare(out[j]) < 0 })
	return out, bad
}

// ensureRelease creates the ClusterStackRelease n when it is missing and adopts an orphan of the
// same name (created by hand or left by the reference operator).
func (r *ClusterStackReconciler) ensureRelease(ctx context.Context, cs *clusterstackv1alpha1.ClusterStack, n name.Release, existing *clusterstackv1alpha1.ClusterStackRelease, withProvider bool) (*clusterstackv1alpha1.ClusterStackRelease, error) {
	var providerRef *corev1.ObjectReference
	if withProvider {
		providerRef = &corev1.ObjectReference{
			APIVersion: infrav1alpha1.GroupVersion.String(),
			Kind:       providerKind,
			Namespace:  cs.Namespace,
			Name:       n.String(),
		}
	}
	if existing != nil {
		if !existing.DeletionTimestamp.IsZero() {
			// Recreated once the old one is gone; its deletion triggers a reconcile (Owns).
			return existing, nil
		}
		owner := metav1.GetControllerOf(existing)
		if owner != nil && owner.UID != cs.UID {
			// Another ClusterStack of the namespace provides the same release; share it.
			return existing, nil
		}
		base := existing.DeepCopy()
		if owner == nil {
			if err := controllerutil.SetControllerReference(cs, existing, r.Client.Scheme()); err != nil {
				return nil, err
			}
		}
		if withProvider && !equality.Semantic.DeepEqual(existing.Spec.ProviderRef, providerRef) {
			existing.Spec.ProviderRef = providerRef
		}
		if equality.Semantic.DeepEqual(base, existing) {
			return existing, nil
		}
		if err := r.Client.Patch(ctx, existing, client.MergeFrom(base)); err != nil {
			return nil, fmt.Errorf("updating ClusterStackRelease %s: %w", n, err)
		}
		return existing, nil
	}
	csr := &clusterstackv1alpha1.ClusterStackRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: cs.Namespace, Name: n.String()},
		Spec:       clusterstackv1alpha1.ClusterStackReleaseSpec{ProviderRef: providerRef},
	}
	if err := controllerutil.SetControllerReference(cs, csr, r.Client.Scheme()); err != nil {
		return nil, err
	}
	// Created with its finalizer, which the release controller (set up beside this one) would
	// otherwise add with a write of its own before it can start on the release.
	controllerutil.AddFinalizer(csr, clusterstackv1alpha1.ClusterStackReleaseFinalizer)
	if err := r.Client.Create(ctx, csr); err != nil {
		return nil, fmt.Errorf("creating ClusterStackRelease %s: %w", n, err)
	}
	ctrl.LoggerFrom(ctx).Info("Created a release", "ClusterStackRelease", klog.KObj(csr))
	r.Recorder.Eventf(cs, csr, corev1.EventTypeNormal, "ReleaseCreated", "Create", "Created release %s", n)
	return csr, nil
}

// providerTemplate reads the template spec.providerRef points at.
func (r *ClusterStackReconciler) providerTemplate(ctx context.Context, cs *clusterstackv1alpha1.ClusterStack) (*infrav1alpha1.OpenStackClusterStackReleaseTemplate, error) {
	ref := cs.Spec.ProviderRef
	if ref == nil {
		return nil, errors.New("spec.providerRef is not set: point it at an OpenStackClusterStackReleaseTemplate, or set noProvider: true")
	}
	if ref.Kind != "" && ref.Kind != providerTemplateKind {
		return nil, fmt.Errorf("spec.providerRef has kind %s: only %s is supported", ref.Kind, providerTemplateKind)
	}
	ns := ref.Namespace
	if ns == "" {
		ns = cs.Namespace
	}
	var tmpl infrav1alpha1.OpenStackClusterStackReleaseTemplate
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, &tmpl); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%s %s/%s of spec.providerRef not found: create it", providerTemplateKind, ns, ref.Name)
		}
		return nil, fmt.Errorf("reading %s %s/%s: %w", providerTemplateKind, ns, ref.Name, err)
	}
	return &tmpl, nil
}

// ensureProvider creates or updates the provider object of csr from the template, owned by the
// release so that it goes when the release goes.
func (r *ClusterStackReconciler) ensureProvider(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease, tmpl *infrav1alpha1.OpenStackClusterStackReleaseTemplate) error {
	obj := &infrav1alpha1.OpenStackClusterStackRelease{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: csr.Namespace, Name: csr.Name}, obj)
	switch {
	case apierrors.IsNotFound(err):
		obj = &infrav1alpha1.OpenStackClusterStackRelease{
			ObjectMeta: metav1.ObjectMeta{Namespace: csr.Namespace, Name: csr.Name},
			Spec:       *tmpl.Spec.Template.Spec.DeepCopy(),
		}
		if err := controllerutil.SetControllerReference(csr, obj, r.Client.Scheme()); err != nil {
			return err
		}
		if r.ProviderFinalizer != "" {
			// Created with it: the provider controller would otherwise add it with a write of its
			// own before it starts on the node images, a write on every release's way to ready.
			controllerutil.AddFinalizer(obj, r.ProviderFinalizer)
		}
		if err := r.Client.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %s %s: %w", providerKind, csr.Name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading %s %s: %w", providerKind, csr.Name, err)
	}
	base := obj.DeepCopy()
	want := tmpl.Spec.Template.Spec.DeepCopy()
	// The API server defaults identityRef; compare against the defaulted form so that a
	// template without identityRef does not cause an update on every reconcile.
	if want.IdentityRef == nil {
		want.IdentityRef = obj.Spec.IdentityRef
	} else if want.IdentityRef.Kind == "" && obj.Spec.IdentityRef != nil {
		want.IdentityRef.Kind = obj.Spec.IdentityRef.Kind
	}
	obj.Spec = *want
	if metav1.GetControllerOf(obj) == nil {
		if err := controllerutil.SetControllerReference(csr, obj, r.Client.Scheme()); err != nil {
			return err
		}
	}
	if equality.Semantic.DeepEqual(base, obj) {
		return nil
	}
	if err := r.Client.Patch(ctx, obj, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("updating %s %s: %w", providerKind, csr.Name, err)
	}
	return nil
}
