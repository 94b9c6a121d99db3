package startup

import (
	"context"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// Gate holds the manager cache's informers back until the watch cache of their kind is warm, so
// that the warm-up runs while the manager starts instead of before it. It holds every way an
// informer is started: a controller's watch, and a read through the cache of a kind nobody has
// asked for yet (a runnable listing at start, a webhook); the informer that asked before its
// kind's watch cache filled would be refused and retry only a second later.
type Gate struct {
	opened  chan struct{}
	warming *Warming
}

// NewGate returns a closed gate: the cache's informers wait until Open.
func NewGate() *Gate { return &Gate{opened: make(chan struct{})} }

// Open hands the gate the warm-up: an informer of a kind it warms waits for that kind, every
// other informer starts at once. Call it once.
func (g *Gate) Open(w *Warming) {
	g.warming = w
	close(g.opened)
}

// Cache wraps c so that its informers wait for the gate (the manager's Options.NewCache).
func (g *Gate) Cache(c cache.Cache) cache.Cache { return &gatedCache{Cache: c, gate: g} }

func (g *Gate) waitObject(ctx context.Context, obj client.Object) error {
	if err := g.waitOpen(ctx); err != nil {
		return err
	}
	return g.warming.Wait(ctx, obj)
}

func (g *Gate) waitKind(ctx context.Context, gk schema.GroupKind) error {
	if err := g.waitOpen(ctx); err != nil {
		return err
	}
	return g.warming.waitKind(ctx, gk)
}

func (g *Gate) waitOpen(ctx context.Context) error {
	select {
	case <-g.opened:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// gatedCache is a cache whose informers, started by GetInformer or by the first read of a kind,
// wait for the gate. The wait is a closed channel once the kind is warm.
type gatedCache struct {
	cache.Cache
	gate *Gate
}

func (c *gatedCache) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := c.gate.waitObject(ctx, obj); err != nil {
		return err
	}
	return c.Cache.Get(ctx, key, obj, opts...)
}

func (c *gatedCache) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := c.waitList(ctx, list); err != nil {
		return err
	}
	return c.Cache.List(ctx, list, opts...)
}

func (c *gatedCache) GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error) {
	if err := c.gate.waitObject(ctx, obj); err != nil {
		return nil, err
	}
	return c.Cache.GetInformer(ctx, obj, opts...)
}

func (c *gatedCache) GetInformerForKind(ctx context.Context, gvk schema.GroupVersionKind, opts ...cache.InformerGetOption) (cache.Informer, error) {
	if err := c.gate.waitKind(ctx, gvk.GroupKind()); err != nil {
		return nil, err
	}
	return c.Cache.GetInformerForKind(ctx, gvk, opts...)
}

// waitList waits for the kind of a list's items: the list's kind without its "List" suffix.
func (c *gatedCache) waitList(ctx context.Context, list client.ObjectList) error {
	if err := c.gate.waitOpen(ctx); err != nil {
		return err
	}
	gvk, err := apiutil.GVKForObject(list, c.gate.warming.scheme)
	if err != nil {
		return nil // the cache reports it
	}
	return c.gate.warming.waitKind(ctx, schema.GroupKind{Group: gvk.Group, Kind: strings.TrimSuffix(gvk.Kind, "List")})
}
