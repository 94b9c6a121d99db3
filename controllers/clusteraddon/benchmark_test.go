package clusteraddon

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
)

// BenchmarkInstall50Clusters measures the time from creating 50 Clusters (each with its
// kubeconfig Secret, in its own namespace) until all their ClusterAddons are Ready, and then the
// API writes to the workload clusters while they are converged, over several drift checks. All
// 50 kubeconfigs point at the one workload API server; the bench fixture puts each Cluster's
// addons into its own namespace there, so they do not fight over objects.
func BenchmarkInstall50Clusters(b *testing.B) {
	const clusters = 50
	for i := 0; i < b.N; i++ {
		nss := make([]string, clusters)
		start := time.Now()
		for j := range clusters {
			nss[j] = newNamespace(b)
			createCluster(b, nss[j], fmt.Sprintf("bench-%d", j), "v7", "v1.32.5", true, true)
		}
		NewWithT(b).Eventually(func(g Gomega) {
			for j := range clusters {
				ca := getAddon(g, nss[j], fmt.Sprintf("bench-%d", j))
				g.Expect(ca.Status.Ready).To(BeTrue(), "%+v", condition(ca, csv1alpha1.ReadyCondition))
			}
		}).WithTimeout(40 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
		elapsed := time.Since(start)
		b.ReportMetric(elapsed.Seconds(), "s/50-clusters")

		// Ready is not yet converged: a ClusterAddon that turned Ready may still record its
		// finished hook and observedGeneration. Count those writes in a first window, then the
		// writes of a converged system in a second one, each over 3 drift-check periods (2 s each
		// in these tests) in which every ClusterAddon re-renders and compares its objects.
		settling, _ := countWindow(b)
		b.ReportMetric(float64(settling), "clusteraddon-writes-settling")
		addonWrites, workloadWritesConverged := countWindow(b)
		b.ReportMetric(float64(workloadWritesConverged), "workload-writes-converged")
		b.ReportMetric(float64(addonWrites), "clusteraddon-writes-converged")
	}
}

// countWindow returns how many ClusterAddons changed (resourceVersion) and how many writes reached
// the workload API server during a 6 s window.
func countWindow(b *testing.B) (addonWrites, workloadWritesInWindow int) {
	b.Helper()
	before := workloadWrites.Count()
	rvs := map[string]string{}
	list := &csv1alpha1.ClusterAddonList{}
	NewWithT(b).Expect(mgmt.Client.List(context.Background(), list)).To(Succeed())
	for _, ca := range list.Items {
		rvs[ca.Namespace+"/"+ca.Name] = ca.ResourceVersion
	}
	time.Sleep(6 * time.Second) // a measurement window, not a wait for a condition
	NewWithT(b).Expect(mgmt.Client.List(context.Background(), list)).To(Succeed())
	for _, ca := range list.Items {
		if rv, ok := rvs[ca.Namespace+"/"+ca.Name]; ok && rv != ca.ResourceVersion {
			addonWrites++
		}
	}
	return addonWrites, workloadWrites.Count() - before
}
