package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/startup"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// recordingCache records the kinds whose informers are asked for, in the form they are asked
// (typed or metadata).
type recordingCache struct {
	cache.Cache
	mu    sync.Mutex
	asked map[string]bool
}

func (c *recordingCache) GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error) {
	c.mu.Lock()
	c.asked[formOf(obj)] = true
	c.mu.Unlock()
	return c.Cache.GetInformer(ctx, obj, opts...)
}

func (c *recordingCache) askedFor() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k := range c.asked {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func formOf(obj client.Object) string {
	gvk, err := apiutil.GVKForObject(obj, scheme)
	if err != nil {
		return fmt.Sprintf("%T", obj)
	}
	return fmt.Sprintf("%T %s", obj, gvk.Kind)
}

// The warm-up and the readiness check cover exactly the kinds whose informers the controllers
// start, in the form they watch them, because they come from what the controllers registered:
// the manager runs every controller against an API server, and every informer its cache is
// asked for must be a watched kind (the OpenStackClusterCredential informer, which a hand-kept
// list once forgot, answered 429 for a second and held back every controller). A manager
// restricted to namespaces probes in the first of them.
func TestWatchedKindsAreTheInformersOfTheControllers(t *testing.T) {
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()

	opts, _, _, err := parseFlags(flag.NewFlagSet("manager", flag.ContinueOnError), []string{
		"--webhooks=false", "--runtime-extension-port=0", "--release-cache-dir=" + t.TempDir() + "/releases",
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingCache{asked: map[string]bool{}}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		NewCache: func(cfg *rest.Config, o cache.Options) (cache.Cache, error) {
			c, err := cache.New(cfg, o)
			rec.Cache = c
			return rec, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := setupControllers(mgr, opts); err != nil {
		t.Fatal(err)
	}
	kinds := watchedKinds(mgr, []string{"team-a", "team-b"})
	var watched []string
	for _, k := range kinds {
		if k.Namespace != "team-a" {
			t.Errorf("%s probes namespace %q, want team-a", formOf(k.Object), k.Namespace)
		}
		watched = append(watched, formOf(k.Object))
	}
	slices.Sort(watched)
	if len(slices.Compact(slices.Clone(watched))) != len(watched) {
		t.Errorf("watched kinds %q: a kind is listed twice", watched)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	ready := startup.CachesSynced(mgr.GetCache(), scheme, kinds, nil)
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/readyz", nil)
	deadline := time.Now().Add(time.Minute)
	for {
		asked := rec.askedFor()
		// Once every watched kind's informer was asked for by its controller (the readiness
		// check asks for them too, so it only runs after) and has synced, every controller has
		// started its watches.
		if !slices.ContainsFunc(watched, func(w string) bool { return !slices.Contains(asked, w) }) && ready(req) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute, informers asked for: %q; watched: %q; readiness: %v", asked, watched, ready(req))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if asked := rec.askedFor(); !slices.Equal(asked, watched) {
		t.Errorf("the controllers asked for the informers of\n%q\nthe warm-up and the readiness check cover\n%q", asked, watched)
	}
	if !slices.Contains(watched, "*v1alpha1.OpenStackClusterCredential OpenStackClusterCredential") {
		t.Errorf("watched kinds %q lack OpenStackClusterCredential", watched)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("the manager stopped with %v", err)
	}
}
