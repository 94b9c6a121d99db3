package startup_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/startup"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// env serves from its watch cache, as a cluster's API server does, so that a kind nobody has
// asked for yet is answered 429 until its cache fills.
var env *testenv.Environment

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	var err error
	if env, err = testenv.Start(testenv.Options{WatchCache: true}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

func warmer(t *testing.T) startup.Warmer {
	t.Helper()
	hc, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper, err := apiutil.NewDynamicRESTMapper(env.Config, hc)
	if err != nil {
		t.Fatal(err)
	}
	return startup.Warmer{Config: env.Config, HTTPClient: hc, Mapper: mapper, Scheme: env.Scheme}
}

// A watch from the cache, asked right after the warm-up of kinds nobody had asked for, is served
// at once: no 429, which would make client-go wait a second.
func TestWarmWatchCachesFillsTheCachesOfNewKinds(t *testing.T) {
	w := warmer(t)
	kinds := []startup.Kind{
		{Object: &clusterstackv1alpha1.ClusterAddon{}},
		{Object: &infrav1alpha1.OpenStackNodeImageRelease{}, Namespace: "default"},
		{Object: metadataOf(clusterv1.GroupVersion.WithKind("ClusterClass"))},
	}
	if err := warm(w, kinds, 30*time.Second); err != nil {
		t.Fatalf("warming: %v", err)
	}
	for _, path := range []string{
		"/apis/clusterstack.x-k8s.io/v1alpha1/clusteraddons",
		"/apis/infrastructure.clusterstack.x-k8s.io/v1alpha1/namespaces/default/openstacknodeimagereleases",
		"/apis/cluster.x-k8s.io/v1beta2/clusterclasses",
	} {
		// The informers' first request: a streaming watch, which only the watch cache serves.
		q := "?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"
		resp, err := w.HTTPClient.Get(strings.TrimSuffix(env.Config.Host, "/") + path + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("watch of %s after the warm-up: HTTP %d, want 200", path, resp.StatusCode)
		}
	}
}

// A kind the API server does not serve is reported, not waited for; the others are warmed.
func TestWarmWatchCachesReportsAKindWithoutCRD(t *testing.T) {
	w := warmer(t)
	kinds := []startup.Kind{
		{Object: metadataOf(schema.GroupVersionKind{Group: "missing.example.org", Version: "v1", Kind: "Missing"})},
		{Object: &infrav1alpha1.OpenStackClusterStackRelease{}},
	}
	start := time.Now()
	err := warm(w, kinds, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "Missing") {
		t.Fatalf("warming = %v, want an error naming the kind Missing", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the warm-up took %s: it waited for a kind that cannot be served", d)
	}
}

// warm runs the warm-up to its end and returns the kinds it could not warm.
func warm(w startup.Warmer, kinds []startup.Kind, timeout time.Duration) error {
	g := w.Start(context.Background(), kinds, timeout)
	<-g.Done()
	_, _, err := g.Result()
	return err
}

func check(t *testing.T, c cache.Cache, kinds []startup.Kind) error {
	t.Helper()
	req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/readyz", nil)
	return startup.CachesSynced(c, env.Scheme, kinds, nil)(req)
}

// The readiness check fails before the informers have synced, passes once they have, and fails
// with the mapping error for a kind whose CRD is missing, whose cache can never sync.
func TestCachesSynced(t *testing.T) {
	hc, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper, err := apiutil.NewDynamicRESTMapper(env.Config, hc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme, Mapper: mapper, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	kinds := []startup.Kind{
		{Object: &clusterstackv1alpha1.ClusterStack{}},
		{Object: &clusterv1.Cluster{}},
		{Object: metadataOf(clusterv1.GroupVersion.WithKind("ClusterClass"))},
	}
	err = check(t, c, kinds)
	if err == nil || !strings.Contains(err.Error(), "the cache of ClusterStack has not synced yet") {
		t.Fatalf("check before the cache started = %v, want ClusterStack not synced", err)
	}
	// Every kind is named, not only the first: the first check starts every informer.
	if !strings.Contains(err.Error(), "the cache of ClusterClass has not synced yet") {
		t.Errorf("check before the cache started = %v, want ClusterClass named too", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Start(ctx) }()
	deadline := time.Now().Add(time.Minute)
	for err = check(t, c, kinds); err != nil; err = check(t, c, kinds) {
		if time.Now().After(deadline) {
			t.Fatalf("check after a minute of the cache running: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The check started the informers itself: they hold what the API server has.
	if err := env.Client.Create(ctx, &clusterstackv1alpha1.ClusterStack{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "synced"},
		Spec:       clusterstackv1alpha1.ClusterStackSpec{Provider: "openstack", Name: "scs", KubernetesVersion: "1.32", Channel: "stable", Versions: []string{"v1"}, NoProvider: true},
	}); err != nil {
		t.Fatal(err)
	}
	for {
		var got clusterstackv1alpha1.ClusterStack
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "synced"}, &got); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cache never saw the ClusterStack")
		}
		time.Sleep(10 * time.Millisecond)
	}

	missing := append(kinds, startup.Kind{Object: metadataOf(schema.GroupVersionKind{Group: "missing.example.org", Version: "v1", Kind: "Missing"})})
	if err := check(t, c, missing); err == nil || !strings.Contains(err.Error(), "the cache of Missing") {
		t.Errorf("check with a kind whose CRD is missing = %v, want an error naming Missing", err)
	}
}

func metadataOf(gvk schema.GroupVersionKind) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(gvk)
	return m
}

// lister records the lists it is asked for; nothing else is called.
type lister struct {
	cache.Cache
	listed []string
}

func (l *lister) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	gvk, _ := apiutil.GVKForObject(list, env.Scheme)
	l.listed = append(l.listed, gvk.Kind)
	return nil
}

// informers records the kinds whose informers were asked for; nothing else is called.
type informers struct {
	cache.Informers
	asked []string
}

func (i *informers) GetInformer(_ context.Context, obj client.Object, _ ...cache.InformerGetOption) (cache.Informer, error) {
	gvk, _ := apiutil.GVKForObject(obj, env.Scheme)
	i.asked = append(i.asked, gvk.Kind)
	return nil, fmt.Errorf("no informer of %s in this test", gvk.Kind)
}

// Each kind is done on its own: a kind whose cache is warm is released (through the gate too)
// while another one still fills, the readiness check does not start the informer of a kind still
// warming, and a kind the API server keeps refusing is released when the warm-up gives up.
func TestWarmingIsPerKind(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/clusterstacks") {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = w.Write([]byte(`{"kind":"List","apiVersion":"v1","items":[]}`))
	}))
	defer srv.Close()
	mapper := meta.NewDefaultRESTMapper(nil)
	for _, k := range []string{"ClusterStack", "ClusterAddon"} {
		mapper.Add(clusterstackv1alpha1.GroupVersion.WithKind(k), meta.RESTScopeNamespace)
	}
	w := startup.Warmer{Config: &rest.Config{Host: srv.URL}, HTTPClient: srv.Client(), Mapper: mapper, Scheme: env.Scheme}
	stack, addon := &clusterstackv1alpha1.ClusterStack{}, &clusterstackv1alpha1.ClusterAddon{}
	kinds := []startup.Kind{{Object: stack}, {Object: addon}}
	const giveUp = 2 * time.Second
	gate := startup.NewGate()
	reads := &lister{}
	gated := gate.Cache(reads)
	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	if err := gated.List(short, &clusterstackv1alpha1.ClusterAddonList{}); err == nil || len(reads.listed) > 0 {
		t.Fatalf("a read through the closed gate = %v, reached the cache: %v", err, reads.listed)
	}
	g := w.Start(context.Background(), kinds, giveUp)
	gate.Open(g)

	if err := g.Wait(context.Background(), addon); err != nil {
		t.Fatalf("Wait(ClusterAddon) = %v, want nil", err)
	}
	if g.Warm(stack) {
		t.Fatal("ClusterStack is warm while the API server refuses it")
	}
	// Through the gate: a read of the warm kind goes to the cache, one of the kind still
	// filling waits.
	if err := gated.List(context.Background(), &clusterstackv1alpha1.ClusterAddonList{}); err != nil || !slices.Equal(reads.listed, []string{"ClusterAddonList"}) {
		t.Errorf("a read of the warm kind through the gate = %v, reached the cache with %v", err, reads.listed)
	}
	short2, cancelShort2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort2()
	if err := gated.Get(short2, client.ObjectKey{Name: "x"}, stack); err == nil {
		t.Error("a read of the kind still filling went through the gate")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := g.Wait(ctx, stack); err == nil {
		t.Error("Wait(ClusterStack) returned before the warm-up gave up")
	}
	inf := &informers{}
	req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/readyz", nil)
	err := startup.CachesSynced(inf, env.Scheme, kinds, g)(req)
	if err == nil || !strings.Contains(err.Error(), "ClusterStack has not synced yet (its watch cache") {
		t.Errorf("readiness while ClusterStack warms = %v, want ClusterStack not synced", err)
	}
	if !slices.Equal(inf.asked, []string{"ClusterAddon"}) {
		t.Errorf("the readiness check asked for the informers of %q, want only ClusterAddon's", inf.asked)
	}

	// Given up: the informer meets the API server's answer itself.
	if err := g.Wait(context.Background(), stack); err != nil {
		t.Fatalf("Wait(ClusterStack) after the warm-up gave up = %v, want nil", err)
	}
	<-g.Done()
	refused, perKind, err := g.Result()
	if refused == 0 || err == nil || !strings.Contains(err.Error(), "still filling") {
		t.Errorf("Result = %d refused, %v, want refusals and ClusterStack still filling", refused, err)
	}
	if len(perKind) != 2 {
		t.Errorf("per kind = %v, want both kinds", perKind)
	}
}
