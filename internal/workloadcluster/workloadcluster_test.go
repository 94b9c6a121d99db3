package workloadcluster

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
