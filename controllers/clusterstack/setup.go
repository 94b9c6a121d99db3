// Package clusterstack holds the operator's main loop: the ClusterStack controller, which decides
// which releases of a cluster stack must exist in a namespace, and the ClusterStackRelease
// controller, which installs one release (its ClusterClass and templates) with server-side apply
// and removes it again; plus the validating webhooks that refuse deleting what Clusters use.
// main.go and the demo command set both up with Setup.
package clusterstack

import (
	"errors"
	"fmt"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
)

// Options configure Setup.
type Options struct {
	// Releases resolves sources and materialises releases; required.
	Releases *resolver.Resolver
	// ReleaseCheckInterval is how often sources are asked for new releases; zero means
	// DefaultReleaseCheckInterval. A ClusterStack's spec.source.checkInterval overrides it.
	ReleaseCheckInterval time.Duration
	// DriftCheckInterval is how often converged releases compare their objects with the live
	// ones; zero means DefaultDriftCheckInterval.
	DriftCheckInterval time.Duration
	// ClusterStackWorkers is how many ClusterStacks are reconciled at the same time; zero means
	// the manager's default (one).
	ClusterStackWorkers int
	// ReleaseWorkers is how many ClusterStackReleases are reconciled at the same time; zero
	// means four: a release mostly waits for the registry and the API server.
	ReleaseWorkers int
	// Webhooks also registers the validating webhooks with the manager's webhook server.
	Webhooks bool
	// ProviderFinalizer, when set, is given to the provider objects (OpenStackClusterStackReleases)
	// the ClusterStack controller creates: the finalizer of the provider controller set up beside
	// it, which would otherwise add it with a write of its own first. Leave it empty when no
	// provider controller runs: nobody would remove it.
	ProviderFinalizer string
}

// Setup registers the ClusterStack and ClusterStackRelease controllers (and, with
// opts.Webhooks, their webhooks) with mgr.
func Setup(mgr ctrl.Manager, opts Options) error {
	if opts.Releases == nil {
		return errors.New("setting up the ClusterStack controllers: Options.Releases is required")
	}
	cs := &ClusterStackReconciler{
		Client:            mgr.GetClient(),
		APIReader:         mgr.GetAPIReader(),
		Releases:          opts.Releases,
		Recorder:          mgr.GetEventRecorder("clusterstack-controller"),
		CheckInterval:     opts.ReleaseCheckInterval,
		Workers:           opts.ClusterStackWorkers,
		ProviderFinalizer: opts.ProviderFinalizer,
	}
	if err := cs.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the ClusterStack controller: %w", err)
	}
	csr := &ClusterStackReleaseReconciler{
		Client:             mgr.GetClient(),
		APIReader:          mgr.GetAPIReader(),
		Releases:           opts.Releases,
		Applier:            &apply.Applier{Client: mgr.GetClient(), FieldManager: FieldManager},
		Mapper:             mgr.GetRESTMapper(),
		Recorder:           mgr.GetEventRecorder("clusterstackrelease-controller"),
		DriftCheckInterval: opts.DriftCheckInterval,
		Workers:            opts.ReleaseWorkers,
	}
	if err := csr.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the ClusterStackRelease controller: %w", err)
	}
	if opts.Webhooks {
		if err := SetupWebhooks(mgr); err != nil {
			return err
		}
	}
	return nil
}
