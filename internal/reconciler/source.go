package reconciler

import (
	"context"
	"errors"
	"fmt"
	"time"

	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// informerRetryInterval is the wait before asking the cache for an informer again after it
// failed (a CRD not installed yet), as controller-runtime's Kind source waits.
const informerRetryInterval = 10 * time.Second

var sourceLog = ctrl.Log.WithName("source")

// kindSource is a watch of one kind in the manager's cache that is synced as soon as its own
// informer has synced and its event handler has seen the initial list: it waits on client-go's
// channels (cache.WaitFor with the informer's and the registration's HasSyncedChecker), so the
// workers start the moment the events are in the queue.
//
// controller-runtime v0.25's source.Kind does the same job with client-go's WaitForCacheSync,
// which polls every 100 ms, three times over (the informer, then every informer of the cache,
// then the handler), so every controller starts at least 100 ms after its informers synced, and
// the slowest informer of the whole cache (one refused with a 429 waits a second) holds back
// every controller. It offers no option for either, so this source keeps everything else of
// controller-runtime: its informer source (source.Informer) turns the informer's notifications
// into handler calls behind the predicates, and only the wait for sync is added here.
type kindSource struct {
	cache   cache.Cache
	obj     client.Object
	handler handler.EventHandler
	preds   []predicate.Predicate
	// background: the workers do not wait for this watch to sync (Builder.StartOnForSync).
	background bool

	synced chan error
}

var _ source.SyncingSource = &kindSource{}

// Start registers the handler with the informer of the kind, in the background: Start must not
// block, and getting the informer may wait (for the kind's watch cache, see internal/startup).
func (s *kindSource) Start(ctx context.Context, queue workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	if s.cache == nil || s.obj == nil || s.handler == nil {
		return errors.New("starting a kind source: cache, object and handler are required")
	}
	s.synced = make(chan error, 1)
	go func() { s.synced <- s.start(ctx, queue) }()
	return nil
}

func (s *kindSource) start(ctx context.Context, queue workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	var inf cache.Informer
	for {
		var err error
		// Not blocking: the sync is waited for below, on channels.
		if inf, err = s.cache.GetInformer(ctx, s.obj, cache.BlockUntilSynced(false)); err == nil {
			break
		}
		sourceLog.Error(err, "Getting the informer failed; retrying", "source", s.String())
		select {
		case <-ctx.Done():
			return fmt.Errorf("getting the informer of %s: %w", s, err)
		case <-time.After(informerRetryInterval):
		}
	}
	reg := &registering{Informer: inf}
	if err := (&source.Informer{Informer: reg, Handler: s.handler, Predicates: s.preds}).Start(ctx, queue); err != nil {
		return fmt.Errorf("adding the event handler of %s: %w", s, err)
	}
	if !toolscache.WaitFor(ctx, "", inf.HasSyncedChecker(), reg.registration.HasSyncedChecker()) {
		return fmt.Errorf("waiting for the cache of %s to sync: %w", s, context.Cause(ctx))
	}
	return nil
}

// WaitForSync returns once the informer and the handler have synced. A cancelled context (the
// manager stopping) is no error, as for controller-runtime's Kind source.
func (s *kindSource) WaitForSync(ctx context.Context) error {
	if s.background {
		// start retries getting the informer until the manager stops, and the sync only fails
		// when it stops: nothing is lost by not waiting (the channel is buffered).
		return nil
	}
	select {
	case err := <-s.synced:
		return err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil
		}
		return fmt.Errorf("timed out waiting for the cache of %s to sync", s)
	}
}

// String names the kind in controller-runtime's "Starting EventSource" log.
func (s *kindSource) String() string {
	gvk := s.obj.GetObjectKind().GroupVersionKind()
	if gvk.Kind != "" {
		return fmt.Sprintf("kind source: %T[%s]", s.obj, gvk)
	}
	return fmt.Sprintf("kind source: %T", s.obj)
}

// registering keeps the registration of the handler that source.Informer adds (it does not
// return it), whose HasSyncedChecker says when the handler has seen the initial list.
type registering struct {
	cache.Informer
	registration toolscache.ResourceEventHandlerRegistration
}

func (r *registering) AddEventHandlerWithOptions(h toolscache.ResourceEventHandler, opts toolscache.HandlerOptions) (toolscache.ResourceEventHandlerRegistration, error) {
	reg, err := r.Informer.AddEventHandlerWithOptions(h, opts)
	r.registration = reg
	return reg, err
}
