// Package startup is what the manager does between its process start and being ready to act: it
// gets the API server's watch caches of the watched kinds filled before the informers ask, and it
// answers readiness only once the informers of every watched kind have synced.
//
// Why the watch caches: the API server creates the storage of a custom resource, and with it the
// watch cache, on the first request for that resource, and until the cache has filled it answers
// watches (and lists it would serve from the cache) with 429 "storage is (re)initializing",
// Retry-After 1 s. Since client-go 1.35 an informer's first request is a streaming watch
// (WatchListClient: sendInitialEvents=true), which only the watch cache serves, so every informer
// of a kind nobody has asked for since the API server (or its CRD) started waits a whole second.
// The older client of the SCS reference lists first (resourceVersion=0 with a page limit), which
// the API server hands to etcd while the cache is not ready, and by the time its watch comes the
// cache is there. WarmWatchCaches asks for each kind once, waits for its cache in steps of
// milliseconds, and keeps the streaming watch (which keeps a large initial list out of memory).
package startup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

const (
	// probeSelector matches no object: a list with it is cheap, and the API server serves it
	// from the watch cache (or answers 429 while the cache fills) rather than from etcd, which
	// it does for an unfiltered list with a limit.
	probeSelector = "clusterstack.x-k8s.io/watch-cache-probe=none"
	// probeInterval is the wait between two probes of a cache that is filling: a cache of a few
	// thousand objects fills in tens of milliseconds.
	probeInterval = 10 * time.Millisecond
	// DefaultWarmTimeout bounds the warm-up: beyond it the informers' own retry (one second)
	// costs no more than waiting longer.
	DefaultWarmTimeout = 2 * time.Second
)

// Kind is one watched kind, as the informers ask for it.
type Kind struct {
	// Object is an object of the kind; a PartialObjectMetadata carries its GroupVersionKind.
	Object client.Object
	// Namespace, when set, is where the probe lists (a manager restricted to namespaces may not
	// list across all); the API server has one watch cache per resource, whatever the namespace.
	Namespace string
}

// Warmer gets the API server's watch caches filled.
type Warmer struct {
	Config     *rest.Config
	HTTPClient *http.Client
	Mapper     meta.RESTMapper
	Scheme     *runtime.Scheme
}

// Warming is a warm-up in progress (Warmer.Start): each kind is done on its own, so that an
// informer of a kind whose cache is warm starts without waiting for the others.
type Warming struct {
	scheme *runtime.Scheme
	start  time.Time
	kinds  map[schema.GroupKind]*kindWarming
	done   chan struct{}
	took   time.Duration
}

// kindWarming is the warm-up of one kind; its fields are set before done is closed.
type kindWarming struct {
	name    string
	done    chan struct{}
	refused int
	took    time.Duration
	err     error
}

// Start probes every kind at once, in the background, until the API server serves it from a
// filled watch cache, or timeout passes. It never fails the start: a kind it cannot probe (no
// permission, no CRD) is left to the informers, which report it.
func (w Warmer) Start(ctx context.Context, kinds []Kind, timeout time.Duration) *Warming {
	g := &Warming{scheme: w.Scheme, start: time.Now(), kinds: map[schema.GroupKind]*kindWarming{}, done: make(chan struct{})}
	base, _, baseErr := rest.DefaultServerUrlFor(w.Config)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	var wg sync.WaitGroup
	for _, k := range kinds {
		gvk, err := apiutil.GVKForObject(k.Object, w.Scheme)
		if err != nil {
			gvk.Kind = fmt.Sprintf("%T", k.Object)
		}
		if _, ok := g.kinds[gvk.GroupKind()]; ok {
			continue // one watch cache per resource, whatever the form of the object
		}
		kw := &kindWarming{name: gvk.Kind, done: make(chan struct{})}
		g.kinds[gvk.GroupKind()] = kw
		wg.Go(func() {
			defer close(kw.done)
			defer func() { kw.took = time.Since(g.start) }()
			if err == nil {
				err = baseErr
			}
			if err != nil {
				kw.err = fmt.Errorf("warming the watch cache of %s: %w", kw.name, err)
				return
			}
			u, err := w.probeURL(base, gvk, k.Namespace)
			if err != nil {
				kw.err = err
				return
			}
			kw.refused, kw.err = w.probe(ctx, u)
		})
	}
	go func() {
		wg.Wait()
		cancel()
		g.took = time.Since(g.start)
		close(g.done)
	}()
	return g
}

// Done is closed once every kind is done.
func (g *Warming) Done() <-chan struct{} { return g.done }

// Wait returns once the watch cache of obj's kind is warm, or its warm-up gave up (the informer
// then meets the API server's answer itself), or with ctx's error. A kind the warm-up does not
// know returns at once.
func (g *Warming) Wait(ctx context.Context, obj client.Object) error {
	gvk, err := apiutil.GVKForObject(obj, g.scheme)
	if err != nil {
		return nil
	}
	return g.waitKind(ctx, gvk.GroupKind())
}

func (g *Warming) waitKind(ctx context.Context, gk schema.GroupKind) error {
	kw := g.kinds[gk]
	if kw == nil {
		return nil
	}
	select {
	case <-kw.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Warm tells without waiting whether obj's kind is done (or not warmed at all).
func (g *Warming) Warm(obj client.Object) bool {
	kw := g.kindOf(obj)
	if kw == nil {
		return true
	}
	select {
	case <-kw.done:
		return true
	default:
		return false
	}
}

func (g *Warming) kindOf(obj client.Object) *kindWarming {
	gvk, err := apiutil.GVKForObject(obj, g.scheme)
	if err != nil {
		return nil
	}
	return g.kinds[gvk.GroupKind()]
}

// Result returns, once Done is closed, how many probes were answered 429, per kind when it was
// done (since Start) and after how many refusals, and the kinds that could not be warmed.
func (g *Warming) Result() (refused int, perKind map[string]string, errs error) {
	perKind = map[string]string{}
	for _, kw := range g.kinds {
		refused += kw.refused
		perKind[kw.name] = fmt.Sprintf("%dms, %d refused", kw.took.Milliseconds(), kw.refused)
		errs = errors.Join(errs, kw.err)
	}
	return refused, perKind, errs
}

// Took is how long the whole warm-up took; valid once Done is closed.
func (g *Warming) Took() time.Duration { return g.took }

// probeURL is the list of kind that the watch cache answers: resourceVersion=0 (any version the
// cache holds) with a selector.
func (w Warmer) probeURL(base *url.URL, gvk schema.GroupVersionKind, namespace string) (*url.URL, error) {
	m, err := w.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("warming the watch cache of %s: %w", gvk.Kind, err)
	}
	path := []string{"apis", m.Resource.Group, m.Resource.Version}
	if m.Resource.Group == "" {
		path = []string{"api", m.Resource.Version}
	}
	if namespace != "" && m.Scope.Name() == meta.RESTScopeNameNamespace {
		path = append(path, "namespaces", namespace)
	}
	u := base.JoinPath(append(path, m.Resource.Resource)...)
	u.RawQuery = url.Values{"resourceVersion": {"0"}, "limit": {"1"}, "labelSelector": {probeSelector}}.Encode()
	return u, nil
}

// probe lists until the answer is not 429. Each probe is one plain request: client-go's REST
// client would wait out the Retry-After second itself.
func (w Warmer) probe(ctx context.Context, u *url.URL) (refused int, err error) {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return refused, err
		}
		req.Header.Set("Accept", "application/json")
		resp, err := w.HTTPClient.Do(req)
		if err != nil {
			if refused > 0 && ctx.Err() != nil {
				// The give-up deadline cut a probe after refusals: the same outcome as one that
				// ends between probes.
				return refused, fmt.Errorf("probing the watch cache (%s): still filling: %w", u.Path, ctx.Err())
			}
			return refused, fmt.Errorf("probing the watch cache (%s): %w", u.Path, err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusTooManyRequests:
			refused++
		case resp.StatusCode >= 300:
			return refused, fmt.Errorf("probing the watch cache (%s): HTTP %d", u.Path, resp.StatusCode)
		default:
			return refused, nil
		}
		select {
		case <-ctx.Done():
			return refused, fmt.Errorf("probing the watch cache (%s): still filling: %w", u.Path, ctx.Err())
		case <-time.After(probeInterval):
		}
	}
}

// CachesSynced is a readiness check that passes once the informers of every kind have synced:
// before, a reconcile, a webhook or a lifecycle hook would read an empty or partial cache, and a
// replica that is not ready to act gets no traffic. It asks for the informers without waiting, so
// a check before the cache starts fails instead of blocking; a kind the API server does not serve
// fails with the mapping error.
//
// With warming, a kind whose watch cache is still warming is not synced, and its informer is not
// asked for: that would start it, and its first request would be refused.
func CachesSynced(c cache.Informers, scheme *runtime.Scheme, kinds []Kind, warming *Warming) healthz.Checker {
	return func(req *http.Request) error {
		// Every informer is asked for before any is judged, so that the first check starts them
		// all at once rather than one per check.
		var errs []error
		for _, k := range kinds {
			name := kindName(k.Object, scheme)
			if warming != nil && !warming.Warm(k.Object) {
				errs = append(errs, fmt.Errorf("the cache of %s has not synced yet (its watch cache in the API server is filling)", name))
				continue
			}
			inf, err := c.GetInformer(req.Context(), k.Object, cache.BlockUntilSynced(false))
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("the cache of %s: %w", name, err))
			case !inf.HasSynced():
				errs = append(errs, fmt.Errorf("the cache of %s has not synced yet", name))
			}
		}
		return errors.Join(errs...)
	}
}

func kindName(obj client.Object, scheme *runtime.Scheme) string {
	gvk, err := apiutil.GVKForObject(obj, scheme)
	if err != nil {
		return fmt.Sprintf("%T", obj)
	}
	return gvk.Kind
}
