package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/workloadcluster"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// BenchmarkManagerStartup measures the first action of a manager process on a fresh API server
// that serves from its watch cache, as a cluster's API server does (the other benchmarks turn the
// cache off). A ClusterStack with versions [v1, v2] is applied right before the process starts,
// so that its reconcile is the manager's first action, in two shapes:
//   - openstack: with a providerRef, so that each release waits for its two node images in
//     Glance before its ClusterClass is applied;
//   - no-provider: noProvider, the ClusterClass and templates only (the shape of the SCS
//     reference's docker test releases, which have no node images).
//
// Each reports:
//   - s/ready-from-start: from the process start until /readyz answers OK (the caches of every
//     watched kind have synced);
//   - s/two-releases-ready-from-start: from the process start until both ClusterStackReleases
//     are ready (listing and fetching from the registry, verification, node images uploaded to
//     Glance, ClusterClass rendered and applied), start-up included;
//   - start-refused: requests of the manager's client the API server answered 429 until then
//     (each costs a second: "storage is (re)initializing" while a watch cache fills).
//
// Nothing but the namespace, its credentials Secret and template, and the ClusterStack has been
// asked of the API server before, so the manager's informers are the first to ask for every other
// kind. The CRDs are older than 3 s (the API server delays a create within 2 s of its CRD becoming
// established, which a deployed operator never meets).
func BenchmarkManagerStartup(b *testing.B) {
	for _, shape := range []struct {
		name       string
		noProvider bool
	}{{"openstack", false}, {"no-provider", true}} {
		b.Run(shape.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				runStartup(b, shape.noProvider)
			}
		})
	}
}

func runStartup(b *testing.B, noProvider bool) {
	s := newStartupScenario(b)
	defer s.close()
	ctx := context.Background()

	const ns = "e2e-startup"
	if err := s.prepareNamespace(ctx, ns); err != nil {
		b.Fatal(err)
	}
	s.waitCRDsSettled()
	create := s.createClusterStack
	if noProvider {
		create = s.createNoProviderClusterStack
	}
	if err := create(ctx, ns, []string{"v1", "v2"}); err != nil {
		b.Fatal(err)
	}
	s.mgr = launchManager(b, managerBinary(b), s.managerConfig())
	s.closers = append(s.closers, s.mgr.stop)

	ready := s.mgr.waitReady(b, time.Minute).Sub(s.mgr.started)
	// Polled only once the manager's caches have synced, so that the benchmark's own reads do not
	// create the storage of a kind before the manager's informers ask for it. A limited list is
	// never answered 429: the API server reads it from etcd while a watch cache fills.
	releases := s.pollReleasesReady(ns, 2).Sub(s.mgr.started)
	c, err := s.mgr.scrape()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("from the process start: ready %.3fs, two releases ready %.3fs; the API server refused %.0f requests (429)", ready.Seconds(), releases.Seconds(), c.mgmtRefused)

	suppressProcessMetrics(b)
	b.ReportMetric(ready.Seconds(), "s/ready-from-start")
	b.ReportMetric(releases.Seconds(), "s/two-releases-ready-from-start")
	b.ReportMetric(c.mgmtRefused, "start-refused")
}

// createNoProviderClusterStack creates the benchmarks' ClusterStack without a provider: its
// releases apply their ClusterClass and templates and wait for no node image.
func (s *scenario) createNoProviderClusterStack(ctx context.Context, ns string, versions []string) error {
	spec := stackSpec(versions)
	spec.NoProvider = true
	return s.createStack(ctx, ns, spec)
}

// newStartupScenario starts the management API server with its watch cache, the registry, the
// OpenStack double and the image file server, but no manager and no workload API server.
func newStartupScenario(tb testing.TB) *scenario {
	tb.Helper()
	managerBinary(tb) // built before anything is timed
	dir, err := os.MkdirTemp("", "clusterstack-e2e-")
	if err != nil {
		tb.Fatal(err)
	}
	s := &scenario{tb: tb, dir: dir}
	s.closers = append(s.closers, func() { _ = os.RemoveAll(dir) })
	tb.Cleanup(s.close)

	if s.mgmt, err = testenv.Start(testenv.Options{WatchCache: true}); err != nil {
		tb.Fatal(err)
	}
	s.closers = append(s.closers, func() { _ = s.mgmt.Stop() })
	if s.c, err = unthrottledClient(s.mgmt); err != nil {
		tb.Fatal(err)
	}
	s.files = newImageFileServer(&s.fetches)
	s.closers = append(s.closers, s.files.Close)
	if s.cloud, err = openstackdouble.New(openstackdouble.WithWebDownload(false)); err != nil {
		tb.Fatal(err)
	}
	s.closers = append(s.closers, s.cloud.Close)
	s.registry = fixtures.StartRegistry(tb, nil)
	s.publish()
	return s
}

func (s *scenario) managerConfig() managerConfig {
	kubeconfig, err := workloadcluster.Kubeconfig(s.mgmt.Config, "management")
	if err != nil {
		s.tb.Fatal(err)
	}
	return managerConfig{
		dir:        filepath.Join(s.dir, "manager"),
		kubeconfig: kubeconfig,
		mgmtHost:   hostOf(s.mgmt.Config),
		registry:   s.registry,
		repository: repository,
	}
}

// waitCRDsSettled waits until every CRD has been established for more than 3 s (its transition
// time has a resolution of a second).
func (s *scenario) waitCRDsSettled() {
	s.tb.Helper()
	var crds apiextensionsv1.CustomResourceDefinitionList
	if err := s.c.List(context.Background(), &crds); err != nil {
		s.tb.Fatal(err)
	}
	var last time.Time
	for _, crd := range crds.Items {
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.LastTransitionTime.After(last) {
				last = c.LastTransitionTime.Time
			}
		}
	}
	time.Sleep(time.Until(last.Add(3 * time.Second)))
}

// pollReleasesReady polls (every 5 ms) until want ClusterStackReleases of ns are ready and
// returns when it first saw them so.
func (s *scenario) pollReleasesReady(ns string, want int) time.Time {
	s.tb.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(readyLimit)
	status := ""
	for time.Now().Before(deadline) {
		if err := s.mgr.alive(); err != nil {
			s.tb.Fatal(err)
		}
		list := &clusterstackv1alpha1.ClusterStackReleaseList{}
		if err := s.c.List(ctx, list, client.InNamespace(ns), client.Limit(100)); err != nil {
			s.tb.Fatal(err)
		}
		ready := 0
		for _, r := range list.Items {
			if r.Status.Ready {
				ready++
			}
		}
		if ready >= want {
			return time.Now()
		}
		status = fmt.Sprintf("%d of %d ClusterStackReleases ready (%d exist)", ready, want, len(list.Items))
		time.Sleep(5 * time.Millisecond)
	}
	s.tb.Fatalf("%s after %s\nmanager log (end):\n%s", status, readyLimit, s.mgr.logTail(40))
	return time.Time{}
}

// newImageFileServer serves the node image file (imageSize bytes) at every path and counts the
// downloads, as newScenario's file server does.
func newImageFileServer(fetches *atomic.Int64) *httptest.Server {
	data := make([]byte, imageSize)
	for i := range data {
		data[i] = byte(i * 31 % 251)
	}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(data)
	}))
}
