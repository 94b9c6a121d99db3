// Package clustercredential gives each workload Cluster that opts in its own Keystone application
// credential: the Cluster controller keeps one OpenStackClusterCredential per such Cluster (from
// the ClusterStack's spec.applicationCredentials and the Cluster's annotation), and the
// OpenStackClusterCredential controller creates the credential in the Cluster's project with the
// configured roles and expiry, writes it into the workload cluster where the cloud controller
// manager and Cinder CSI read it, rotates it before it expires (new first, switch, then revoke
// the old) and revokes it when the Cluster goes. Keystone access goes through internal/openstack.
package clustercredential

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/workloadcluster"
)

// Stacks finds the ClusterStack of a release; *resolver.Resolver implements it.
type Stacks interface {
	ClusterStackFor(ctx context.Context, namespace string, n name.Release) (*csv1alpha1.ClusterStack, error)
}

// Keystone hands out application-credential clients for an identityRef; scope.Factory
// implements it.
type Keystone interface {
	ApplicationCredentials(ctx context.Context, namespace string, ref *infrav1.OpenStackIdentityReference) (*scope.ApplicationCredentials, error)
}

// Options configure Setup.
type Options struct {
	// Stacks resolves a Cluster's ClusterStack; required.
	Stacks Stacks
	// Keystone overrides the client factory (nil: a scope.Factory on the manager's API reader).
	Keystone Keystone
	// RequestTimeout bounds each OpenStack request of the default factory (zero: the default).
	RequestTimeout time.Duration
	// Workers is how many OpenStackClusterCredentials are reconciled at once; zero means four.
	Workers int
	// WorkloadConfigHook, when set, adjusts the REST config of each workload cluster client
	// (tests record the writes with it).
	WorkloadConfigHook func(cluster types.NamespacedName, cfg *rest.Config)
	// RetryInterval is how often a Cluster whose infrastructure or workload cluster is not there
	// yet is looked at again; zero means 15 seconds.
	RetryInterval time.Duration
}

// Setup registers the Cluster and OpenStackClusterCredential controllers.
func Setup(mgr ctrl.Manager, opts Options) error {
	if opts.Stacks == nil {
		return errors.New("setting up the cluster credential controllers: Options.Stacks is required")
	}
	if opts.Keystone == nil {
		opts.Keystone = scope.NewFactory(mgr.GetAPIReader(), scope.WithRequestTimeout(opts.RequestTimeout))
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 15 * time.Second
	}
	owner := &ClusterReconciler{Client: mgr.GetClient(), Stacks: opts.Stacks, RetryInterval: opts.RetryInterval}
	if err := owner.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Cluster credential controller: %w", err)
	}
	r := &OpenStackClusterCredentialReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Keystone:  opts.Keystone,
		Workload: &workloadcluster.Cache{
			Reader: mgr.GetAPIReader(), Scheme: mgr.GetScheme(), ConfigHook: opts.WorkloadConfigHook,
		},
		Workers:       opts.Workers,
		RetryInterval: opts.RetryInterval,
		Recorder:      mgr.GetEventRecorder("openstackclustercredential-controller"),
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the OpenStackClusterCredential controller: %w", err)
	}
	return nil
}
