// Command manager runs the ClusterStack operator for OpenStack: it makes the cluster-stack
// releases that ClusterStack objects ask for available as Cluster API ClusterClasses, makes sure
// their node images exist in Glance, and installs and upgrades the addons of every workload
// cluster.
package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/controllers/clusteraddon"
	"github.com/seed-a720dd5e/clusterstack-operator/controllers/clustercredential"
	"github.com/seed-a720dd5e/clusterstack-operator/controllers/clusterstack"
	openstackcontrollers "github.com/seed-a720dd5e/clusterstack-operator/controllers/openstack"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/chartdeps"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	operatormetrics "github.com/seed-a720dd5e/clusterstack-operator/internal/metrics"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/nodeimage"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/reconciler"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/render"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/startup"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/version"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(clusterv1.AddToScheme(scheme))
	utilruntime.Must(clusterstackv1alpha1.AddToScheme(scheme))
	utilruntime.Must(infrav1alpha1.AddToScheme(scheme))
}

// concurrency holds the worker count of each controller; zero means the controller's default.
type concurrency struct {
	clusterStack, clusterStackRelease, openStackClusterStackRelease, openStackNodeImageRelease, clusterAddon, clusterAddonCreate int
}

// validate refuses counts below one: zero workers would reconcile nothing, without a word.
func (c concurrency) validate() error {
	for name, n := range map[string]int{
		"clusterstack": c.clusterStack, "clusterstackrelease": c.clusterStackRelease, "openstackclusterstackrelease": c.openStackClusterStackRelease,
		"openstacknodeimagerelease": c.openStackNodeImageRelease, "clusteraddon": c.clusterAddon, "clusteraddon-create": c.clusterAddonCreate,
	} {
		if n < 1 {
			return fmt.Errorf("--%s-concurrency must be at least 1, got %d", name, n)
		}
	}
	return nil
}

// options are the operator's command-line settings.
type options struct {
	metricsAddr    string
	metricsSecure  bool
	metricsCertDir string
	probeAddr      string
	leaderElect    bool
	webhookPort    int
	// webhooks registers the admission webhooks; off for a local run without certificates.
	webhooks             bool
	webhookCertDir       string
	releaseCacheDir      string
	releaseCheckInterval time.Duration
	addonDriftInterval   time.Duration
	// releaseCacheMaxBytes bounds the release cache on disk (least recently used evicted).
	releaseCacheMaxBytes int64
	// concurrency is how many objects of each kind are reconciled at the same time.
	concurrency concurrency
	// runtimeExtensionPort serves the Cluster API runtime extension (lifecycle hooks).
	runtimeExtensionPort int
	// profilerAddress serves net/http/pprof, to look into CPU and memory use; off by default.
	profilerAddress string
	// openstackRequestTimeout bounds each Keystone and Glance request.
	openstackRequestTimeout time.Duration
	// imageTransferProgressTimeout fails an image upload when no byte moved for this long.
	imageTransferProgressTimeout time.Duration
	// capabilityCheckInterval is how long a release's cloud capability check is reused.
	capabilityCheckInterval time.Duration
	// egressAllowCIDRs, egressAllowHosts and egressAllowPrivate relax the outbound policy for
	// content named by ClusterStacks and releases (internal/egress).
	egressAllowCIDRs   string
	egressAllowHosts   string
	egressAllowPrivate bool
	// localSourceRoots are the directories local release sources may read below.
	localSourceRoots string
	// chartCacheDir caches the Chart.yaml dependencies of addon charts; empty means "charts"
	// beside the release cache.
	chartCacheDir string
	// chartCredentialsSecret is <namespace>/<name> of the Secret with chart repository
	// credentials (key repositories.yaml); empty means anonymous access.
	chartCredentialsSecret string
	// render bounds every rendering of a chart or values template (outside input).
	render render.Limits
	// qps and burst bound the manager's client to the management API server.
	qps   float64
	burst int
	// workloadQPS and workloadBurst bound each workload cluster's client.
	workloadQPS   float64
	workloadBurst int
	// watchNamespaces restricts what the operator watches; empty means every namespace.
	watchNamespaces []string
	// leaderElectNamespace holds the leader-election lease; empty means the operator's own.
	leaderElectNamespace string
	// syncPeriod is the resync of every cached object; zero means controller-runtime's default.
	syncPeriod time.Duration
}

func main() {
	opts, zapOpts, printVersion, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		os.Exit(2) // the flag package has said what is wrong
	}

	// Nothing reads the heap profile without the profiler, and sampling it is not free: every
	// sampled allocation walks its stack through the binary's function tables, which makes them
	// resident, and keeps a bucket per call stack. (As early as possible, as runtime documents.)
	if opts.profilerAddress == "" {
		goruntime.MemProfileRate = 0
	}

	build := version.Get()
	if printVersion {
		fmt.Println(build)
		return
	}

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	log.Info("Operator build", "version", build.Version, "revision", build.Revision, "buildDate", build.BuildDate)
	metrics.Registry.MustRegister(build.Collector())
	if err := opts.concurrency.validate(); err != nil {
		log.Error(err, "Invalid concurrency")
		os.Exit(1)
	}
	if err := setRenderLimits(opts.render); err != nil {
		log.Error(err, "Invalid rendering budgets")
		os.Exit(1)
	}
	// The workers start beside the manager's own start-up, which renders nothing yet.
	render.StartWorkers()

	restConfig := ctrl.GetConfigOrDie()
	restConfig.QPS, restConfig.Burst = float32(opts.qps), opts.burst
	// The cache's informers wait for the warm-up of their kind (internal/startup), which starts
	// once the controllers have said what they watch.
	gate := startup.NewGate()
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Cache: cacheOptions(opts),
		NewCache: func(config *rest.Config, o cache.Options) (cache.Cache, error) {
			c, err := cache.New(config, o)
			if err != nil {
				return nil, err
			}
			return gate.Cache(c), nil
		},
		LeaderElectionNamespace: opts.leaderElectNamespace,
		Scheme:                  scheme,
		Metrics:                 operatormetrics.ServerOptions(opts.metricsAddr, opts.metricsSecure, opts.metricsCertDir),
		HealthProbeBindAddress:  opts.probeAddr,
		PprofBindAddress:        opts.profilerAddress,
		LeaderElection:          opts.leaderElect,
		LeaderElectionID:        "clusterstack-operator.clusterstack.x-k8s.io",
		WebhookServer:           webhook.NewServer(webhook.Options{Port: opts.webhookPort, CertDir: opts.webhookCertDir}),
		Client: client.Options{Cache: &client.CacheOptions{
			// Credentials Secrets are read one by one when needed: the operator neither watches
			// nor caches every Secret of the management cluster.
			DisableFor: []client.Object{&corev1.Secret{}},
		}},
	})
	if err != nil {
		log.Error(err, "Unable to create the manager")
		os.Exit(1)
	}

	// The state gauges read the manager's cache, which the controllers fill.
	if err := metrics.Registry.Register(operatormetrics.NewStateCollector(mgr.GetCache())); err != nil {
		log.Error(err, "Unable to register the state metrics")
		os.Exit(1)
	}

	if err := setupControllers(mgr, opts); err != nil {
		log.Error(err, "Unable to set up the controllers")
		os.Exit(1)
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "Unable to set up the health check")
		os.Exit(1)
	}
	// The API server's watch caches of the watched kinds are warmed while the manager starts;
	// each informer waits for its own kind's (the gate). Ready means ready to act: every watched
	// kind's cache has synced.
	ctx := ctrl.SetupSignalHandler()
	kinds := watchedKinds(mgr, opts.watchNamespaces)
	warmer := startup.Warmer{Config: restConfig, HTTPClient: mgr.GetHTTPClient(), Mapper: mgr.GetRESTMapper(), Scheme: scheme}
	warming := warmer.Start(ctx, kinds, startup.DefaultWarmTimeout)
	gate.Open(warming)
	if err := mgr.AddReadyzCheck("caches", startup.CachesSynced(mgr.GetCache(), scheme, kinds, warming)); err != nil {
		log.Error(err, "Unable to set up the readiness check")
		os.Exit(1)
	}
	go func() {
		<-warming.Done()
		refused, perKind, err := warming.Result()
		log.V(4).Info("Warmed the API server's watch caches", "duration", warming.Took(), "refused", refused, "kinds", perKind, "error", err)
	}()

	log.Info("Starting the manager")
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "The manager stopped with an error")
		os.Exit(1)
	}
}

// watchedKinds are the kinds the controllers set up on mgr watch, as they recorded them
// (internal/reconciler). A manager restricted to namespaces probes the watch caches in the first
// of them.
func watchedKinds(mgr ctrl.Manager, namespaces []string) []startup.Kind {
	ns := ""
	if len(namespaces) > 0 {
		ns = namespaces[0]
	}
	var kinds []startup.Kind
	for _, o := range reconciler.WatchedKinds(mgr) {
		kinds = append(kinds, startup.Kind{Object: o, Namespace: ns})
	}
	return kinds
}

// cacheOptions restricts the manager's cache to the watched namespaces, sets its resync and
// trims what it keeps. Every cached object loses its managedFields, often the larger part of a
// small object: nothing reads them from the cache (the applier compares field ownership on live
// objects, which it reads uncached as unstructured). Secrets are not cached at all (see the
// client's options).
func cacheOptions(opts options) cache.Options {
	c := cache.Options{DefaultTransform: cache.TransformStripManagedFields()}
	if len(opts.watchNamespaces) > 0 {
		c.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range opts.watchNamespaces {
			c.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	if opts.syncPeriod > 0 {
		c.SyncPeriod = &opts.syncPeriod
	}
	return c
}

// quantityFlag parses a Kubernetes quantity ("8Mi", "134217728") into a byte count.
func quantityFlag(dst *int64) func(string) error {
	return func(v string) error {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return err
		}
		if q.Sign() <= 0 {
			return fmt.Errorf("must be positive, got %s", v)
		}
		*dst = q.Value()
		return nil
	}
}

// setRenderLimits sets the rendering budgets and makes room for them in the manager's own memory
// limit: renderings run in child processes, and the pod's limit (GOMEMLIMIT in the Deployment)
// holds the manager and its children together. Without GOMEMLIMIT nothing is lowered.
func setRenderLimits(l render.Limits) error {
	if l.Timeout <= 0 || l.Concurrency <= 0 {
		return fmt.Errorf("--%s and --%s must be positive", render.TimeoutFlag, render.ConcurrencyFlag)
	}
	render.SetLimits(l)
	limit := debug.SetMemoryLimit(-1)
	if limit == math.MaxInt64 {
		return nil
	}
	children := int64(l.Concurrency) * l.MaxMemoryBytes
	const managerFloor = 96 << 20
	if limit-children < managerFloor {
		return fmt.Errorf("the memory limit (GOMEMLIMIT) of %d MiB leaves less than %d MiB for the manager beside --%s=%d renderings of --%s=%d MiB: lower these or raise the limit",
			limit>>20, managerFloor>>20, render.ConcurrencyFlag, l.Concurrency, render.MaxMemoryFlag, l.MaxMemoryBytes>>20)
	}
	debug.SetMemoryLimit(limit - children)
	return nil
}

// setupControllers registers every controller and webhook with the manager. Each area keeps its
// own block so that they can evolve independently.
func setupControllers(mgr ctrl.Manager, opts options) error {
	// ClusterStack and ClusterStackRelease controllers.
	// releases is shared with every controller that needs release files (node images, addons):
	// the cache allows one instance per directory, and a release is downloaded once.
	defaultSource, err := source.FromEnv(os.Getenv)
	if err != nil && !errors.Is(err, source.ErrNoSource) {
		return fmt.Errorf("reading the default release source from the environment: %w", err)
	}
	policy, localRoots, err := confinement(opts)
	if err != nil {
		return err
	}
	releases, err := resolver.New(mgr.GetClient(), defaultSource, opts.releaseCacheDir, resolver.WithConfinement(policy, localRoots), resolver.WithCacheMaxBytes(opts.releaseCacheMaxBytes))
	if err != nil {
		return err
	}
	if err := mgr.Add(&resolver.Pruner{Reader: mgr.GetClient(), Cache: releases.Cache()}); err != nil {
		return fmt.Errorf("adding the release cache pruner: %w", err)
	}
	if err := clusterstack.Setup(mgr, clusterstack.Options{
		Releases:             releases,
		ReleaseCheckInterval: opts.releaseCheckInterval,
		ClusterStackWorkers:  opts.concurrency.clusterStack,
		ReleaseWorkers:       opts.concurrency.clusterStackRelease,
		Webhooks:             opts.webhooks,
		// The OpenStack controllers below remove it.
		ProviderFinalizer: infrav1alpha1.OpenStackClusterStackReleaseFinalizer,
	}); err != nil {
		return err
	}

	// OpenStack node image controllers.
	// Image downloads and the URLs handed to Glance's web-download obey the egress policy. The
	// OpenStack API client (Keystone, Glance) does not: its endpoints come from the
	// administrator's clouds.yaml and are often on private or link-local networks.
	// One login per credentials Secret, shared by the node images and the cluster credentials.
	cloudClients := scope.NewFactory(mgr.GetAPIReader(), scope.WithRequestTimeout(opts.openstackRequestTimeout))
	if err := openstackcontrollers.Setup(mgr, openstackcontrollers.Options{
		Releases:                releases,
		ImageClients:            cloudClients,
		NodeImage:               nodeimage.Options{TransferProgressTimeout: opts.imageTransferProgressTimeout, Egress: policy},
		ReleaseWorkers:          opts.concurrency.openStackClusterStackRelease,
		NodeImageWorkers:        opts.concurrency.openStackNodeImageRelease,
		CapabilityCheckInterval: opts.capabilityCheckInterval,
	}); err != nil {
		return err
	}

	// Per-cluster application credentials.
	if err := clustercredential.Setup(mgr, clustercredential.Options{
		Stacks:   releases,
		Keystone: cloudClients,
	}); err != nil {
		return err
	}

	// ClusterAddon controller and runtime hooks.
	var chartCredentials chartdeps.Credentials
	if opts.chartCredentialsSecret != "" {
		ns, name, ok := strings.Cut(opts.chartCredentialsSecret, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("--chart-credentials-secret %q: want <namespace>/<name>", opts.chartCredentialsSecret)
		}
		// Read through the API reader: Secrets are not cached (see the manager's options).
		chartCredentials = &chartdeps.SecretCredentials{Reader: mgr.GetAPIReader(), Secret: types.NamespacedName{Namespace: ns, Name: name}}
	}
	chartCacheDir := opts.chartCacheDir
	if chartCacheDir == "" {
		chartCacheDir = filepath.Join(filepath.Dir(opts.releaseCacheDir), "charts") // beside the release cache, which owns its directory
	}
	if err := clusteraddon.Setup(mgr, clusteraddon.Options{
		Releases:           releases,
		AddonCacheDir:      filepath.Join(filepath.Dir(opts.releaseCacheDir), "addons"), // beside the release cache, which owns its directory
		ChartCacheDir:      chartCacheDir,
		ChartCredentials:   chartCredentials,
		Workers:            opts.concurrency.clusterAddon,
		CreateWorkers:      opts.concurrency.clusterAddonCreate,
		WorkloadQPS:        float32(opts.workloadQPS),
		WorkloadBurst:      opts.workloadBurst,
		DriftCheckInterval: opts.addonDriftInterval,
		// Chart repositories are named by release content: they obey the egress policy.
		ChartHTTPClient: policy.Client(2 * time.Minute),
		Webhooks:        opts.webhooks,
		HooksPort:       opts.runtimeExtensionPort,
		HooksCertDir:    opts.webhookCertDir,
	}); err != nil {
		return err
	}

	return nil
}

// confinement builds the outbound policy and the served local-source roots from the flags.
func confinement(opts options) (*egress.Policy, []string, error) {
	cidrs, err := egress.ParseCIDRs(opts.egressAllowCIDRs)
	if err != nil {
		return nil, nil, err
	}
	hosts, err := egress.ParseHosts(opts.egressAllowHosts)
	if err != nil {
		return nil, nil, err
	}
	var roots []string
	for _, r := range strings.Split(opts.localSourceRoots, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		if err := source.CheckLocalRoot(r); err != nil {
			return nil, nil, err
		}
		roots = append(roots, filepath.Clean(r))
	}
	return &egress.Policy{AllowPrivate: opts.egressAllowPrivate, AllowCIDRs: cidrs, AllowHosts: hosts}, roots, nil
}
