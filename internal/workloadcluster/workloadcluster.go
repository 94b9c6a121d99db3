// Package workloadcluster gives the operator a client for a workload cluster, built from the Cluster
// API kubeconfig Secret (`<cluster>-kubeconfig`, key `value`). Clients are cached per Cluster and
// rebuilt only when the Secret changes (UID or resourceVersion), so a reconcile neither parses the
// kubeconfig nor rediscovers the API again; the owner drops a Cluster's client when the Cluster goes.
// At most MaxConnections clusters stay connected (least recently used go first); the others keep
// the Secret's version and their discovered kinds.
//
// Why not Cluster API's clustercache (sigs.k8s.io/cluster-api/controllers/clustercache): it
// connects in the background and answers only ErrClusterNotConnected, so the ClusterAddon could no
// longer say whether the kubeconfig Secret is missing, unusable or the server does not answer
// (its ClusterReachable reasons); it builds controller-runtime's dynamic RESTMapper and an informer
// cache per cluster, the memory the lean mapper here exists to save, for an operator that only
// writes (server-side apply) and reads a few objects uncached; it connects only once the Cluster
// reports its infrastructure provisioned; and it offers no hook on a client's transport.
package workloadcluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// KubeconfigKey is the key of the kubeconfig in the Cluster API kubeconfig Secret.
const KubeconfigKey = "value"

// DefaultTimeout bounds every request to a workload cluster, so that an unreachable cluster costs
// a reconcile seconds, not minutes.
const DefaultTimeout = 15 * time.Second

// DefaultMaxConnections is how many workload clusters a Cache keeps connected when
// Cache.MaxConnections is zero: a fleet of thousands does not hold thousands of open TLS
// connections (each with its buffers and goroutines, about 10 KiB of heap by
// BenchmarkCacheMemory). A reconcile of a cluster beyond them connects again (a TLS handshake),
// without discovering its API again.
const DefaultMaxConnections = 64

var (
	// ErrKubeconfigMissing means the kubeconfig Secret or its `value` key does not exist (yet).
	ErrKubeconfigMissing = errors.New("kubeconfig secret missing")
	// ErrKubeconfigInvalid means the kubeconfig Secret does not hold a usable kubeconfig.
	ErrKubeconfigInvalid = errors.New("kubeconfig invalid")
	// ErrUnreachable means the workload cluster's API server did not answer.
	ErrUnreachable = errors.New("workload cluster unreachable")
)

// SecretName returns the name of the Cluster API kubeconfig Secret of a Cluster.
func SecretName(cluster string) string { return cluster + "-kubeconfig" }

// Cluster is a connection to one workload cluster.
type Cluster struct {
	// Client reads and writes objects in the workload cluster, uncached.
	Client client.Client
	// Mapper maps kinds to resources of the workload cluster; it rediscovers lazily when it meets
	// an unknown kind (a CRD applied by an earlier stage).
	Mapper meta.RESTMapper
	// Config is the REST config built from the kubeconfig.
	Config *rest.Config

	discovery  discovery.ServerVersionInterface
	mapper     *leanMapper
	httpClient *http.Client
}

// Ping asks the API server for its version: a cheap read that tells whether it answers.
func (c *Cluster) Ping(ctx context.Context) error {
	errc := make(chan error, 1)
	// ServerVersion takes no context; the REST config's timeout bounds it.
	go func() { _, err := c.discovery.ServerVersion(); errc <- err }()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnreachable, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", ErrUnreachable, ctx.Err())
	}
}

// entry is what a Cache keeps of one Cluster: the version of its kubeconfig Secret, the
// connection (nil once evicted) and the kinds its mapper discovered, which a new connection for
// the same Secret starts from.
type entry struct {
	secretUID types.UID
	secretRV  string
	cluster   *Cluster
	known     discovered
	// used is the Cache's clock at the last Get: the least recently used connection goes first.
	used uint64
}

// Cache builds and caches one Cluster per workload cluster. It is safe for concurrent use.
type Cache struct {
	// Reader reads kubeconfig Secrets in the management cluster; use an uncached reader (the
	// manager does not cache Secrets).
	Reader client.Reader
	// Scheme is the scheme of the workload cluster clients.
	Scheme *runtime.Scheme
	// Timeout bounds each request to a workload cluster; zero means DefaultTimeout.
	Timeout time.Duration
	// ConfigHook, when set, may adjust each REST config before use (tests count requests with it).
	ConfigHook func(cluster types.NamespacedName, cfg *rest.Config)
	// MaxConnections bounds the clusters kept connected; zero means DefaultMaxConnections.
	MaxConnections int

	mu      sync.Mutex
	entries map[types.NamespacedName]*entry
	clock   uint64
}

// Get returns the connection to the workload cluster of the Cluster named cluster. It reads the
// kubeconfig Secret on every call (one GET) and reuses the cached connection while the Secret is
// unchanged.
func (c *Cache) Get(ctx context.Context, cluster types.NamespacedName) (*Cluster, error) {
	secret := &corev1.Secret{}
	key := types.NamespacedName{Namespace: cluster.Namespace, Name: SecretName(cluster.Name)}
	if err := c.Reader.Get(ctx, key, secret); err != nil {
		if apierrors.IsNotFound(err) {
			c.Drop(cluster)
			return nil, fmt.Errorf("secret %s: %w", key, ErrKubeconfigMissing)
		}
		return nil, fmt.Errorf("reading kubeconfig secret %s: %w", key, err)
	}
	sameSecret := func(e *entry) bool { return e.secretUID == secret.UID && e.secretRV == secret.ResourceVersion }
	c.mu.Lock()
	var known discovered
	if e, ok := c.entries[cluster]; ok && sameSecret(e) {
		if e.cluster != nil {
			c.clock++
			e.used = c.clock
			c.mu.Unlock()
			return e.cluster, nil
		}
		known = e.known // evicted: connect again, with what was discovered
	}
	c.mu.Unlock()
	data, ok := secret.Data[KubeconfigKey]
	if !ok || len(data) == 0 {
		return nil, fmt.Errorf("secret %s has no key %q: %w", key, KubeconfigKey, ErrKubeconfigMissing)
	}
	wc, err := c.build(cluster, data, known)
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", key, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[types.NamespacedName]*entry{}
	}
	c.clock++
	c.entries[cluster] = &entry{secretUID: secret.UID, secretRV: secret.ResourceVersion, cluster: wc, used: c.clock}
	c.evictLocked()
	return wc, nil
}

// evictLocked disconnects the least recently used clusters beyond MaxConnections, keeping what
// their mappers discovered. A reconcile still using an evicted Cluster finishes with it; its idle
// connections are closed now, the others when it is done.
func (c *Cache) evictLocked() {
	limit := c.MaxConnections
	if limit <= 0 {
		limit = DefaultMaxConnections
	}
	connected := 0
	for _, e := range c.entries {
		if e.cluster != nil {
			connected++
		}
	}
	for ; connected > limit; connected-- {
		var oldest *entry
		for _, e := range c.entries {
			if e.cluster != nil && (oldest == nil || e.used < oldest.used) {
				oldest = e
			}
		}
		oldest.known = oldest.cluster.mapper.snapshot()
		// Through client-go's round-tripper wrappers, which http.Client.CloseIdleConnections
		// does not see through: an open connection would keep the transport alive.
		utilnet.CloseIdleConnectionsFor(oldest.cluster.httpClient.Transport)
		oldest.cluster = nil
	}
}

// Drop forgets the connection of a Cluster; call it when the Cluster is gone.
func (c *Cache) Drop(cluster types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, cluster)
}

// Len returns the number of connected clusters.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.entries {
		if e.cluster != nil {
			n++
		}
	}
	return n
}

func (c *Cache) build(cluster types.NamespacedName, kubeconfig []byte, known discovered) (*Cluster, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKubeconfigInvalid, err)
	}
	cfg.Timeout = c.Timeout
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	// Addon objects come in bursts (a chart at a time); the defaults of 5 QPS would make a
	// 50-object chart take ten seconds.
	cfg.QPS, cfg.Burst = 50, 100
	if c.ConfigHook != nil {
		c.ConfigHook(cluster, cfg)
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKubeconfigInvalid, err)
	}
	dc, err := discovery.NewDiscoveryClientForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKubeconfigInvalid, err)
	}
	mapper := newLeanMapper(dc)
	mapper.seed(known)
	cl, err := client.New(cfg, client.Options{HTTPClient: httpClient, Scheme: c.Scheme, Mapper: mapper})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKubeconfigInvalid, err)
	}
	return &Cluster{Client: cl, Mapper: mapper, Config: cfg, discovery: dc, mapper: mapper, httpClient: httpClient}, nil
}
