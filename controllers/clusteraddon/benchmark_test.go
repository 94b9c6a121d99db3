package clusteraddon

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

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

		// Converged: count writes to the workload API server over 3 drift-check periods (2 s each
		// in these tests), in which every ClusterAddon re-renders and compares its objects.
		before := workloadWrites.Count()
		addonRVs := map[string]string{}
		list := &csv1alpha1.ClusterAddonList{}
		NewWithT(b).Expect(mgmt.Client.List(context.Background(), list)).To(Succeed())
		for _, ca := range list.Items {
			addonRVs[ca.Namespace+"/"+ca.Name] = ca.ResourceVersion
		}
		NewWithT(b).Consistently(func() int { return workloadWrites.Count() - before }).
			WithTimeout(6 * time.Second).WithPolling(500 * time.Millisecond).Should(BeZero())
		b.ReportMetric(float64(workloadWrites.Count()-before), "workload-writes-converged")
		changed := 0
		NewWithT(b).Expect(mgmt.Client.List(context.Background(), list, client.MatchingFields{})).To(Succeed())
		for _, ca := range list.Items {
			if rv, ok := addonRVs[ca.Namespace+"/"+ca.Name]; ok && rv != ca.ResourceVersion {
				changed++
			}
		}
		b.ReportMetric(float64(changed), "clusteraddon-writes-converged")
	}
}
