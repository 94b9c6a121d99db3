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
	"runtime/debug"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/controllers/clusteraddon"
	"github.com/seed-a720dd5e/clusterstack-operator/controllers/clusterstack"
	openstackcontrollers "github.com/seed-a720dd5e/clusterstack-operator/controllers/openstack"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/releasestore"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/render"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(clusterv1.AddToScheme(scheme))
	utilruntime.Must(clusterstackv1alpha1.AddToScheme(scheme))
	utilruntime.Must(infrav1alpha1.AddToScheme(scheme))
}

// options are the operator's command-line settings.
type options struct {
	metricsAddr          string
	probeAddr            string
	leaderElect          bool
	webhookPort          int
	webhookCertDir       string
	releaseCacheDir      string
	releaseCheckInterval time.Duration
	// runtimeExtensionPort serves the Cluster API runtime extension (lifecycle hooks).
	runtimeExtensionPort int
	// profilerAddress serves net/http/pprof, to look into CPU and memory use; off by default.
	profilerAddress string
	// render bounds every rendering of a chart or values template (outside input).
	render render.Limits
}

func main() {
	var opts options
	flag.StringVar(&opts.metricsAddr, "metrics-bind-address", ":8080", "Address the metrics endpoint binds to; 0 disables it.")
	flag.StringVar(&opts.probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	flag.BoolVar(&opts.leaderElect, "leader-elect", false, "Elect a leader so that only one replica reconciles at a time.")
	flag.IntVar(&opts.webhookPort, "webhook-port", 9443, "Port of the admission webhook server.")
	flag.StringVar(&opts.webhookCertDir, "webhook-cert-dir", "", "Directory with tls.crt and tls.key for the webhook server; empty means the controller-runtime default.")
	flag.StringVar(&opts.releaseCacheDir, "release-cache-dir", filepath.Join(".cache", "releases"), "Directory where verified cluster-stack releases are cached; relative to the working directory.")
	flag.DurationVar(&opts.releaseCheckInterval, "release-check-interval", 5*time.Minute, "How often release sources are asked for new releases (autoSubscribe); a ClusterStack may override it.")
	flag.IntVar(&opts.runtimeExtensionPort, "runtime-extension-port", 9444, "Port of the Cluster API runtime extension (lifecycle hooks) server; it uses the certificate in --webhook-cert-dir; 0 disables it.")
	flag.StringVar(&opts.profilerAddress, "profiler-address", "", "Address (e.g. localhost:6060) to serve the Go profiler (net/http/pprof) on; empty disables it.")
	opts.render = render.DefaultLimits
	flag.DurationVar(&opts.render.Timeout, render.TimeoutFlag, render.DefaultLimits.Timeout, "How long rendering one chart or values template may take; a release over it is reported as a bad release (Stalled).")
	flag.Func(render.MaxOutputBytesFlag, "How many bytes of objects rendering one chart or values template may produce, a quantity such as 8Mi (default 8Mi).", quantityFlag(&opts.render.MaxOutputBytes))
	flag.Func(render.MaxMemoryFlag, "How much memory rendering one chart or values template may use, a quantity such as 128Mi (default 128Mi). Each rendering runs in its own process: the pod's memory limit must hold the manager plus --"+render.ConcurrencyFlag+" times this.", quantityFlag(&opts.render.MaxMemoryBytes))
	flag.IntVar(&opts.render.Concurrency, render.ConcurrencyFlag, render.DefaultLimits.Concurrency, "How many charts or values templates are rendered at the same time; the others wait.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")
	if err := setRenderLimits(opts.render); err != nil {
		log.Error(err, "Invalid rendering budgets")
		os.Exit(1)
	}

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: opts.metricsAddr},
		HealthProbeBindAddress: opts.probeAddr,
		PprofBindAddress:       opts.profilerAddress,
		LeaderElection:         opts.leaderElect,
		LeaderElectionID:       "clusterstack-operator.clusterstack.x-k8s.io",
		WebhookServer:          webhook.NewServer(webhook.Options{Port: opts.webhookPort, CertDir: opts.webhookCertDir}),
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

	if err := setupControllers(mgr, opts); err != nil {
		log.Error(err, "Unable to set up the controllers")
		os.Exit(1)
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "Unable to set up the health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "Unable to set up the readiness check")
		os.Exit(1)
	}

	log.Info("Starting the manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "The manager stopped with an error")
		os.Exit(1)
	}
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
	releases, err := releasestore.New(mgr.GetClient(), defaultSource, opts.releaseCacheDir)
	if err != nil {
		return err
	}
	if err := clusterstack.Setup(mgr, clusterstack.Options{
		Releases:             releases,
		ReleaseCheckInterval: opts.releaseCheckInterval,
		Webhooks:             true,
	}); err != nil {
		return err
	}

	// OpenStack node image controllers.
	if err := openstackcontrollers.Setup(mgr, openstackcontrollers.Options{Releases: releases}); err != nil {
		return err
	}

	// ClusterAddon controller and runtime hooks.
	if err := clusteraddon.Setup(mgr, clusteraddon.Options{
		Releases:      releases,
		AddonCacheDir: filepath.Join(filepath.Dir(opts.releaseCacheDir), "addons"), // beside the release cache, which owns its directory
		Webhooks:      true,
		HooksPort:     opts.runtimeExtensionPort,
		HooksCertDir:  opts.webhookCertDir,
	}); err != nil {
		return err
	}

	return nil
}
