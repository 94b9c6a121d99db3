// Package openstack holds the OpenStack node image controllers: the OpenStackClusterStackRelease
// controller, which turns a release's node-images.yaml into OpenStackNodeImageReleases, and the
// OpenStackNodeImageRelease controller, which makes each image exist in Glance and removes it
// again. Cloud access goes through internal/openstack; main.go and the demo set both up with
// Setup.
package openstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/nodeimage"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
)

// ReleaseFiles gives the verified files of a release; *resolver.Resolver implements it.
type ReleaseFiles interface {
	ReleaseFor(ctx context.Context, namespace string, n name.Release) (*release.Release, error)
}

// ImageClients hands out Glance clients for an identityRef; scope.Factory implements it.
type ImageClients interface {
	ImageClient(ctx context.Context, namespace string, ref *infrav1.OpenStackIdentityReference) (clients.ImageClient, error)
}

// Options configure Setup.
type Options struct {
	// Releases serves release files; required.
	Releases ReleaseFiles
	// ImageClients overrides the client factory (nil: a scope.Factory on the manager's API
	// reader, so Secrets are read uncached).
	ImageClients ImageClients
	// NodeImage tunes transfers (download client, attempts, timeouts, backoff).
	NodeImage nodeimage.Options
	// RecheckInterval re-reads converged images from Glance this often; zero (the default)
	// means never: a converged image costs no OpenStack call.
	RecheckInterval time.Duration
	// HTTPClient downloads image files; shorthand for NodeImage.HTTPClient.
	HTTPClient *http.Client
	// InUseRecheckInterval is how often a deletion held back by machines using the image looks
	// again (machines are not watched); zero means one minute.
	InUseRecheckInterval time.Duration
	// RequestTimeout bounds each OpenStack request of the default client factory (zero:
	// scope.DefaultRequestTimeout). Transfers have NodeImage.TransferProgressTimeout instead.
	RequestTimeout time.Duration
	// OutageRetryInterval is the wait before trying again while the cloud is unavailable and
	// gives no Retry-After; zero means 30 seconds.
	OutageRetryInterval time.Duration
	// NodeImageWorkers is how many node images are worked on at once; zero means four.
	NodeImageWorkers int
	// ReleaseWorkers is how many OpenStackClusterStackReleases are reconciled at once; zero
	// means four.
	ReleaseWorkers int
	// CloudReaders overrides the client factory of the capability check (nil: the factory of
	// ImageClients when it is one, else a scope.Factory like ImageClients').
	CloudReaders CloudReaders
	// CapabilityCheckInterval is how long a capability check's result is reused before the
	// cloud is asked again; zero means DefaultCapabilityCheckInterval. A changed spec or release
	// is checked at once.
	CapabilityCheckInterval time.Duration
}

// Setup registers both controllers with mgr.
func Setup(mgr ctrl.Manager, opts Options) error {
	if opts.Releases == nil {
		return errors.New("setting up the OpenStack controllers: Options.Releases is required")
	}
	if opts.ImageClients == nil {
		opts.ImageClients = scope.NewFactory(mgr.GetAPIReader(), scope.WithRequestTimeout(opts.RequestTimeout))
	}
	if opts.CloudReaders == nil {
		// One factory for both controllers: one login (and token) per credentials Secret.
		if f, ok := opts.ImageClients.(CloudReaders); ok {
			opts.CloudReaders = f
		} else {
			opts.CloudReaders = scope.NewFactory(mgr.GetAPIReader(), scope.WithRequestTimeout(opts.RequestTimeout))
		}
	}
	if opts.HTTPClient != nil && opts.NodeImage.HTTPClient == nil {
		opts.NodeImage.HTTPClient = opts.HTTPClient
	}
	nir := &OpenStackNodeImageReleaseReconciler{
		Client:          mgr.GetClient(),
		APIReader:       mgr.GetAPIReader(),
		ImageClients:    opts.ImageClients,
		NodeImage:       opts.NodeImage,
		RecheckInterval: opts.RecheckInterval,
		InUseRecheck:    opts.InUseRecheckInterval,
		OutageRetry:     opts.OutageRetryInterval,
		Workers:         opts.NodeImageWorkers,
		Recorder:        mgr.GetEventRecorder("openstacknodeimagerelease-controller"),
	}
	if err := nir.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the OpenStackNodeImageRelease controller: %w", err)
	}
	csr := &OpenStackClusterStackReleaseReconciler{
		Client:             mgr.GetClient(),
		Releases:           opts.Releases,
		Recorder:           mgr.GetEventRecorder("openstackclusterstackrelease-controller"),
		Workers:            opts.ReleaseWorkers,
		Clouds:             opts.CloudReaders,
		CapabilityInterval: opts.CapabilityCheckInterval,
		OutageRetry:        opts.OutageRetryInterval,
	}
	if err := csr.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the OpenStackClusterStackRelease controller: %w", err)
	}
	return nil
}
