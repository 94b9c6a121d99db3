package workloadcluster

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// BenchmarkCacheMemory reports the heap a Cache keeps per workload cluster (KiB/cluster) after
// each of 200 clusters, every one with a credential of its own (so a TLS transport of its own, as
// real workload clusters have), was reached once: a ping and a read, as a drift check does. With
// DefaultMaxConnections (64) it measured 85 KiB per cluster, with 8 connections 77 KiB: most of
// what a cluster costs is not its open connection. Sharing the discovered kind tables between
// clusters (kindTables) took 64 connections to 77-81 KiB.
func BenchmarkCacheMemory(b *testing.B) {
	ctx := context.Background()
	const clusters = 200
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "wc-mem-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		b.Fatal(err)
	}
	for i := range clusters {
		cfg, err := env.AddUser(fmt.Sprintf("wc-mem-%d", i), []string{"system:masters"})
		if err != nil {
			b.Fatal(err)
		}
		kc, err := Kubeconfig(cfg, fmt.Sprintf("c%d", i))
		if err != nil {
			b.Fatal(err)
		}
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: SecretName(fmt.Sprintf("c%d", i))}, Data: map[string][]byte{KubeconfigKey: kc}}
		if err := env.Client.Create(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
	for range b.N {
		cache := &Cache{Reader: env.Client, Scheme: env.Scheme}
		before := heapInUse()
		for i := range clusters {
			c, err := cache.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: fmt.Sprintf("c%d", i)})
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Ping(ctx); err != nil {
				b.Fatal(err)
			}
			if err := c.Client.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: SecretName("c0")}, &corev1.Secret{}); err != nil {
				b.Fatal(err)
			}
		}
		after := heapInUse()
		b.ReportMetric(float64(after-before)/clusters/1024, "KiB/cluster")
		b.ReportMetric(float64(cache.Len()), "cached-clusters")
		runtime.KeepAlive(cache)
	}
}
