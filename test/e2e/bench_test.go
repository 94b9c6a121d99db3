package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// Timeouts only catch what never works; they are far above any figure seen.
const (
	readyLimit  = 5 * time.Minute
	settleQuiet = 5 * time.Second
	settleLimit = 2 * time.Minute
)

// benchDriftInterval is the manager's --addon-drift-check-interval in the benchmarks that measure
// an idle fleet (BENCH_E2E_DRIFT_INTERVAL overrides it), and their default window: with a window
// as long as the interval, every ClusterAddon makes about one drift check in it. The manager's
// default (5m) would make the window that long.
const benchDriftInterval = 30 * time.Second

// defaultDriftInterval is the manager's default --addon-drift-check-interval, which the idle rate
// per 1000 Clusters is stated for.
const defaultDriftInterval = 5 * time.Minute

// BenchmarkManager20Clusters runs the manager binary and measures, in this order:
//   - s/two-releases-ready: from creating a ClusterStack with versions [v1, v2] (autoSubscribe
//     off, providerRef to an OpenStackClusterStackReleaseTemplate) until both its
//     ClusterStackReleases are ready: listing and fetching from the registry, verification, node
//     images downloaded and uploaded to Glance, ClusterClass rendered and applied;
//   - s/two-releases-ready-warm: the same, in another namespace, once the 20 tenant stacks below are
//     ready: the API server has served every kind the releases write (its first writes of a kind
//     cost it more) and Glance holds both images, which the releases adopt;
//   - s/20-clusters-addons: 20 tenant namespaces, each with a ClusterStack [v1] made ready first
//     (s/20-stacks-ready), then from creating one Cluster per namespace (kubeconfig Secret for the
//     workload API server, control plane initialized) until all 20 ClusterAddons are ready.
//     The Clusters are spread over BENCH_E2E_WORKLOAD_SERVERS (default 4) workload API servers;
//     workload-requests/new-cluster is every request the manager sent to them until the addons
//     were ready, per Cluster (rest_client_requests_total by host);
//   - writes-converged (mgmt- and workload- split) and openstack-calls-converged in a window
//     (BENCH_E2E_WINDOW, default benchDriftInterval) after the manager has settled, from its own
//     metrics (rest_client_requests_total, clusterstack_openstack_requests_total) and the double's
//     counter (openstack-calls-converged-double); idle-requests (and its mgmt and workload parts)
//     every request in the window, with a drift check of every ClusterAddon in it, and
//     idle-req/s-per-1000-clusters the rate that makes for 1000 Clusters at the default drift
//     interval (5m);
//   - MiB-peak-rss: VmHWM of the manager process at the end; MiB-peak-render-workers-rss and
//     -anon: the largest sum, sampled every 100 ms, of the VmHWM and of the RssAnon of the
//     manager's rendering workers (child processes whose memory its RSS does not show; VmHWM
//     includes the binary's pages they share with the manager, RssAnon does not);
//   - glance-uploads, glance-images and distinct-images: 22 namespaces share one Glance project.
func BenchmarkManager20Clusters(b *testing.B) {
	for i := 0; i < b.N; i++ {
		run20Clusters(b)
	}
}

func run20Clusters(b *testing.B) {
	const tenants = 20
	drift := driftFromEnv(b)
	window := windowFromEnv(b, drift)
	s := newScenario(b, scenarioOptions{driftInterval: drift})
	defer s.close()
	ctx := context.Background()

	watchCtx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	r, err := s.watchReadiness(watchCtx)
	if err != nil {
		b.Fatal(err)
	}

	const releasesNS = "e2e-releases"
	if err := s.prepareNamespace(ctx, releasesNS); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := s.createClusterStack(ctx, releasesNS, []string{"v1", "v2"}); err != nil {
		b.Fatal(err)
	}
	twoReleases := s.waitReady(r, "two releases ready", kindRelease, releasesNS, 2, readyLimit, s.releasesReady(releasesNS, 2)).Sub(start)
	_, imagesDone, _ := r.count(kindNodeImage, releasesNS)
	nodeImages := imagesDone.Sub(start)
	b.Logf("two releases, from creating the ClusterStack:%s", r.timeline(releasesNS, start))

	tenant := func(i int) string { return fmt.Sprintf("tenant-%02d", i) }
	if err := inParallel(tenants, func(i int) error { return s.prepareNamespace(ctx, tenant(i)) }); err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	if err := inParallel(tenants, func(i int) error { return s.createClusterStack(ctx, tenant(i), []string{"v1"}) }); err != nil {
		b.Fatal(err)
	}
	stacksReady := s.waitReady(r, "20 tenant ClusterStacks ready", kindRelease, "", 2+tenants, readyLimit, s.releasesReady("", 2+tenants)).Sub(start)

	// The same two releases once more, in a namespace of their own, now that the API server has
	// served every kind they write and Glance holds their images: the "API server warm".
	const warmNS = "e2e-releases-warm"
	if err := s.prepareNamespace(ctx, warmNS); err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	if err := s.createClusterStack(ctx, warmNS, []string{"v1", "v2"}); err != nil {
		b.Fatal(err)
	}
	twoWarm := s.waitReady(r, "two releases ready, API server warm", kindRelease, warmNS, 2, readyLimit, s.releasesReady(warmNS, 2)).Sub(start)
	b.Logf("two releases on a warm API server, from creating the ClusterStack:%s", r.timeline(warmNS, start))

	start = time.Now()
	if err := inParallel(tenants, func(i int) error { return s.createCluster(ctx, tenant(i), "c0", "v1") }); err != nil {
		b.Fatal(err)
	}
	addons := s.waitReady(r, "addons on 20 Clusters", kindAddon, "", tenants, readyLimit, s.addonsReady(tenants)).Sub(start)
	s.checkWorkloadObjects(tenants)
	s.reportNewClusters(b, tenants)

	suppressProcessMetrics(b)
	b.ReportMetric(twoReleases.Seconds(), "s/two-releases-ready")
	b.ReportMetric(nodeImages.Seconds(), "s/two-releases-node-images-ready")
	b.ReportMetric(twoWarm.Seconds(), "s/two-releases-ready-warm")
	b.ReportMetric(stacksReady.Seconds(), "s/20-stacks-ready")
	b.ReportMetric(addons.Seconds(), "s/20-clusters-addons")
	s.reportConverged(b, window, fleet{clusters: tenants, drift: drift}, "v1", "v2")
}

// driftFromEnv is BENCH_E2E_DRIFT_INTERVAL (a duration), or benchDriftInterval.
func driftFromEnv(tb testing.TB) time.Duration {
	return durationFromEnv(tb, "BENCH_E2E_DRIFT_INTERVAL", benchDriftInterval)
}

// reportNewClusters reports the requests the manager sent to the workload API servers so far
// (the benchmark calls it once all addons are ready, before any drift check is due) per Cluster,
// and logs how they spread over the servers.
func (s *scenario) reportNewClusters(b *testing.B, clusters int) {
	b.Helper()
	c, err := s.mgr.scrape()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("requests to the workload API servers until %d Clusters' addons were ready: %.0f reads, %.0f writes; by server: %v", clusters, c.workloadReads, c.workloadWrites, c.workloadHosts)
	b.ReportMetric(c.workloadRequests()/float64(clusters), "workload-requests/new-cluster")
}

// BenchmarkManager300Releases200Clusters runs the manager binary at scale: 100 namespaces, each
// with a ClusterStack [v1, v2, v3] (providerRef, node images: 300 ClusterStackReleases, 300
// ClusterClasses, 2 distinct images in one Glance project) and 2 Clusters (on v1 and v3, each
// with its own addon namespace in its workload API server: 200 ClusterAddons). It reports
// s/300-releases-ready, s/200-clusters-addons, the converged window as in
// BenchmarkManager20Clusters, MiB-peak-rss of the manager and the Glance figures.
func BenchmarkManager300Releases200Clusters(b *testing.B) {
	for i := 0; i < b.N; i++ {
		run300Releases200Clusters(b)
	}
}

func run300Releases200Clusters(b *testing.B) {
	drift := driftFromEnv(b)
	runFleet(b, fleetScenario{
		prefix: "stack", stacks: 100, clustersPerStack: 2,
		versions: []string{"v1", "v2", "v3"}, clusterVersions: []string{"v1", "v3"},
		drift: drift, window: windowFromEnv(b, drift), limit: 2 * readyLimit,
	})
}

// fleetScenario is one scale benchmark: stacks namespaces, each with a ClusterStack of versions
// and clustersPerStack Clusters, Cluster k on clusterVersions[k % len(clusterVersions)].
type fleetScenario struct {
	prefix                    string
	stacks, clustersPerStack  int
	versions, clusterVersions []string
	// drift is the manager's drift interval (zero: its default); window the converged window.
	drift, window time.Duration
	// limit bounds each wait: a timeout only catches what never works.
	limit time.Duration
}

// runFleet creates the ClusterStacks, waits until all their releases are ready, creates the
// Clusters, waits until all their addons are ready, and reports s/<n>-releases-ready,
// s/<n>-clusters-addons, the requests per new Cluster (when no drift check can be among them),
// the converged window and the manager's memory.
func runFleet(b *testing.B, f fleetScenario) {
	s := newScenario(b, scenarioOptions{driftInterval: f.drift})
	defer s.close()
	ctx := context.Background()

	watchCtx, stopWatches := context.WithCancel(ctx)
	defer stopWatches()
	r, err := s.watchReadiness(watchCtx)
	if err != nil {
		b.Fatal(err)
	}

	ns := func(i int) string { return fmt.Sprintf("%s-%03d", f.prefix, i) }
	if err := inParallel(f.stacks, func(i int) error { return s.prepareNamespace(ctx, ns(i)) }); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := inParallel(f.stacks, func(i int) error { return s.createClusterStack(ctx, ns(i), f.versions) }); err != nil {
		b.Fatal(err)
	}
	releases := f.stacks * len(f.versions)
	releasesReady := s.waitReady(r, fmt.Sprintf("%d releases ready", releases), kindRelease, "", releases, f.limit, s.releasesReady("", releases)).Sub(start)
	s.dumpAPIServerRequests("releases-ready")

	start = time.Now()
	if err := inParallel(f.stacks*f.clustersPerStack, func(i int) error {
		k := i % f.clustersPerStack
		return s.createCluster(ctx, ns(i/f.clustersPerStack), fmt.Sprintf("c%d", k), f.clusterVersions[k%len(f.clusterVersions)])
	}); err != nil {
		b.Fatal(err)
	}
	clusters := f.stacks * f.clustersPerStack
	addons := s.waitReady(r, fmt.Sprintf("addons on %d Clusters", clusters), kindAddon, "", clusters, f.limit, s.addonsReady(clusters)).Sub(start)
	s.dumpAPIServerRequests("addons-ready")
	s.checkWorkloadObjects(clusters)
	drift := f.drift
	if drift == 0 {
		drift = defaultDriftInterval
	}
	if addons < drift {
		s.reportNewClusters(b, clusters)
	} else {
		b.Logf("the addons took longer than a drift interval (%s): requests per new Cluster not reported, drift checks are among them", drift)
	}

	suppressProcessMetrics(b)
	b.ReportMetric(releasesReady.Seconds(), fmt.Sprintf("s/%d-releases-ready", releases))
	b.ReportMetric(addons.Seconds(), fmt.Sprintf("s/%d-clusters-addons", clusters))
	s.reportConverged(b, f.window, fleet{clusters: clusters, drift: drift}, f.versions...)
}

// BenchmarkManager500Releases1000Clusters runs the manager binary at fleet scale: 250 namespaces,
// each with a ClusterStack [v1, v3] (500 ClusterStackReleases and ClusterClasses, 2 distinct
// images in one Glance project) and 4 Clusters (2 on v1, 2 on v3: 1000 ClusterAddons), spread
// over the workload API servers, 250 per server with their own addon namespaces. The manager
// keeps its default drift interval (5m), so workload-requests/new-cluster counts installations
// only. It reports s/500-releases-ready, s/1000-clusters-addons, the converged window as in
// BenchmarkManager20Clusters (BENCH_E2E_WINDOW, default 20s: no drift check is due in it) and
// MiB-peak-rss of the manager.
func BenchmarkManager500Releases1000Clusters(b *testing.B) {
	for i := 0; i < b.N; i++ {
		run500Releases1000Clusters(b)
	}
}

func run500Releases1000Clusters(b *testing.B) {
	runFleet(b, fleetScenario{
		prefix: "fleet", stacks: 250, clustersPerStack: 4,
		versions: []string{"v1", "v3"}, clusterVersions: []string{"v1", "v3"},
		window: windowFromEnv(b, 20*time.Second), limit: 4 * readyLimit,
	})
}

// suppressProcessMetrics drops ns/op, which would be the duration of a whole scenario with its
// API servers' start. (-benchmem's B/op and allocs/op cannot be dropped: they are the benchmark
// process's allocations, not the manager's; MiB-peak-rss is the manager's.)
func suppressProcessMetrics(b *testing.B) {
	b.ReportMetric(0, "ns/op")
}

// fleet is what an idle window is measured over: how many Clusters, checked for drift how often.
type fleet struct {
	clusters int
	drift    time.Duration
}

func reportConvergence(b *testing.B, c convergence, f fleet) {
	b.ReportMetric(c.inWindow.requests(), "idle-requests")
	b.ReportMetric(c.inWindow.mgmtReads+c.inWindow.mgmtWrites, "idle-mgmt-requests")
	b.ReportMetric(c.inWindow.workloadRequests(), "idle-workload-requests")
	// The window's rate, scaled to 1000 Clusters drift-checked at the default interval.
	perSecond := c.inWindow.requests() / c.window.Seconds()
	b.ReportMetric(perSecond*f.drift.Seconds()/defaultDriftInterval.Seconds()*1000/float64(f.clusters), "idle-req/s-per-1000-clusters")
	b.ReportMetric(c.inWindow.writes(), "writes-converged")
	b.ReportMetric(c.inWindow.mgmtWrites, "mgmt-writes-converged")
	b.ReportMetric(c.inWindow.workloadWrites, "workload-writes-converged")
	b.ReportMetric(c.inWindow.openstack, "openstack-calls-converged")
	b.ReportMetric(float64(c.cloudCalls), "openstack-calls-converged-double")
	b.ReportMetric(c.window.Seconds(), "s-window")
}

func countImages(images map[string]int) int {
	n := 0
	for _, c := range images {
		n += c
	}
	return n
}

// reportConverged waits until the manager settles, counts its API writes and OpenStack calls in a
// window after that, and reports them with its peak memory and what Glance holds for the releases
// of the given stack versions; both benchmarks end with it.
func (s *scenario) reportConverged(b *testing.B, window time.Duration, f fleet, stackVersions ...string) {
	b.Helper()
	conv := s.converge(settleQuiet, settleLimit, window)
	peak, current, err := s.mgr.memory()
	if err != nil {
		b.Fatal(err)
	}
	s.logMemory(peak, current)
	uploads, imports, images := s.glance()
	b.Logf("settled %.1fs after ready (API writes from the start until settled: %.0f to the management, %.0f to the workload API servers); window %s: mgmt %.0f writes / %.0f reads, workload %.0f writes / %.0f reads, OpenStack %.0f (metrics) %d (double); Glance: %d uploads, %d imports, images: %s; image file downloads: %d",
		conv.settle.Seconds(), conv.untilSettled.mgmtWrites, conv.untilSettled.workloadWrites, conv.window, conv.inWindow.mgmtWrites, conv.inWindow.mgmtReads, conv.inWindow.workloadWrites, conv.inWindow.workloadReads,
		conv.inWindow.openstack, conv.cloudCalls, uploads, imports, describeImages(images), s.fetches.Load())

	reportConvergence(b, conv, f)
	b.ReportMetric(peak, "MiB-peak-rss")
	// The rendering workers are processes of their own: their memory is not in the manager's
	// RSS. VmHWM counts the binary's pages they share with the manager; RssAnon does not.
	workersHWM, workersAnon := s.workers.peakChildren()
	b.ReportMetric(workersHWM, "MiB-peak-render-workers-rss")
	b.ReportMetric(workersAnon, "MiB-peak-render-workers-anon")
	b.ReportMetric(float64(uploads+imports), "glance-uploads")
	b.ReportMetric(float64(len(images)), "glance-image-names")
	b.ReportMetric(float64(countImages(images)), "glance-images")
	b.ReportMetric(float64(distinctImages(stackVersions...)), "distinct-images")
}
