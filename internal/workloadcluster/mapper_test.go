package workloadcluster

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

func newTestLeanMapper(t testing.TB) *leanMapper {
	t.Helper()
	httpClient, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfigAndClient(env.Config, httpClient)
	if err != nil {
		t.Fatal(err)
	}
	return newLeanMapper(dc)
}

func TestLeanMapperMappings(t *testing.T) {
	m := newTestLeanMapper(t)
	cases := []struct {
		gk       schema.GroupKind
		versions []string
		want     schema.GroupVersionResource
		scope    meta.RESTScopeName
	}{
		{schema.GroupKind{Kind: "ConfigMap"}, []string{"v1"}, schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, meta.RESTScopeNameNamespace},
		{schema.GroupKind{Kind: "Namespace"}, nil, schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, meta.RESTScopeNameRoot},
		{schema.GroupKind{Group: "apps", Kind: "Deployment"}, nil, schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, meta.RESTScopeNameNamespace},
		{schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"}, []string{"v1"}, schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}, meta.RESTScopeNameRoot},
		// The second version serves it when the first does not exist.
		{schema.GroupKind{Group: "cluster.x-k8s.io", Kind: "Cluster"}, []string{"v9", "v1beta2"}, schema.GroupVersionResource{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "clusters"}, meta.RESTScopeNameNamespace},
	}
	for _, tc := range cases {
		t.Run(tc.gk.String(), func(t *testing.T) {
			mapping, err := m.RESTMapping(tc.gk, tc.versions...)
			if err != nil {
				t.Fatal(err)
			}
			if mapping.Resource != tc.want || mapping.Scope.Name() != tc.scope || mapping.GroupVersionKind.Kind != tc.gk.Kind {
				t.Fatalf("got %v %s %v, want %v %s", mapping.Resource, mapping.Scope.Name(), mapping.GroupVersionKind, tc.want, tc.scope)
			}
		})
	}

	gvk, err := m.KindFor(schema.GroupVersionResource{Group: "apps", Resource: "deployment"})
	if err != nil || gvk != (schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}) {
		t.Fatalf("KindFor(apps deployment) = %v, %v", gvk, err)
	}
	gvr, err := m.ResourceFor(schema.GroupVersionResource{Resource: "configmap"})
	if err != nil || gvr != (schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}) {
		t.Fatalf("ResourceFor(configmap) = %v, %v", gvr, err)
	}
}

func TestLeanMapperUnknownKinds(t *testing.T) {
	m := newTestLeanMapper(t)
	for _, gk := range []schema.GroupKind{
		{Kind: "NoSuchKind"},
		{Group: "no.such.group", Kind: "Thing"},
	} {
		_, err := m.RESTMapping(gk)
		if !meta.IsNoMatchError(err) {
			t.Errorf("RESTMapping(%v): got %v, want a no-match error", gk, err)
		}
	}
	if _, err := m.RESTMapping(schema.GroupKind{Group: "apps", Kind: "NoSuchKind"}, "v1"); !meta.IsNoMatchError(err) {
		t.Errorf("unknown kind in a served group version: got %v, want a no-match error", err)
	}
}

// TestLeanMapperFindsNewCRD: a kind whose CRD appears after a miss (applied by an earlier addon
// stage) is found once the miss is older than missRefresh, without a new mapper.
func TestLeanMapperFindsNewCRD(t *testing.T) {
	ctx := context.Background()
	m := newTestLeanMapper(t)
	clock := time.Now()
	m.now = func() time.Time { return clock }
	gk := schema.GroupKind{Group: "lean.example.org", Kind: "Widget"}
	if _, err := m.RESTMapping(gk, "v1"); !meta.IsNoMatchError(err) {
		t.Fatalf("before the CRD: got %v, want a no-match error", err)
	}

	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "widgets.lean.example.org"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "lean.example.org",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList"},
			Scope: apiextensionsv1.ClusterScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptrTo(true)}},
			}},
		},
	}
	if err := env.Client.Create(ctx, crd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(ctx, crd) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		clock = clock.Add(missRefresh) // every attempt may ask the API server again
		mapping, err := m.RESTMapping(gk, "v1")
		if err == nil {
			if mapping.Scope.Name() != meta.RESTScopeNameRoot || mapping.Resource.Resource != "widgets" {
				t.Fatalf("got %v %s", mapping.Resource, mapping.Scope.Name())
			}
			return
		}
		if !meta.IsNoMatchError(err) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new CRD's kind was never found: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ptrTo[T any](v T) *T { return &v }

// TestLeanMapperMissIsBounded: a kind that does not exist costs one discovery request per
// missRefresh, not one per lookup.
func TestLeanMapperMissIsBounded(t *testing.T) {
	var requests int
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			requests++
			return rt.RoundTrip(r)
		})
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := newLeanMapper(dc)
	for range 20 {
		if _, err := m.RESTMapping(schema.GroupKind{Kind: "NoSuchKind"}, "v1"); !meta.IsNoMatchError(err) {
			t.Fatal(err)
		}
	}
	// One request for /api/v1, and one refresh right after it would be within missRefresh.
	if requests != 1 {
		t.Fatalf("20 lookups of a missing kind made %d discovery requests, want 1", requests)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// BenchmarkMapperMemory compares the heap that 200 workload-cluster mappers keep after each
// resolved the kinds of a typical addon set, for this mapper and controller-runtime's dynamic one.
func BenchmarkMapperMemory(b *testing.B) {
	kinds := []schema.GroupKind{{Kind: "Namespace"}, {Kind: "ConfigMap"}, {Kind: "ServiceAccount"}, {Group: "apps", Kind: "Deployment"}, {Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"}}
	const clusters = 200
	builders := map[string]func() (meta.RESTMapper, error){
		"lean": func() (meta.RESTMapper, error) { return newTestLeanMapper(b), nil },
		"controller-runtime-dynamic": func() (meta.RESTMapper, error) {
			httpClient, err := rest.HTTPClientFor(env.Config)
			if err != nil {
				return nil, err
			}
			return apiutil.NewDynamicRESTMapper(env.Config, httpClient)
		},
	}
	for _, name := range []string{"lean", "controller-runtime-dynamic"} {
		b.Run(name, func(b *testing.B) {
			for range b.N {
				before := heapInUse()
				mappers := make([]meta.RESTMapper, 0, clusters)
				for range clusters {
					m, err := builders[name]()
					if err != nil {
						b.Fatal(err)
					}
					for _, gk := range kinds {
						if _, err := m.RESTMapping(gk); err != nil {
							b.Fatal(fmt.Errorf("%v: %w", gk, err))
						}
					}
					mappers = append(mappers, m)
				}
				after := heapInUse()
				b.ReportMetric(float64(after-before)/clusters/1024, "KiB/cluster")
				runtime.KeepAlive(mappers)
			}
		})
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestLeanMapperSharesKinds checks that mappers of clusters serving the same group version hold
// one table of its kinds, and that a table no mapper holds goes from the intern table.
func TestLeanMapperSharesKinds(t *testing.T) {
	a, b := newTestLeanMapper(t), newTestLeanMapper(t)
	gv := schema.GroupVersion{Group: "apps", Version: "v1"}
	da, err := a.groupVersion(gv, false)
	if err != nil {
		t.Fatal(err)
	}
	db, err := b.groupVersion(gv, false)
	if err != nil {
		t.Fatal(err)
	}
	if da.kinds != db.kinds {
		t.Fatal("two mappers of the same API server keep two tables of apps/v1's kinds")
	}
	if _, ok := da.kinds.byKind["Deployment"]; !ok {
		t.Fatalf("apps/v1's kinds lack Deployment: %v", da.kinds.byKind)
	}

	// Another content of the same group version is another table, which goes from the intern
	// table once nothing holds it (its cleanup runs after a collection).
	byKind := map[string]resourceInfo{"Deployment": {resource: "deployments", namespaced: true}}
	if kindTables.intern(gv, byKind) == da.kinds {
		t.Fatal("kinds of different content share a table")
	}
	key := kindsKey(gv, byKind)
	interned := func() bool {
		kindTables.mu.Lock()
		defer kindTables.mu.Unlock()
		_, ok := kindTables.tables[key]
		return ok
	}
	if !interned() {
		t.Fatal("the table is not in the intern table")
	}
	for deadline := time.Now().Add(10 * time.Second); interned(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a table nothing holds stays in the intern table")
		}
		runtime.GC()
	}
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
}
