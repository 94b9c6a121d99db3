package clusterstack_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
)

// Benchmarks share the package's API server, manager and registry (see suite_test.go). Run them
// alone (`go test -run '^$' -bench . ./controllers/clusterstack/`) so that no test's objects are
// reconciled meanwhile.

// waitAllReady polls until every ClusterStack named scs in namespaces is Ready with want usable
// versions, or fails the benchmark after the timeout.
func waitAllReady(b *testing.B, namespaces []string, want int, limit time.Duration) {
	b.Helper()
	deadline := time.Now().Add(limit)
	pending := map[string]bool{}
	for _, ns := range namespaces {
		pending[ns] = true
	}
	for len(pending) > 0 {
		for ns := range pending {
			cs := &clusterstackv1alpha1.ClusterStack{}
			if err := k8s.Get(context.Background(), nsName(ns), cs); err != nil {
				continue
			}
			ready := condition(cs.Status.Conditions, clusterstackv1alpha1.ReadyCondition)
			if ready.Status == metav1.ConditionTrue && countUsable(cs.Status.UsableVersions) == want {
				delete(pending, ns)
			}
		}
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d ClusterStacks not ready after %s", len(pending), limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countUsable(s string) int {
	if s == "" {
		return 0
	}
	n := 1
	for _, r := range s {
		if r == ',' {
			n++
		}
	}
	return n
}

func versions(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("v%d", i+1)
	}
	return out
}

// BenchmarkTimeToReady measures the time from creating a ClusterStack with N versions to all of
// them Ready: release listing, fetching from the in-process OCI registry (a fresh repository per
// iteration, so nothing comes from the release cache), verification, Helm rendering and
// server-side apply of 5 objects per release.
func BenchmarkTimeToReady(b *testing.B) {
	// The first ClusterStack of a process pays the API server's one-off delays (a create within
	// 2 s of its CRD becoming ready waits; the first requests fill caches). One untimed run keeps
	// them out of the figures, which are about the operator.
	warm := repoFor(b) + "-warm"
	publish(b, warm, fixtures.Options{StackVersion: "v1"})
	warmNS := newNamespace(b)
	newClusterStack(b, warmNS, warm, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = versions(1) })
	waitAllReady(b, []string{warmNS}, 1, 5*time.Minute)

	// 2 is the project's reference figure: two releases ready.
	for _, n := range []int{1, 2, 5, 20} {
		b.Run(fmt.Sprintf("versions=%d", n), func(b *testing.B) {
			var writes int64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				repo := fmt.Sprintf("%s-%d", repoFor(b), i)
				for _, v := range versions(n) {
					publish(b, repo, fixtures.Options{StackVersion: v})
				}
				ns := newNamespace(b)
				before := apiWrites.Load()
				b.StartTimer()
				newClusterStack(b, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = versions(n) })
				waitAllReady(b, []string{ns}, n, 5*time.Minute)
				writes += apiWrites.Load() - before
			}
			// The writes it takes to converge show that the counter sees the manager's requests.
			b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
		})
	}
}

// BenchmarkWritesAfterConvergence counts the manager's API writes (non-GET requests through
// its rest.Config) in a window after 5 ClusterStacks (2 versions each, autoSubscribe on, source
// checked every second) and one Cluster API v1beta1 stack converged. Target: 0. The window is
// BENCH_WRITE_WINDOW (default 10s): every ClusterStack is reconciled about once a second in it.
func BenchmarkWritesAfterConvergence(b *testing.B) {
	repo := repoFor(b)
	publish(b, repo, fixtures.Options{StackVersion: "v1"})
	publish(b, repo, fixtures.Options{StackVersion: "v2"})
	v1beta1Repo := repo + "-v1beta1"
	publish(b, v1beta1Repo, fixtures.Options{StackVersion: "v1", Source: "openstack-scs-v1beta1"})
	var namespaces []string
	for range 5 {
		ns := newNamespace(b)
		namespaces = append(namespaces, ns)
		newClusterStack(b, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) {
			cs.Spec.Versions = []string{"v1"}
			cs.Spec.AutoSubscribe = true
		})
	}
	waitAllReady(b, namespaces, 2, 5*time.Minute)
	ns := newNamespace(b)
	newClusterStack(b, ns, v1beta1Repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = []string{"v1"} })
	waitAllReady(b, []string{ns}, 1, 5*time.Minute)
	// Let the events of the convergence reach the API server before the window opens.
	time.Sleep(2 * time.Second)

	reportConvergedWindow(b)
}

// BenchmarkSharedObjectsConverged counts the manager's API requests in a window after 5
// ClusterStacks converged whose two releases (v1 listed, v2 by autoSubscribe, source checked
// every second) each render the same ORC Image, as the published openstack/scs stack does.
// Target: 0 writes, and no more requests than BenchmarkWritesAfterConvergence's stacks make
// without shared objects. The window is BENCH_WRITE_WINDOW (default 10s).
func BenchmarkSharedObjectsConverged(b *testing.B) {
	repo := repoFor(b)
	publish(b, repo, shared("v1"))
	publish(b, repo, shared("v2"))
	var namespaces []string
	for range 5 {
		ns := newNamespace(b)
		namespaces = append(namespaces, ns)
		newClusterStack(b, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) {
			cs.Spec.Versions = []string{"v1"}
			cs.Spec.AutoSubscribe = true
		})
	}
	for _, ns := range namespaces {
		setImageAvailable(b, ns)
	}
	waitAllReady(b, namespaces, 2, 5*time.Minute)
	time.Sleep(2 * time.Second)

	reportConvergedWindow(b)
}

// BenchmarkManagerMemory reports the heap in use (runtime.MemStats.HeapInuse, after a GC) of
// the test process with 100 ClusterStacks x 3 versions converged, and the growth over the
// process before they were created. The process also holds the test harness and the in-memory
// registry (3 small releases), so the growth is an upper bound of the manager's share.
func BenchmarkManagerMemory(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		repo := fmt.Sprintf("%s-%d", repoFor(b), i)
		for _, v := range versions(3) {
			publish(b, repo, fixtures.Options{StackVersion: v})
		}
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()

		var namespaces []string
		for range 100 {
			ns := newNamespace(b)
			namespaces = append(namespaces, ns)
			newClusterStack(b, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = versions(3) })
		}
		waitAllReady(b, namespaces, 3, 15*time.Minute)

		b.StopTimer()
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse)/(1<<20), "heap-inuse-MiB")
		b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/(1<<20), "heap-growth-MiB")
		b.StartTimer()
	}
}

// reportConvergedWindow reports the manager's API writes and requests per second in windows of
// BENCH_WRITE_WINDOW (default 10s), once the benchmark's stacks have converged.
func reportConvergedWindow(b *testing.B) {
	window := 10 * time.Second
	if v := os.Getenv("BENCH_WRITE_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		window = d
	}
	b.ResetTimer()
	var writes, requests int64
	for i := 0; i < b.N; i++ {
		w, r := apiWrites.Load(), apiRequests.Load()
		time.Sleep(window)
		writes += apiWrites.Load() - w
		requests += apiRequests.Load() - r
	}
	b.ReportMetric(float64(writes)/float64(b.N), "writes/window")
	b.ReportMetric(float64(requests)/float64(b.N)/window.Seconds(), "requests/s")
	b.ReportMetric(window.Seconds(), "window-s")
}
