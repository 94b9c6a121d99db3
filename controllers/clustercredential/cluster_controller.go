package clustercredential

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/reconciler"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
)

// Defaults of ApplicationCredentialSettings (see the API type).
const (
	DefaultLifetime     = 90 * 24 * time.Hour
	DefaultRotateBefore = 30 * 24 * time.Hour
	DefaultRevokeAfter  = 24 * time.Hour
)

// DefaultRoles are what the cloud controller manager and Cinder CSI need on a cloud with
// Keystone's default roles.
var DefaultRoles = []string{"member"}

// ClusterReconciler keeps one OpenStackClusterCredential per Cluster of a cluster-stack class
// that has application credentials enabled (by its ClusterStack, overridden by the Cluster's
// annotation), with the settings of the ClusterStack and the identityRef of the Cluster's
// OpenStackCluster, and deletes it when the Cluster opts out or is gone (which revokes the
// credentials).
//
// It is not on the reconcile skeleton (internal/reconciler), like the Cluster controller of the
// addons: the object it reconciles is Cluster API's Cluster, whose status belongs to Cluster API.
// What it cannot do yet (no OpenStackCluster) it retries; what goes wrong later is reported by
// the OpenStackClusterCredential.
type ClusterReconciler struct {
	Client        client.Client
	Stacks        Stacks
	RetryInterval time.Duration
}

// +kubebuilder:rbac:groups=cluster.x-k8s.io,resources=clusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=infrastructure.cluster.x-k8s.io,resources=openstackclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=infrastructure.clusterstack.x-k8s.io,resources=openstackclustercredentials,verbs=get;list;watch;create;update;patch;delete

// SetupWithManager registers the controller.
func (r *ClusterReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return reconciler.NewController(mgr, "clustercredential-create").
		// Spec and the opt-in annotation, not Cluster API's frequent status writes.
		For(&clusterv1.Cluster{}, predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{})).
		Owns(&infrav1.OpenStackClusterCredential{}).
		// A changed spec.applicationCredentials applies to the stack's Clusters at once.
		Watches(&csv1alpha1.ClusterStack{}, handler.EnqueueRequestsFromMapFunc(r.clustersOfStack)).
		Complete(r)
}

// clustersOfStack returns the Clusters using a release of the ClusterStack.
func (r *ClusterReconciler) clustersOfStack(ctx context.Context, obj client.Object) []reconcile.Request {
	cs, ok := obj.(*csv1alpha1.ClusterStack)
	if !ok {
		return nil
	}
	var list clusterv1.ClusterList
	if err := r.Client.List(ctx, &list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing the Clusters of a ClusterStack", "ClusterStack", klog.KObj(cs))
		return nil
	}
	var out []reconcile.Request
	for i := range list.Items {
		ref, ok := resolver.ReleaseOfCluster(&list.Items[i])
		if ok && ref.Namespace == cs.Namespace && resolver.OfStack(cs, ref.Release) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return out
}

// Reconcile creates, updates or deletes the OpenStackClusterCredential of a Cluster.
func (r *ClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cluster := &clusterv1.Cluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, cluster); err != nil {
		if apierrors.IsNotFound(err) {
			// Garbage collection would do it as well, but only where a garbage collector runs and
			// only with background deletion; the credential must not outlive its Cluster.
			return ctrl.Result{}, r.remove(ctx, req.NamespacedName, "")
		}
		return ctrl.Result{}, err
	}
	if !cluster.DeletionTimestamp.IsZero() {
		// The workload's components may need the credential while Cluster API tears it down.
		return ctrl.Result{}, nil
	}
	settings, enabled, err := r.settings(ctx, cluster)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !enabled {
		return ctrl.Result{}, r.remove(ctx, req.NamespacedName, cluster.UID)
	}
	log := ctrl.LoggerFrom(ctx).WithValues("Cluster", klog.KObj(cluster))
	ref, err := r.identityRef(ctx, cluster)
	if err != nil {
		return ctrl.Result{}, err
	}
	if ref == nil {
		log.V(4).Info("Waiting for the OpenStackCluster's identityRef")
		return ctrl.Result{RequeueAfter: r.RetryInterval}, nil
	}
	want := infrav1.OpenStackClusterCredentialSpec{
		ClusterName: cluster.Name, IdentityRef: ref, Roles: settings.Roles,
		Lifetime: *settings.Lifetime, RotateBefore: *settings.RotateBefore, RevokeAfter: *settings.RevokeAfter,
	}
	occ := &infrav1.OpenStackClusterCredential{ObjectMeta: metav1.ObjectMeta{Namespace: cluster.Namespace, Name: cluster.Name}}
	op, err := controllerutil.CreateOrPatch(ctx, r.Client, occ, func() error {
		occ.Spec = want
		// Owned by the Cluster: its deletion enqueues the Cluster here.
		return controllerutil.SetControllerReference(cluster, occ, r.Client.Scheme())
	})
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("writing OpenStackClusterCredential %s: %w", req.NamespacedName, err)
	}
	if op != controllerutil.OperationResultNone {
		log.Info("Wrote OpenStackClusterCredential", "operation", op)
	}
	return ctrl.Result{}, nil
}

// remove deletes the Cluster's OpenStackClusterCredential unless it belongs to another Cluster of
// the same name (uid "" matches any owner: the Cluster is gone).
func (r *ClusterReconciler) remove(ctx context.Context, key types.NamespacedName, uid types.UID) error {
	occ := &infrav1.OpenStackClusterCredential{}
	if err := r.Client.Get(ctx, key, occ); err != nil {
		return client.IgnoreNotFound(err)
	}
	if owner := metav1.GetControllerOf(occ); uid != "" && owner != nil && owner.UID != uid {
		return nil
	}
	if err := r.Client.Delete(ctx, occ); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting OpenStackClusterCredential %s: %w", key, err)
	}
	return nil
}

// settings returns the effective settings of the Cluster's ClusterStack and whether the Cluster
// has application credentials enabled.
func (r *ClusterReconciler) settings(ctx context.Context, cluster *clusterv1.Cluster) (csv1alpha1.ApplicationCredentialSettings, bool, error) {
	var none csv1alpha1.ApplicationCredentialSettings
	ref, ok := resolver.ReleaseOfCluster(cluster)
	if !ok {
		return none, false, nil
	}
	cs, err := r.Stacks.ClusterStackFor(ctx, ref.Namespace, ref.Release)
	if errors.Is(err, resolver.ErrNoClusterStack) {
		// A class without its ClusterStack: only the annotation can enable, with the defaults.
		cs, err = nil, nil
	}
	if err != nil {
		return none, false, fmt.Errorf("finding the ClusterStack of Cluster %s: %w", klog.KObj(cluster), err)
	}
	var spec csv1alpha1.ApplicationCredentials
	if cs != nil && cs.Spec.ApplicationCredentials != nil {
		spec = *cs.Spec.ApplicationCredentials
	}
	enabled := spec.Enabled
	switch cluster.Annotations[csv1alpha1.ApplicationCredentialsAnnotation] {
	case "enabled":
		enabled = true
	case "disabled":
		enabled = false
	}
	return Effective(spec.ApplicationCredentialSettings), enabled, nil
}

// Effective fills in the defaults of s. A rotateBefore that does not fit into the lifetime (only
// possible when one of them is defaulted; the API refuses it otherwise) becomes a third of the
// lifetime, and a revokeAfter that does not fit into rotateBefore half of it.
func Effective(s csv1alpha1.ApplicationCredentialSettings) csv1alpha1.ApplicationCredentialSettings {
	out := csv1alpha1.ApplicationCredentialSettings{Roles: slices.Sorted(slices.Values(s.Roles))}
	if len(out.Roles) == 0 {
		out.Roles = slices.Clone(DefaultRoles)
	}
	pick := func(d *metav1.Duration, def time.Duration) time.Duration {
		if d != nil {
			return d.Duration
		}
		return def
	}
	lifetime := pick(s.Lifetime, DefaultLifetime)
	rotate := pick(s.RotateBefore, DefaultRotateBefore)
	if rotate >= lifetime {
		rotate = lifetime / 3
	}
	revoke := pick(s.RevokeAfter, DefaultRevokeAfter)
	if revoke >= rotate {
		revoke = rotate / 2
	}
	out.Lifetime, out.RotateBefore, out.RevokeAfter = &metav1.Duration{Duration: lifetime}, &metav1.Duration{Duration: rotate}, &metav1.Duration{Duration: revoke}
	return out
}

// identityRef reads the identityRef of the Cluster's OpenStackCluster; nil while there is none.
func (r *ClusterReconciler) identityRef(ctx context.Context, cluster *clusterv1.Cluster) (*infrav1.OpenStackIdentityReference, error) {
	infra := cluster.Spec.InfrastructureRef
	if infra.Name == "" || infra.Kind != "OpenStackCluster" {
		return nil, nil
	}
	mapping, err := r.Client.RESTMapper().RESTMapping(schema.GroupKind{Group: infra.APIGroup, Kind: infra.Kind})
	if err != nil {
		return nil, fmt.Errorf("mapping %s of Cluster %s: %w", infra.Kind, klog.KObj(cluster), err)
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(mapping.GroupVersionKind)
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: cluster.Namespace, Name: infra.Name}, u); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading the OpenStackCluster of Cluster %s: %w", klog.KObj(cluster), err)
	}
	name, _, _ := unstructured.NestedString(u.Object, "spec", "identityRef", "name")
	if name == "" {
		return nil, nil
	}
	return &infrav1.OpenStackIdentityReference{Kind: "Secret", Name: name}, nil
}
