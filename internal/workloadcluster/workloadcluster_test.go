package workloadcluster

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

var env *testenv.Environment

func TestMain(m *testing.M) {
	testenv.Main(m, func(s *testenv.Suite) (err error) {
		env, err = s.Start(testenv.Options{})
		return err
	})
}

func TestCache(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "wc-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	cache := &Cache{Reader: env.Client, Scheme: env.Scheme}
	cluster := types.NamespacedName{Namespace: ns.Name, Name: "c1"}

	if _, err := cache.Get(ctx, cluster); !errors.Is(err, ErrKubeconfigMissing) {
		t.Fatalf("without a Secret: got %v, want ErrKubeconfigMissing", err)
	}

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: SecretName("c1")}, Data: map[string][]byte{"other": []byte("x")}}
	if err := env.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Get(ctx, cluster); !errors.Is(err, ErrKubeconfigMissing) {
		t.Fatalf("without the value key: got %v, want ErrKubeconfigMissing", err)
	}

	secret.Data = map[string][]byte{KubeconfigKey: []byte("clusters: [")}
	if err := env.Client.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Get(ctx, cluster); !errors.Is(err, ErrKubeconfigInvalid) {
		t.Fatalf("with garbage: got %v, want ErrKubeconfigInvalid", err)
	}

	kc, err := Kubeconfig(env.Config, "c1")
	if err != nil {
		t.Fatal(err)
	}
	secret.Data = map[string][]byte{KubeconfigKey: kc}
	if err := env.Client.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	first, err := cache.Get(ctx, cluster)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if err := first.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	nsList := &corev1.NamespaceList{}
	if err := first.Client.List(ctx, nsList); err != nil || len(nsList.Items) == 0 {
		t.Fatalf("listing namespaces through the workload client: %v (%d)", err, len(nsList.Items))
	}
	again, err := cache.Get(ctx, cluster)
	if err != nil || again != first {
		t.Fatalf("unchanged Secret: got a new client (%v)", err)
	}

	// A rotated kubeconfig (new resourceVersion) gives a new client.
	secret.Annotations = map[string]string{"rotated": "yes"}
	if err := env.Client.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	rotated, err := cache.Get(ctx, cluster)
	if err != nil || rotated == first {
		t.Fatalf("changed Secret: got the cached client (%v)", err)
	}

	cache.Drop(cluster)
	if cache.Len() != 0 {
		t.Errorf("Drop left %d clients", cache.Len())
	}

	// An API server that does not answer: the kubeconfig is fine, Ping says unreachable.
	dead := rest.CopyConfig(env.Config)
	dead.Host = "https://127.0.0.1:1"
	kc, err = Kubeconfig(dead, "c2")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: SecretName("c2")}, Data: map[string][]byte{KubeconfigKey: kc}}); err != nil {
		t.Fatal(err)
	}
	wc, err := cache.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: "c2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := wc.Ping(ctx); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Ping of a dead server: got %v, want ErrUnreachable", err)
	}
}

// TestCacheBoundsConnections checks that a Cache keeps at most MaxConnections clusters connected,
// the least recently used going first, and that a cluster connected again reuses what its mapper
// discovered: no discovery request, the same answers.
func TestCacheBoundsConnections(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "wc-bound-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	discoveries := map[string]int{} // by cluster name
	cache := &Cache{Reader: env.Client, Scheme: env.Scheme, MaxConnections: 2, ConfigHook: func(cluster types.NamespacedName, cfg *rest.Config) {
		cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if strings.HasPrefix(r.URL.Path, "/api/v1") && !strings.Contains(strings.TrimPrefix(r.URL.Path, "/api/v1"), "/") {
					mu.Lock()
					discoveries[cluster.Name]++
					mu.Unlock()
				}
				return rt.RoundTrip(r)
			})
		})
	}}
	names := []string{"a", "b", "c"}
	for _, n := range names {
		kc, err := Kubeconfig(env.Config, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: SecretName(n)}, Data: map[string][]byte{KubeconfigKey: kc}}); err != nil {
			t.Fatal(err)
		}
	}
	use := func(n string) *Cluster {
		t.Helper()
		c, err := cache.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: n})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Mapper.RESTMapping(schema.GroupKind{Kind: "ConfigMap"}, "v1"); err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := use("a")
	use("b")
	use("c") // evicts a
	if n := cache.Len(); n != 2 {
		t.Errorf("%d clusters connected, want 2", n)
	}
	again := use("a") // evicts b
	if again == first {
		t.Error("the evicted cluster a was not connected again")
	}
	if cache.Len() != 2 {
		t.Errorf("%d clusters connected, want 2", cache.Len())
	}
	if d := discoveries["a"]; d != 1 {
		t.Errorf("cluster a discovered /api/v1 %d times, want once (its reconnection starts from what it knew)", d)
	}
	if use("c") == nil || discoveries["c"] != 1 {
		t.Errorf("cluster c (still connected) discovered %d times, want once", discoveries["c"])
	}
}
