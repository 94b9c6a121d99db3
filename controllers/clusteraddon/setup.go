// Package clusteraddon installs and upgrades the addons (CNI, cloud controller manager, CSI,
// metrics) of every workload Cluster that uses a cluster-stack ClusterClass: the Cluster
// controller keeps one ClusterAddon per such Cluster, the ClusterAddon controller renders the
// release's addons and applies them into the workload cluster stage by stage, the Cluster
// webhooks keep class changes sane, and the runtime hooks let Cluster API wait for the addons of
// a new release before it upgrades anything. Every bit of upgrade progress lives in the
// ClusterAddon, so a restart resumes where it stopped.
package clusteraddon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/chartdeps"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/hooks"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/workloadcluster"
)

// FieldManager is the server-side apply field manager of addon objects in workload clusters.
const FieldManager = "clusterstack-operator"

// DefaultChartTimeout bounds one request for a chart dependency when Options.ChartHTTPClient is
// not set.
const DefaultChartTimeout = 2 * time.Minute

// Releases gives the verified release a Cluster's class names; *resolver.Resolver implements it.
type Releases interface {
	ReleaseFor(ctx context.Context, namespace string, n name.Release) (*release.Release, error)
}

// Options configure Setup. Zero durations mean the defaults of the same name.
type Options struct {
	// Releases resolves releases; required.
	Releases Releases
	// AddonCacheDir is where addon archives are extracted, one directory per archive; required.
	AddonCacheDir string
	// ChartCacheDir is where the Chart.yaml dependencies of addon charts are cached (by content
	// digest, shared by every release, kept across restarts); empty means a directory "charts"
	// beside AddonCacheDir.
	ChartCacheDir string
	// ChartHTTPClient fetches chart dependencies (Helm repositories and OCI registries); it
	// carries the operator's outbound policy. Nil means a plain client with DefaultChartTimeout.
	ChartHTTPClient *http.Client
	// ChartCredentials, when set, gives the credentials of chart repositories
	// (*chartdeps.SecretCredentials reads them from a Secret); nil means anonymous.
	ChartCredentials chartdeps.Credentials
	// Webhooks registers the Cluster webhooks with the manager's webhook server.
	Webhooks bool
	// HooksPort, when not zero, serves the Cluster API runtime extension on this port, with the
	// certificate in HooksCertDir.
	HooksPort    int
	HooksCertDir string

	ClusterRetryInterval  time.Duration
	ConditionPollInterval time.Duration
	ReleaseRetryInterval  time.Duration
	ApplyRetryInterval    time.Duration
	DriftCheckInterval    time.Duration
	// Workers is how many ClusterAddons are reconciled at the same time; zero means
	// DefaultWorkers.
	Workers int
	// CreateWorkers is how many Clusters get their ClusterAddon created at the same time; zero
	// means DefaultCreateWorkers.
	CreateWorkers int
	// WorkloadQPS and WorkloadBurst bound the client of each workload cluster; zero means
	// DefaultWorkloadQPS and DefaultWorkloadBurst.
	WorkloadQPS   float32
	WorkloadBurst int
	// WorkloadConfigHook, when set, adjusts the REST config of each workload cluster client
	// (tests count requests with it).
	WorkloadConfigHook func(cluster types.NamespacedName, cfg *rest.Config)
	// HookRetryAfter is what a blocking hook answers while the addons are not done; zero means
	// hooks.DefaultRetryAfter.
	HookRetryAfter time.Duration
}

// Defaults of the Options of the same names.
const (
	// DefaultWorkers: ClusterAddons are independent, and a reconcile mostly waits for the
	// management and the workload API servers; rendering, the CPU-heavy step, is bounded by the
	// rendering's own concurrency. Sixteen keep a fleet's new Clusters moving without holding
	// more workload connections than the connection cache keeps (workloadcluster.DefaultMaxConnections).
	DefaultWorkers = 16
	// DefaultCreateWorkers: creating a ClusterAddon is one write to the management API server;
	// one at a time, a fleet's new Clusters waited in line for it.
	DefaultCreateWorkers = 8
	// DefaultWorkloadQPS and DefaultWorkloadBurst: addon objects come in bursts (a chart at a
	// time); client-go's defaults of 5 QPS would make a 50-object chart take ten seconds. Each
	// workload cluster has its own client, so this bounds what one cluster's API server gets.
	DefaultWorkloadQPS   = 50
	DefaultWorkloadBurst = 100
)

// Setup registers the Cluster and ClusterAddon controllers, and optionally the Cluster webhooks
// and the runtime extension server, with mgr.
func Setup(mgr ctrl.Manager, opts Options) error {
	if opts.Releases == nil || opts.AddonCacheDir == "" {
		return errors.New("setting up the ClusterAddon controllers: Options.Releases and Options.AddonCacheDir are required")
	}
	chartDir := opts.ChartCacheDir
	if chartDir == "" {
		chartDir = filepath.Join(filepath.Dir(filepath.Clean(opts.AddonCacheDir)), "charts")
	}
	httpClient := opts.ChartHTTPClient
	if httpClient == nil {
		httpClient = &http.Client{Timeout: DefaultChartTimeout}
	}
	deps, err := chartdeps.New(chartdeps.Options{Dir: chartDir, HTTPClient: httpClient, Credentials: opts.ChartCredentials})
	if err != nil {
		return fmt.Errorf("setting up the ClusterAddon controllers: %w", err)
	}
	qps, burst := opts.WorkloadQPS, opts.WorkloadBurst
	if qps <= 0 {
		qps = DefaultWorkloadQPS
	}
	if burst <= 0 {
		burst = DefaultWorkloadBurst
	}
	workload := &workloadcluster.Cache{Reader: mgr.GetAPIReader(), Scheme: mgr.GetScheme(), ConfigHook: func(cluster types.NamespacedName, cfg *rest.Config) {
		cfg.QPS, cfg.Burst = qps, burst
		if opts.WorkloadConfigHook != nil {
			opts.WorkloadConfigHook(cluster, cfg)
		}
	}}
	cr := &ClusterReconciler{
		Client:   mgr.GetClient(),
		Workload: workload,
		Recorder: mgr.GetEventRecorder("clusteraddon-create-controller"),
		Workers:  opts.CreateWorkers,
	}
	if err := cr.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the Cluster controller of addons: %w", err)
	}
	ar := &ClusterAddonReconciler{
		Client:                mgr.GetClient(),
		APIReader:             mgr.GetAPIReader(),
		Mapper:                mgr.GetRESTMapper(),
		Releases:              opts.Releases,
		Renderer:              &addon.Renderer{Dir: opts.AddonCacheDir, Dependencies: deps},
		Workload:              workload,
		Recorder:              mgr.GetEventRecorder("clusteraddon-controller"),
		ClusterRetryInterval:  opts.ClusterRetryInterval,
		ConditionPollInterval: opts.ConditionPollInterval,
		ReleaseRetryInterval:  opts.ReleaseRetryInterval,
		ApplyRetryInterval:    opts.ApplyRetryInterval,
		DriftCheckInterval:    opts.DriftCheckInterval,
		Workers:               opts.Workers,
	}
	if err := ar.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the ClusterAddon controller: %w", err)
	}
	if opts.Webhooks {
		if err := SetupWebhooks(mgr); err != nil {
			return err
		}
	}
	if opts.HooksPort != 0 {
		srv, err := hooks.NewServer(hooks.ServerOptions{
			Port:       opts.HooksPort,
			CertDir:    opts.HooksCertDir,
			Client:     mgr.GetAPIReader(),
			Writer:     mgr.GetClient(),
			RetryAfter: opts.HookRetryAfter,
		})
		if err != nil {
			return fmt.Errorf("setting up the runtime extension: %w", err)
		}
		if err := mgr.Add(srv); err != nil {
			return fmt.Errorf("adding the runtime extension server: %w", err)
		}
	}
	return nil
}
