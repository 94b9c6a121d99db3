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

// WarmWatchCaches probes every kind at once until the API server serves it from a filled watch
// cache, or timeout passes. It never fails the start: a kind it cannot probe (no permission, no
// CRD) is left to the informers, which report it. It returns how many probes were answered 429,
// for the log.
func (w Warmer) WarmWatchCaches(ctx context.Context, kinds []Kind, timeout time.Duration) (refused int, errs error) {
	base, _, err := rest.DefaultServerUrlFor(w.Config)
	if err != nil {
		return 0, fmt.Errorf("warming the watch caches: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, k := range kinds {
		u, err := w.probeURL(base, k)
		if err != nil {
			errs = errors.Join(errs, err)
			continue
		}
		wg.Go(func() {
			n, err := w.probe(ctx, u)
			mu.Lock()
			defer mu.Unlock()
			refused += n
			errs = errors.Join(errs, err)
		})
	}
	wg.Wait()
	return refused, errs
}

// probeURL is the list of kind that the watch cache answers: resourceVersion=0 (any version the
// cache holds) with a selector.
func (w Warmer) probeURL(base *url.URL, k Kind) (*url.URL, error) {
	gvk, err := apiutil.GVKForObject(k.Object, w.Scheme)
	if err != nil {
		return nil, fmt.Errorf("warming the watch cache of %T: %w", k.Object, err)
	}
	m, err := w.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("warming the watch cache of %s: %w", gvk.Kind, err)
	}
	path := []string{"apis", m.Resource.Group, m.Resource.Version}
	if m.Resource.Group == "" {
		path = []string{"api", m.Resource.Version}
	}
	if k.Namespace != "" && m.Scope.Name() == meta.RESTScopeNameNamespace {
		path = append(path, "namespaces", k.Namespace)
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
func CachesSynced(c cache.Informers, scheme *runtime.Scheme, kinds []Kind) healthz.Checker {
	return func(req *http.Request) error {
		// Every informer is asked for before any is judged, so that the first check starts them
		// all at once rather than one per check.
		var errs []error
		for _, k := range kinds {
			name := kindName(k.Object, scheme)
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
