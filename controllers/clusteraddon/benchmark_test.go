package clusteraddon

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
)

// BenchmarkInstall measures installing addons on 20 and 50 Clusters: the time from creating the
// first Cluster (each with its kubeconfig Secret and an initialized control plane, in its own
// namespace) until the last ClusterAddon is Ready, the writes that took, and then the writes
// while the ClusterAddons settle and once they are converged, each over 3 drift-check periods
// (2 s each in these tests) in which every ClusterAddon re-renders and compares its objects. All
// kubeconfigs point at the one workload API server; the bench fixture puts each Cluster's addons
// into its own namespace there, so they do not fight over objects.
//
// Run one size with -bench 'BenchmarkInstall/clusters=20'.
func BenchmarkInstall(b *testing.B) {
	for _, n := range []int{20, 50} {
		b.Run(fmt.Sprintf("clusters=%d", n), func(b *testing.B) {
			for range b.N {
				benchmarkInstall(b, n)
			}
		})
	}
}

func benchmarkInstall(b *testing.B, clusters int) {
	names := make([]string, clusters)
	nss := make([]string, clusters)
	// Namespaces first: they are the benchmark's, not part of an install.
	for j := range clusters {
		nss[j], names[j] = newNamespace(b), fmt.Sprintf("bench-%d", j)
	}
	aw := watchAddons(b, nss)

	mgmtBefore, workloadBefore := mgmtWrites.Count(), workloadWrites.Count()
	start := time.Now()
	for j := range clusters {
		createCluster(b, nss[j], names[j], "v7", true, true)
	}
	select {
	case <-aw.allReady:
	case <-time.After(2 * time.Minute):
		b.Fatalf("%d of %d ClusterAddons Ready after 2 minutes", aw.readyCount(), clusters)
	}
	aw.mu.Lock()
	elapsed, installWrites := aw.allReadyAt.Sub(start), aw.writes
	aw.mu.Unlock()
	mgmtInstall, workloadInstall := mgmtWrites.Count()-mgmtBefore, workloadWrites.Count()-workloadBefore

	// The ClusterAddons are really Ready, not only as far as the watch saw.
	for j := range clusters {
		ca := getAddon(NewWithT(b), nss[j], names[j])
		NewWithT(b).Expect(ca.Status.Ready).To(BeTrue(), "%+v", condition(ca, csv1alpha1.ReadyCondition))
	}

	b.ReportMetric(elapsed.Seconds(), "s-to-ready")
	b.ReportMetric(float64(installWrites)/float64(clusters), "clusteraddon-writes/cluster")
	b.ReportMetric(float64(mgmtInstall)/float64(clusters), "mgmt-writes/cluster")
	b.ReportMetric(float64(workloadInstall)/float64(clusters), "workload-writes/cluster")

	// Ready is not necessarily converged: count the writes of the window right after Ready, then
	// those of a converged system.
	settling, _ := countWindow(aw)
	b.ReportMetric(float64(settling), "clusteraddon-writes-settling")
	converged, workloadConverged := countWindow(aw)
	b.ReportMetric(float64(converged), "clusteraddon-writes-converged")
	b.ReportMetric(float64(workloadConverged), "workload-writes-converged")
}

// addonWatch counts the writes to the ClusterAddons of a set of namespaces (one watch event per
// write) and notes when the last of them first said Ready.
type addonWatch struct {
	mu         sync.Mutex
	namespaces map[string]bool
	writes     int
	ready      map[string]bool
	allReady   chan struct{}
	allReadyAt time.Time
}

func watchAddons(b *testing.B, namespaces []string) *addonWatch {
	b.Helper()
	wc, err := client.NewWithWatch(mgmt.Config, client.Options{Scheme: mgmt.Scheme})
	if err != nil {
		b.Fatal(err)
	}
	w, err := wc.Watch(context.Background(), &csv1alpha1.ClusterAddonList{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Stop)
	aw := &addonWatch{namespaces: map[string]bool{}, ready: map[string]bool{}, allReady: make(chan struct{})}
	for _, ns := range namespaces {
		aw.namespaces[ns] = true
	}
	go func() {
		for ev := range w.ResultChan() {
			ca, ok := ev.Object.(*csv1alpha1.ClusterAddon)
			if !ok || !aw.namespaces[ca.Namespace] || (ev.Type != watch.Added && ev.Type != watch.Modified) {
				continue
			}
			aw.mu.Lock()
			aw.writes++
			if ca.Status.Ready && !aw.ready[ca.Namespace] {
				aw.ready[ca.Namespace] = true
				if len(aw.ready) == len(aw.namespaces) {
					aw.allReadyAt = time.Now()
					close(aw.allReady)
				}
			}
			aw.mu.Unlock()
		}
	}()
	return aw
}

func (aw *addonWatch) readyCount() int {
	aw.mu.Lock()
	defer aw.mu.Unlock()
	return len(aw.ready)
}

// countWindow returns the writes to the watched ClusterAddons and to the workload API server
// during a 6 s window.
func countWindow(aw *addonWatch) (addonWrites, workloadWritesInWindow int) {
	aw.mu.Lock()
	before, workloadBefore := aw.writes, workloadWrites.Count()
	aw.mu.Unlock()
	time.Sleep(6 * time.Second) // a measurement window, not a wait for a condition
	aw.mu.Lock()
	defer aw.mu.Unlock()
	return aw.writes - before, workloadWrites.Count() - workloadBefore
}
