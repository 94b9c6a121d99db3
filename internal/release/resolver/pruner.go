package resolver

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/cache"
)

// DefaultPruneInterval is how often Pruner runs when its Interval is zero.
const DefaultPruneInterval = 10 * time.Minute

// DefaultCacheMaxBytes is the default bound of the release cache on disk: real releases are a
// few hundred kilobytes to a few megabytes, so this holds hundreds of them.
const DefaultCacheMaxBytes int64 = 1 << 30

// Pruner keeps the release cache to the releases that ClusterStackReleases name, and within
// its size bound (cache.Options.MaxBytes), least recently used evicted first. It runs on every
// replica (each has its own cache directory): add it to the manager with mgr.Add.
type Pruner struct {
	// Reader lists ClusterStackReleases; the manager's client reads them from its cache.
	Reader client.Reader
	// Cache is the cache to prune (Resolver.Cache).
	Cache *cache.Cache
	// Interval is the time between runs; zero means DefaultPruneInterval.
	Interval time.Duration
}

// Start prunes once the manager's caches are ready and then every Interval until ctx ends.
func (p *Pruner) Start(ctx context.Context) error {
	interval := p.Interval
	if interval <= 0 {
		interval = DefaultPruneInterval
	}
	log := ctrl.LoggerFrom(ctx).WithName("release-cache-pruner")
	wait.JitterUntilWithContext(ctx, func(ctx context.Context) {
		removed, err := p.Prune(ctx)
		if err != nil {
			log.Error(err, "Pruning the release cache failed")
			return
		}
		if removed > 0 {
			log.Info("Pruned the release cache", "removed", removed)
		}
	}, interval, 0.1, true)
	return nil
}

// NeedLeaderElection is false: every replica prunes its own cache directory.
func (p *Pruner) NeedLeaderElection() bool { return false }

// Prune removes the cached releases that no ClusterStackRelease names (whatever their source:
// a release is kept under every source it came from) and enforces the size bound. It returns
// the number of releases removed from disk.
func (p *Pruner) Prune(ctx context.Context) (int, error) {
	var list clusterstackv1alpha1.ClusterStackReleaseList
	if err := p.Reader.List(ctx, &list); err != nil {
		return 0, fmt.Errorf("listing the ClusterStackReleases that keep cached releases: %w", err)
	}
	named := make(map[string]bool, len(list.Items))
	for i := range list.Items {
		named[list.Items[i].Name] = true
	}
	return p.Cache.Prune(func(k cache.Key) bool { return named[k.Release.String()] })
}
