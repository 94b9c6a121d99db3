package main

import (
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/seed-a720dd5e/clusterstack-operator/controllers/clusteraddon"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/nodeimage"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/render"
)

// parseFlags defines the operator's command-line flags on fs and parses args. It returns the
// settings, the logger's options and whether --version was asked for.
func parseFlags(fs *flag.FlagSet, args []string) (opts options, zapOpts zap.Options, version bool, err error) {
	var printVersion *bool
	fs.StringVar(&opts.metricsAddr, "metrics-bind-address", ":8443", "Address the metrics endpoint binds to (HTTPS with --metrics-secure, else HTTP); 0 disables it.")
	fs.BoolVar(&opts.metricsSecure, "metrics-secure", true, "Serve metrics over HTTPS, only to clients the API server authenticates and authorises for GET /metrics (the metrics-reader ClusterRole); false serves plain HTTP to anyone, for a local run.")
	fs.StringVar(&opts.metricsCertDir, "metrics-cert-dir", "", "Directory with tls.crt and tls.key for the metrics endpoint; empty (or without them) means a self-signed certificate.")
	fs.StringVar(&opts.probeAddr, "health-probe-bind-address", ":8081", "Address the health and readiness probes bind to.")
	fs.BoolVar(&opts.leaderElect, "leader-elect", false, "Elect a leader so that only one replica reconciles at a time.")
	fs.IntVar(&opts.webhookPort, "webhook-port", 9443, "Port of the admission webhook server.")
	fs.BoolVar(&opts.webhooks, "webhooks", true, "Serve the admission webhooks (ClusterStack, ClusterStackRelease and Cluster validation and defaulting). false runs without them, e.g. for make run against a cluster whose webhook configurations do not point at this process; the CRDs' own CEL rules still apply.")
	fs.StringVar(&opts.webhookCertDir, "webhook-cert-dir", "", "Directory with tls.crt and tls.key for the webhook server; empty means the controller-runtime default.")
	fs.StringVar(&opts.releaseCacheDir, "release-cache-dir", filepath.Join(".cache", "releases"), "Directory where verified cluster-stack releases are cached; relative to the working directory.")
	opts.releaseCacheMaxBytes = resolver.DefaultCacheMaxBytes
	fs.Func("release-cache-max-bytes", "How much disk the release cache may use, a quantity such as 1Gi (default 1Gi). Releases no ClusterStackRelease names are removed first; beyond that the least recently used go and are fetched again when needed.", quantityFlag(&opts.releaseCacheMaxBytes))
	fs.DurationVar(&opts.releaseCheckInterval, "release-check-interval", 5*time.Minute, "How often release sources are asked for new releases (autoSubscribe); a ClusterStack may override it.")
	fs.IntVar(&opts.runtimeExtensionPort, "runtime-extension-port", 9444, "Port of the Cluster API runtime extension (lifecycle hooks) server; it uses the certificate in --webhook-cert-dir; 0 disables it.")
	fs.StringVar(&opts.profilerAddress, "profiler-address", "", "Address (e.g. localhost:6060) to serve the Go profiler (net/http/pprof) on; empty disables it, and the sampling of heap allocations for its profiles.")
	fs.StringVar(&opts.egressAllowCIDRs, "egress-allow-cidrs", "", "Comma-separated CIDRs (or addresses) the operator may connect to for release sources, image URLs and chart repositories although the egress policy refuses them (loopback, link-local, metadata, private); e.g. an image mirror at 10.20.0.0/16.")
	fs.StringVar(&opts.egressAllowHosts, "egress-allow-hosts", "", "Comma-separated host names (exact, or *.example.org for sub-domains) whose connections the egress policy does not check, e.g. a registry mirror on a private network.")
	fs.BoolVar(&opts.egressAllowPrivate, "egress-allow-private", false, "Allow private addresses (RFC 1918, fc00::/7, 100.64.0.0/10) for release sources, image URLs and chart repositories; loopback, link-local and cloud metadata stay refused.")
	fs.StringVar(&opts.localSourceRoots, "local-source-root", "", "Comma-separated absolute directories that ClusterStacks' source.local.path may read below; empty refuses local sources.")
	fs.StringVar(&opts.chartCacheDir, "chart-cache-dir", "", "Directory where the Chart.yaml dependencies of addon charts are cached (by digest, shared by all releases); empty means \"charts\" beside --release-cache-dir.")
	fs.StringVar(&opts.chartCredentialsSecret, "chart-credentials-secret", "", "<namespace>/<name> of a Secret whose key repositories.yaml lists credentials per chart repository URL (url, username, password or token); empty means anonymous access.")
	opts.render = render.DefaultLimits
	fs.DurationVar(&opts.render.Timeout, render.TimeoutFlag, render.DefaultLimits.Timeout, "How long rendering one chart or values template may take; a release over it is reported as a bad release (Stalled).")
	fs.Func(render.MaxOutputBytesFlag, "How many bytes of objects rendering one chart or values template may produce, a quantity such as 8Mi (default 8Mi).", quantityFlag(&opts.render.MaxOutputBytes))
	fs.Func(render.MaxMemoryFlag, "How much memory rendering one chart or values template may use above what its worker process holds between renderings, a quantity such as 128Mi (default 128Mi). Renderings run in up to --"+render.ConcurrencyFlag+" worker processes: the pod's memory limit must hold the manager plus --"+render.ConcurrencyFlag+" times this.", quantityFlag(&opts.render.MaxMemoryBytes))
	fs.IntVar(&opts.render.Concurrency, render.ConcurrencyFlag, render.DefaultLimits.Concurrency, "How many charts or values templates are rendered at the same time, each in a worker process of its own (started when needed, reused); the others wait.")
	fs.IntVar(&opts.concurrency.clusterStack, "clusterstack-concurrency", 4, "How many ClusterStacks are reconciled at the same time (each of a namespace of its own in a multi-tenant fleet: one at a time queues a new tenant behind every other stack's reconcile).")
	fs.IntVar(&opts.concurrency.clusterStackRelease, "clusterstackrelease-concurrency", 4, "How many ClusterStackReleases are reconciled (fetched, rendered, applied) at the same time.")
	fs.IntVar(&opts.concurrency.openStackClusterStackRelease, "openstackclusterstackrelease-concurrency", 4, "How many OpenStackClusterStackReleases are reconciled at the same time.")
	fs.IntVar(&opts.concurrency.openStackNodeImageRelease, "openstacknodeimagerelease-concurrency", 4, "How many node images are brought into Glance at the same time.")
	fs.IntVar(&opts.concurrency.clusterAddon, "clusteraddon-concurrency", clusteraddon.DefaultWorkers, "How many ClusterAddons (workload clusters' addons) are reconciled at the same time; a reconcile mostly waits for the API servers (the rendering itself is bounded by --"+render.ConcurrencyFlag+").")
	fs.IntVar(&opts.concurrency.clusterAddonCreate, "clusteraddon-create-concurrency", clusteraddon.DefaultCreateWorkers, "How many Clusters get their ClusterAddon created at the same time (one API write each).")
	fs.DurationVar(&opts.addonDriftInterval, "addon-drift-check-interval", clusteraddon.DefaultDriftCheckInterval, "How often the converged addons of each workload cluster are checked for drift (objects changed or deleted there); workload clusters are not watched.")
	fs.DurationVar(&opts.openstackRequestTimeout, "openstack-request-timeout", scope.DefaultRequestTimeout, "Deadline of each OpenStack (Keystone, Glance) request, from sending it to reading the answer; image uploads have --image-transfer-progress-timeout instead.")
	fs.Func("capability-check-interval", "How long the result of a release's cloud capability check (condition CloudCapable: load balancer, flavors, external network, image formats, quota) is reused before the cloud is asked again, a positive duration (default 1h); a changed spec or release is checked at once.", func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		if d <= 0 {
			return fmt.Errorf("must be positive, got %s", v)
		}
		opts.capabilityCheckInterval = d
		return nil
	})
	fs.DurationVar(&opts.imageTransferProgressTimeout, "image-transfer-progress-timeout", nodeimage.DefaultTransferProgressTimeout, "An image upload (with the download feeding it) fails when no byte moved for this long; there is no total limit.")
	zapOpts.BindFlags(fs)
	fs.Float64Var(&opts.qps, "qps", 50, "Requests per second the manager's client may send to the management API server (the reference's flag and default).")
	fs.IntVar(&opts.burst, "burst", 100, "Requests the manager's client may send at once above --qps (the reference's flag and default).")
	fs.Float64Var(&opts.workloadQPS, "workload-qps", clusteraddon.DefaultWorkloadQPS, "Requests per second the client of each workload cluster may send (addon objects are applied a chart at a time).")
	fs.IntVar(&opts.workloadBurst, "workload-burst", clusteraddon.DefaultWorkloadBurst, "Requests the client of each workload cluster may send at once above --workload-qps.")
	fs.Func("namespace", "Comma-separated namespaces whose objects the operator watches and reconciles; empty means all (the reference's flag, which takes one).", func(v string) error {
		for _, ns := range strings.Split(v, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				opts.watchNamespaces = append(opts.watchNamespaces, ns)
			}
		}
		return nil
	})
	fs.StringVar(&opts.leaderElectNamespace, "leader-elect-namespace", "", "Namespace of the leader-election lease; empty means the namespace the operator runs in (the reference's flag).")
	fs.DurationVar(&opts.syncPeriod, "sync-period", 0, "How often every cached object is reconciled again even without a change; 0 means controller-runtime's default (10h). The controllers re-check what they need on their own intervals (drift, release checks, images).")
	// The reference's --log-level, mapped onto the zap level (--zap-log-level is the same).
	fs.Func("log-level", "Log level: debug, info or error (the reference's flag; --zap-log-level also takes a number for more detail).", func(v string) error {
		levels := map[string]zapcore.Level{"debug": zapcore.DebugLevel, "info": zapcore.InfoLevel, "error": zapcore.ErrorLevel}
		l, ok := levels[v]
		if !ok {
			return fmt.Errorf("want debug, info or error, got %q", v)
		}
		zapOpts.Level = l
		return nil
	})
	// The reference's flags that have no meaning here are refused with what to use instead, so
	// that a Deployment carried over from the reference does not start with a setting ignored.
	for name, instead := range referenceOnlyFlags {
		refuse := func(string) error { return errors.New(instead) }
		if name == "local" { // a boolean in the reference: --local alone must be refused too
			fs.BoolFunc(name, "The reference operator's flag, not supported: "+instead, refuse)
			continue
		}
		fs.Func(name, "The reference operator's flag, not supported: "+instead, refuse)
	}
	printVersion = fs.Bool("version", false, "Print the operator's version, commit, build date and Go version, and exit.")
	if err := fs.Parse(args); err != nil {
		return options{}, zap.Options{}, false, err
	}
	return opts, zapOpts, *printVersion, nil
}

// referenceOnlyFlags are the SCS reference operator's flags that this operator does not take,
// with what to use instead.
var referenceOnlyFlags = map[string]string{
	"release-dir":  "use --release-cache-dir (releases are verified and cached by content there)",
	"local":        "use a ClusterStack with spec.source.local.path below a directory given to --local-source-root",
	"watch-filter": "the operator reconciles every Cluster of its ClusterClasses; restrict it with --namespace instead",
}
