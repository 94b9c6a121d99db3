package reconciler

import (
	"errors"
	"fmt"
	"sync"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Builder sets up a controller the way controller-runtime's builder does (For, Owns, Watches,
// WatchesMetadata), with two differences that the manager's start-up needs:
//
//   - every watch is recorded for the manager (WatchedKinds), so that the warm-up of the API
//     server's watch caches and the readiness check cover exactly the kinds the controllers
//     watch, not a list kept by hand beside them;
//   - every watch is a source that starts the workers as soon as its own informer and event
//     handler have synced (see kindSource), instead of controller-runtime's Kind source, which
//     polls every 100 ms and waits for every informer of the cache.
type Builder struct {
	mgr     ctrl.Manager
	name    string
	options controller.Options
	forObj  client.Object
	watches []watch
	err     error
	// forSyncOnly starts the workers once the For kind has synced (StartOnForSync).
	forSyncOnly bool
}

type watch struct {
	obj     client.Object
	handler handler.EventHandler
	preds   []predicate.Predicate
	// owned asks for the owner handler, which needs the For kind (known only at Complete).
	owned bool
	// isFor is the watch of the For kind.
	isFor bool
}

// NewController starts the setup of the controller name.
func NewController(mgr ctrl.Manager, name string) *Builder {
	return &Builder{mgr: mgr, name: name}
}

// WithOptions sets the controller's options (workers, rate limiter).
func (b *Builder) WithOptions(o controller.Options) *Builder {
	b.options = o
	return b
}

// For reconciles obj: its events enqueue the object itself.
func (b *Builder) For(obj client.Object, preds ...predicate.Predicate) *Builder {
	if b.forObj != nil {
		b.err = errors.Join(b.err, fmt.Errorf("controller %s: For called twice", b.name))
	}
	b.forObj = obj
	b.watches = append(b.watches, watch{obj: obj, handler: &handler.EnqueueRequestForObject{}, preds: preds, isFor: true})
	return b
}

// StartOnForSync starts the workers as soon as the For kind's cache has synced, while the other
// watches still fill theirs. That is safe where the reconciler reads those kinds only through
// the manager's cache: a read of a kind whose informer has not synced waits for it (the cache
// blocks until synced), and the objects of the initial lists still enqueue what they map to.
// What it saves is the wait for the slowest watched kind before the first reconcile: on a fresh
// API server the watch cache of a large CRD (ClusterClass) fills last.
func (b *Builder) StartOnForSync() *Builder {
	b.forSyncOnly = true
	return b
}

// Owns watches obj and enqueues the For object that controls it.
func (b *Builder) Owns(obj client.Object, preds ...predicate.Predicate) *Builder {
	b.watches = append(b.watches, watch{obj: obj, preds: preds, owned: true})
	return b
}

// Watches watches obj and enqueues what h maps it to.
func (b *Builder) Watches(obj client.Object, h handler.EventHandler, preds ...predicate.Predicate) *Builder {
	b.watches = append(b.watches, watch{obj: obj, handler: h, preds: preds})
	return b
}

// WatchesMetadata watches only the metadata of obj's kind (a metadata informer keeps far less in
// memory) and enqueues what h maps it to.
func (b *Builder) WatchesMetadata(obj client.Object, h handler.EventHandler, preds ...predicate.Predicate) *Builder {
	gvk, err := apiutil.GVKForObject(obj, b.mgr.GetScheme())
	if err != nil {
		b.err = errors.Join(b.err, fmt.Errorf("controller %s: a metadata watch of %T: %w", b.name, obj, err))
		return b
	}
	return b.Watches(metadataOf(gvk), h, preds...)
}

// Complete registers the controller with the manager and records its watches.
func (b *Builder) Complete(r reconcile.Reconciler) error {
	if b.err != nil {
		return b.err
	}
	if b.forObj == nil {
		return fmt.Errorf("controller %s: For is required", b.name)
	}
	gvk, err := apiutil.GVKForObject(b.forObj, b.mgr.GetScheme())
	if err != nil {
		return fmt.Errorf("controller %s: %w", b.name, err)
	}
	opts := b.options
	opts.Reconciler = r
	if opts.LogConstructor == nil {
		opts.LogConstructor = logConstructor(b.mgr.GetLogger(), b.name, gvk)
	}
	c, err := controller.New(b.name, b.mgr, opts)
	if err != nil {
		return fmt.Errorf("setting up controller %s: %w", b.name, err)
	}
	reg := registryOf(b.mgr)
	for _, w := range b.watches {
		h := w.handler
		if w.owned {
			h = handler.EnqueueRequestForOwner(b.mgr.GetScheme(), b.mgr.GetRESTMapper(), b.forObj, handler.OnlyControllerOwner())
		}
		src := &kindSource{cache: b.mgr.GetCache(), obj: w.obj, handler: h, preds: w.preds, background: b.forSyncOnly && !w.isFor}
		if err := c.Watch(src); err != nil {
			return fmt.Errorf("controller %s: watching %T: %w", b.name, w.obj, err)
		}
		if err := reg.add(w.obj, b.mgr.GetScheme()); err != nil {
			return fmt.Errorf("controller %s: %w", b.name, err)
		}
	}
	return nil
}

// logConstructor is the logger controller-runtime's builder gives a controller: its name and
// kind, and with a request the object's key.
func logConstructor(base logr.Logger, name string, gvk schema.GroupVersionKind) func(*reconcile.Request) logr.Logger {
	log := base.WithValues("controller", name, "controllerGroup", gvk.Group, "controllerKind", gvk.Kind)
	return func(req *reconcile.Request) logr.Logger {
		if req == nil {
			return log
		}
		return log.WithValues(gvk.Kind, klog.KRef(req.Namespace, req.Name), "namespace", req.Namespace, "name", req.Name)
	}
}

func metadataOf(gvk schema.GroupVersionKind) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(gvk)
	return m
}

// registry is what is recorded per manager: the watched kinds.
type registry struct {
	mu    sync.Mutex
	kinds []client.Object
	seen  map[string]bool
}

var (
	registriesMu sync.Mutex
	registries   = map[ctrl.Manager]*registry{}
)

func registryOf(mgr ctrl.Manager) *registry {
	registriesMu.Lock()
	defer registriesMu.Unlock()
	r, ok := registries[mgr]
	if !ok {
		r = &registry{seen: map[string]bool{}}
		registries[mgr] = r
	}
	return r
}

// add records obj's kind once per form (typed or metadata): two controllers watching Clusters
// share one informer.
func (r *registry) add(obj client.Object, scheme *runtime.Scheme) error {
	gvk, err := apiutil.GVKForObject(obj, scheme)
	if err != nil {
		return fmt.Errorf("recording the watch of %T: %w", obj, err)
	}
	key := fmt.Sprintf("%T %s", obj, gvk)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.seen[key] {
		r.seen[key] = true
		r.kinds = append(r.kinds, obj)
	}
	return nil
}

// WatchedKinds returns the kinds that the controllers set up with NewController on mgr watch,
// once each, in the form they watch them (typed, or a PartialObjectMetadata with its kind), in
// the order they were first watched.
func WatchedKinds(mgr ctrl.Manager) []client.Object {
	r := registryOf(mgr)
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]client.Object(nil), r.kinds...)
}
