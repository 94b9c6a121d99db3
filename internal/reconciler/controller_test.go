package reconciler_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/reconciler"
)

// With StartOnForSync the workers start once the For kind has synced, whatever the other watches
// do: here a watch of a kind the API server does not serve, whose informer never syncs (without
// StartOnForSync the controller would wait for it until its cache sync timeout and fail).
func TestStartOnForSyncStartsWithoutTheOtherWatches(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	missing := &metav1.PartialObjectMetadata{}
	missing.SetGroupVersionKind(schema.GroupVersionKind{Group: "missing.example.com", Version: "v1", Kind: "Missing"})
	reconciled := make(chan reconcile.Request, 10)
	err = reconciler.NewController(mgr, "start-on-for-sync").
		StartOnForSync().
		For(&corev1.ConfigMap{}).
		Watches(missing, &handler.EnqueueRequestForObject{}).
		Complete(reconcile.Func(func(_ context.Context, req reconcile.Request) (reconcile.Result, error) {
			reconciled <- req
			return reconcile.Result{}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 1)
	go func() { errs <- mgr.Start(ctx) }()

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "start-on-for-sync-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "reconcile-me"}}
	if err := env.Client.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(time.Minute) // only catches what never works
	for {
		select {
		case req := <-reconciled:
			if req.Namespace == ns.Name && req.Name == cm.Name {
				return
			}
		case err := <-errs:
			t.Fatalf("the manager stopped: %v", err)
		case <-deadline:
			t.Fatal("the ConfigMap was not reconciled: the workers waited for the watch of a kind that is not served")
		}
	}
}
