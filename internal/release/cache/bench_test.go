package cache_test

import (
	"context"
	"os"
	"testing"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/cache"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
)

// BenchmarkOCIListAndMaterialise measures what a reconcile pays to list the
// repository and get a verified release from the in-process registry, with
// an empty cache (download, verify, rename) and a warm one (index lookup and
// re-verification only).
func BenchmarkOCIListAndMaterialise(b *testing.B) {
	ctx := context.Background()
	host := fixtures.StartRegistry(b, nil)
	opts := fixtures.Options{NodeImages: true}
	dir, err := fixtures.Build(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := fixtures.Push(ctx, dir, host+"/kaas/cluster-stacks", opts.ReleaseName(), true); err != nil {
		b.Fatal(err)
	}
	src, err := source.New(source.Config{Type: source.TypeOCI, OCI: source.OCIConfig{Registry: host, Repository: "kaas/cluster-stacks", PlainHTTP: true}, Egress: egress.AllowLoopbackForTests()})
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, c *cache.Cache) {
		names, err := src.List(ctx)
		if err != nil || len(names) != 1 {
			b.Fatalf("List: %v, %v", names, err)
		}
		if _, err := c.Get(ctx, src, names[0]); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			root, err := os.MkdirTemp(b.TempDir(), "cache-")
			if err != nil {
				b.Fatal(err)
			}
			c, err := cache.New(root, cache.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			run(b, c)
		}
	})
	b.Run("warm", func(b *testing.B) {
		c, err := cache.New(b.TempDir(), cache.Options{})
		if err != nil {
			b.Fatal(err)
		}
		run(b, c)
		for b.Loop() {
			run(b, c)
		}
	})
}
