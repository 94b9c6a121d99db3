package clusteraddon

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/reconciler"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/workloadcluster"
)

// ClusterReconciler keeps one ClusterAddon per Cluster that uses a cluster-stack ClusterClass,
// re-creating it when it is deleted, and drops a Cluster's workload client when it goes.
//
// It is not on the reconcile skeleton (internal/reconciler): the object it reconciles is Cluster
// API's Cluster, whose status and conditions (Paused among them) belong to Cluster API, so the
// skeleton's status patch would write into another controller's conditions; it has no steps that
// can stall or wait, and no status of its own. What it finds is reported by the ClusterAddon.
type ClusterReconciler struct {
	Client   client.Client
	Workload *workloadcluster.Cache
	Recorder events.EventRecorder
	// Workers is how many Clusters are reconciled at the same time; zero means
	// DefaultCreateWorkers.
	Workers int
}

// +kubebuilder:rbac:groups=cluster.x-k8s.io,resources=clusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=clusterstack.x-k8s.io,resources=clusteraddons,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the controller.
func (r *ClusterReconciler) SetupWithManager(mgr ctrl.Manager) error {
	workers := r.Workers
	if workers <= 0 {
		workers = DefaultCreateWorkers
	}
	return reconciler.NewController(mgr, "clusteraddon-create").
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		For(&clusterv1.Cluster{}, predicate.Or(predicate.GenerationChangedPredicate{}, clusterPauseChanged)).
		// A deleted ClusterAddon enqueues its Cluster, which re-creates it.
		Owns(&csv1alpha1.ClusterAddon{}).
		Complete(r)
}

// Reconcile creates the ClusterAddon of a Cluster when it is missing, unless the Cluster is
// paused.
func (r *ClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cluster := &clusterv1.Cluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, cluster); err != nil {
		if apierrors.IsNotFound(err) {
			r.Workload.Drop(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !cluster.DeletionTimestamp.IsZero() {
		r.Workload.Drop(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	if _, ok := resolver.ReleaseOfCluster(cluster); !ok {
		return ctrl.Result{}, nil
	}
	log := ctrl.LoggerFrom(ctx).WithValues("Cluster", klog.KObj(cluster))
	if paused, _ := clusterPaused(cluster); paused {
		// Created when the Cluster resumes (clusterPauseChanged): a Cluster being moved gets its
		// ClusterAddon from the source management cluster, and a new one here would install
		// addons into it from both.
		log.V(4).Info("Cluster is paused: not creating its ClusterAddon")
		return ctrl.Result{}, nil
	}

	ca := &csv1alpha1.ClusterAddon{}
	key := types.NamespacedName{Namespace: cluster.Namespace, Name: addon.ClusterAddonName(cluster.Name)}
	err := r.Client.Get(ctx, key, ca)
	if err == nil || !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	ca = &csv1alpha1.ClusterAddon{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		Spec: csv1alpha1.ClusterAddonSpec{ClusterRef: &corev1.ObjectReference{
			APIVersion: clusterv1.GroupVersion.String(),
			Kind:       "Cluster",
			Namespace:  cluster.Namespace,
			Name:       cluster.Name,
			UID:        cluster.UID,
		}},
	}
	// Owned by the Cluster: garbage collection removes it with the Cluster, and its deletion
	// enqueues the Cluster here.
	if err := controllerutil.SetControllerReference(cluster, ca, r.Client.Scheme()); err != nil {
		return ctrl.Result{}, fmt.Errorf("setting the owner of ClusterAddon %s: %w", key, err)
	}
	if err := r.Client.Create(ctx, ca); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("creating ClusterAddon %s: %w", key, err)
	}
	log.Info("Created ClusterAddon", "ClusterAddon", klog.KObj(ca))
	r.Recorder.Eventf(cluster, ca, corev1.EventTypeNormal, "ClusterAddonCreated", "Create", "Created ClusterAddon %s", ca.Name)
	return ctrl.Result{}, nil
}
