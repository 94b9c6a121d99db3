// Package capiflow holds the steps of the real-Cluster-API flow that the test tier (test/capi)
// and the demo (hack/demo) share, so that both drive Cluster API the same way: starting the
// management API server with the Cluster API managers, running the operator's controllers and
// runtime extension in-process, registering the extension with Cluster API, creating a Cluster
// with a managed topology whose kubeconfig Secret points at a second API server (the workload
// cluster), simulating what the control plane's machines would report, and counting the hook
// calls Cluster API makes. The functions return errors and observations; the callers decide what
// to assert or print.
package capiflow

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	runtimev1 "sigs.k8s.io/cluster-api/api/runtime/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/seed-a720dd5e/clusterstack-operator/controllers/clusteraddon"
	"github.com/seed-a720dd5e/clusterstack-operator/controllers/clusterstack"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// StartManagement starts the management API server with the real Cluster API managers
// (testenv.StartWithClusterAPI) and adds Cluster API's runtime types (ExtensionConfig) to its
// scheme. Like StartWithClusterAPI it returns testenv.ErrNoManagers when the managers are not
// configured.
func StartManagement(opts testenv.Options) (*testenv.Environment, error) {
	env, err := testenv.StartWithClusterAPI(opts)
	if err != nil {
		return nil, err
	}
	if err := runtimev1.AddToScheme(env.Scheme); err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("adding Cluster API's runtime types to the scheme: %w", err)
	}
	return env, nil
}

// retryInterval is every retry and poll interval of the operator's addon controllers and the
// retry its blocking hooks answer: a local run has no cloud to spare, and Cluster API retries
// BeforeClusterUpgrade after this long.
const retryInterval = time.Second

// OperatorOptions configure the in-process operator.
type OperatorOptions struct {
	// Env is the management API server, started by StartManagement; required. The hook server
	// serves with the certificate of its Cluster API managers, so an ExtensionConfig's caBundle
	// is Env.ClusterAPI.CABundle.
	Env *testenv.Environment
	// HooksPort is the port of the runtime extension server on 127.0.0.1; required.
	HooksPort int
	// WorkDir holds one directory per start (release and addon caches); required.
	WorkDir string
	// DefaultSource is the release source of ClusterStacks that name none; zero means none.
	DefaultSource source.Config
	// StoreOptions are passed to resolver.New.
	StoreOptions []resolver.Option
	// Setup, when set, registers more controllers with each manager, sharing its release store
	// (the demo's OpenStack node image controllers).
	Setup func(mgr ctrl.Manager, releases *resolver.Resolver) error
}

// Operator runs the operator's ClusterStack and ClusterAddon controllers and its runtime
// extension in-process, wired as main.go wires them. It can be stopped and started again, as a
// restarted pod would be.
type Operator struct {
	opts OperatorOptions

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
	starts int
}

// NewOperator returns an Operator that is not started yet.
func NewOperator(opts OperatorOptions) (*Operator, error) {
	if opts.Env == nil || opts.Env.ClusterAPI == nil || opts.HooksPort == 0 || opts.WorkDir == "" {
		return nil, errors.New("creating the operator: Env (with Cluster API), HooksPort and WorkDir are required")
	}
	return &Operator{opts: opts}, nil
}

// Start starts a new manager. Each start gets a fresh release and addon cache, as a restarted pod
// without a persistent volume would.
func (o *Operator) Start() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cancel != nil {
		return errors.New("starting the operator: it is running")
	}
	o.starts++
	mgr, err := ctrl.NewManager(o.opts.Env.Config, ctrl.Options{
		Scheme:                 o.opts.Env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Client:                 client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		// A restart starts a second manager in the same process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return fmt.Errorf("creating the operator's manager: %w", err)
	}
	dir := filepath.Join(o.opts.WorkDir, fmt.Sprintf("operator-%d", o.starts))
	releases, err := resolver.New(mgr.GetClient(), o.opts.DefaultSource, filepath.Join(dir, "releases"), o.opts.StoreOptions...)
	if err != nil {
		return fmt.Errorf("creating the release store: %w", err)
	}
	// Webhooks are left out: Cluster API's webhooks are installed, the operator's are not.
	if err := clusterstack.Setup(mgr, clusterstack.Options{Releases: releases}); err != nil {
		return err
	}
	if err := clusteraddon.Setup(mgr, clusteraddon.Options{
		Releases:              releases,
		AddonCacheDir:         filepath.Join(dir, "addons"),
		HooksPort:             o.opts.HooksPort,
		HooksCertDir:          o.opts.Env.ClusterAPI.CertDir,
		ClusterRetryInterval:  retryInterval,
		ConditionPollInterval: retryInterval,
		ReleaseRetryInterval:  retryInterval,
		ApplyRetryInterval:    retryInterval,
		HookRetryAfter:        retryInterval,
	}); err != nil {
		return err
	}
	if o.opts.Setup != nil {
		if err := o.opts.Setup(mgr, releases); err != nil {
			return err
		}
	}
	if err := mgr.Add(&resolver.Pruner{Reader: mgr.GetClient(), Cache: releases.Cache()}); err != nil {
		return fmt.Errorf("adding the release cache pruner: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	o.cancel, o.done = cancel, done
	return nil
}

// Stop stops the running manager and waits for it; it returns the manager's error, if any.
func (o *Operator) Stop() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cancel == nil {
		return nil
	}
	o.cancel()
	err := <-o.done
	o.cancel, o.done = nil, nil
	if err != nil {
		return fmt.Errorf("stopping the operator: %w", err)
	}
	return nil
}

// Starts returns how often the operator was started.
func (o *Operator) Starts() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.starts
}
