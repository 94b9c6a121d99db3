package resolver_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

var env *testenv.Environment

// testConfinement lets the resolvers reach the loopback doubles, which the default egress policy
// refuses.
var testConfinement = resolver.WithConfinement(egress.AllowLoopbackForTests(), []string{os.TempDir()})

func TestMain(m *testing.M) {
	testenv.Main(m, func(s *testenv.Suite) (err error) {
		env, err = s.Start(testenv.Options{})
		return err
	})
}

func namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "store-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), ns) })
	return ns.Name
}

// registry serves releases and counts manifest downloads.
func registry(t *testing.T, versions ...string) (string, *atomic.Int64) {
	t.Helper()
	var manifests atomic.Int64
	host := fixtures.StartRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") {
				manifests.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	for _, v := range versions {
		dir, err := fixtures.Build(t.TempDir(), fixtures.Options{StackVersion: v})
		if err != nil {
			t.Fatal(err)
		}
		n := fixtures.Options{StackVersion: v}.ReleaseName()
		if _, err := fixtures.Push(context.Background(), dir, host+"/stacks", n, true); err != nil {
			t.Fatal(err)
		}
	}
	return host, &manifests
}

func clusterStack(t *testing.T, ns string, src *clusterstackv1alpha1.ReleaseSource) *clusterstackv1alpha1.ClusterStack {
	t.Helper()
	cs := &clusterstackv1alpha1.ClusterStack{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "scs"},
		Spec: clusterstackv1alpha1.ClusterStackSpec{
			Provider: "openstack", Name: "scs", KubernetesVersion: "1.32", Channel: "stable",
			NoProvider: true, Source: src,
		},
	}
	if err := env.Client.Create(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestReleaseIsFetchedOnceThenCached(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t)
	host, manifests := registry(t, "v1")
	cs := clusterStack(t, ns, &clusterstackv1alpha1.ReleaseSource{OCI: &clusterstackv1alpha1.OCISource{Registry: host, Repository: "stacks", Insecure: true}})
	store, err := newResolver(t, source.Config{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, err := store.Release(ctx, cs, name.MustParse("openstack-scs-1-32-v1"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Metadata.Versions.Kubernetes != "v1.32.5" || r.ClusterClassChart == "" {
		t.Errorf("unexpected release %+v", r)
	}
	fetched := manifests.Load()
	if fetched == 0 {
		t.Fatal("the release was not fetched from the registry")
	}
	if _, err := store.Release(ctx, cs, name.MustParse("openstack-scs-1-32-v1")); err != nil {
		t.Fatal(err)
	}
	if got := manifests.Load(); got != fetched {
		t.Errorf("second Release fetched again: %d manifest requests, want %d", got, fetched)
	}
	// A fresh store on the same cache directory (an operator restart) does not fetch either.
	store2, err := newResolver(t, source.Config{}, store.Cache().Root())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store2.Release(ctx, cs, name.MustParse("openstack-scs-1-32-v1")); err != nil {
		t.Fatal(err)
	}
	if got := manifests.Load(); got != fetched {
		t.Errorf("a restarted store fetched again: %d manifest requests, want %d", got, fetched)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t)
	host, _ := registry(t, "v1")
	store, err := newResolver(t, source.Config{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	noSource := clusterStack(t, ns, nil)

	otherNS := namespace(t)
	missingSecret := clusterStack(t, otherNS, &clusterstackv1alpha1.ReleaseSource{
		OCI:       &clusterstackv1alpha1.OCISource{Registry: host, Repository: "stacks", Insecure: true},
		SecretRef: &clusterstackv1alpha1.SecretReference{Name: "absent"},
	})
	tests := []struct {
		name    string
		cs      *clusterstackv1alpha1.ClusterStack
		release name.Release
		want    error
	}{
		{"no source anywhere", noSource, name.MustParse("openstack-scs-1-32-v1"), source.ErrNoSource},
		{"missing credentials Secret", missingSecret, name.MustParse("openstack-scs-1-32-v1"), source.ErrInvalidConfig},
		{"release of another minor", missingSecret, name.MustParse("openstack-scs-1-33-v1"), resolver.ErrWrongStack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := store.Release(ctx, tt.cs, tt.release)
			if !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
	// The default source serves ClusterStacks without spec.source.
	def, err := newResolver(t, source.Config{Type: source.TypeOCI, OCI: source.OCIConfig{Registry: host, Repository: "stacks", PlainHTTP: true}}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := def.Release(ctx, noSource, name.MustParse("openstack-scs-1-32-v1")); err != nil {
		t.Errorf("default source: %v", err)
	}
}

func TestSourceForFollowsSecret(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t)
	host, _ := registry(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"}, StringData: map[string]string{"username": "u", "password": "p"}}
	if err := env.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	cs := clusterStack(t, ns, &clusterstackv1alpha1.ReleaseSource{
		OCI:       &clusterstackv1alpha1.OCISource{Registry: host, Repository: "stacks", Insecure: true},
		SecretRef: &clusterstackv1alpha1.SecretReference{Name: "creds"},
	})
	store, err := newResolver(t, source.Config{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, err := store.SourceFor(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := store.SourceFor(ctx, cs)
	if a != b {
		t.Error("the same configuration built a second source")
	}
	secret.StringData = map[string]string{"password": "rotated"}
	if err := env.Client.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	c, err := store.SourceFor(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	if c == a {
		t.Error("rotated credentials did not build a new source")
	}
}

func TestReleaseFor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t)
	host, _ := registry(t, "v1", "v0-sha.abc1234")
	src := &clusterstackv1alpha1.ReleaseSource{OCI: &clusterstackv1alpha1.OCISource{Registry: host, Repository: "stacks", Insecure: true}}
	stable := clusterStack(t, ns, src)
	custom := &clusterstackv1alpha1.ClusterStack{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "custom"},
		Spec: clusterstackv1alpha1.ClusterStackSpec{
			Provider: "openstack", Name: "scs", KubernetesVersion: "1.32", Channel: "custom", NoProvider: true, Source: src,
		},
	}
	if err := env.Client.Create(ctx, custom); err != nil {
		t.Fatal(err)
	}
	// An owned release resolves through its owner.
	owned := &clusterstackv1alpha1.ClusterStackRelease{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: "openstack-scs-1-32-v1",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: clusterstackv1alpha1.GroupVersion.String(), Kind: "ClusterStack", Name: stable.Name, UID: stable.UID, Controller: ptr.To(true)}},
	}}
	if err := env.Client.Create(ctx, owned); err != nil {
		t.Fatal(err)
	}
	cs, err := store(t).ClusterStackFor(ctx, ns, name.MustParse(owned.Name))
	if err != nil || cs.Name != stable.Name {
		t.Fatalf("owned release: got %v, %v", cs, err)
	}
	// An unowned hash release resolves to the ClusterStack of its channel.
	cs, err = store(t).ClusterStackFor(ctx, ns, name.MustParse("openstack-scs-1-32-v0-sha-abc1234"))
	if err != nil || cs.Name != custom.Name {
		t.Fatalf("unowned hash release: got %v, %v", cs, err)
	}
	r, err := store(t).ReleaseFor(ctx, ns, name.MustParse("openstack-scs-1-32-v0-sha-abc1234"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Metadata.Versions.ClusterStack != "v0-sha.abc1234" {
		t.Errorf("metadata version %q", r.Metadata.Versions.ClusterStack)
	}
	if _, err := store(t).ReleaseFor(ctx, ns, name.MustParse("openstack-other-1-32-v1")); !errors.Is(err, resolver.ErrNoClusterStack) {
		t.Errorf("unknown stack: got %v", err)
	}
}

func store(t *testing.T) *resolver.Resolver {
	t.Helper()
	s, err := newResolver(t, source.Config{}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newResolver(t *testing.T, def source.Config, cacheDir string) (*resolver.Resolver, error) {
	t.Helper()
	return resolver.New(env.Client, def, cacheDir, testConfinement)
}

// secretReads counts the reads of Secrets: of their data, and of their metadata only.
type secretReads struct {
	client.Reader
	data, meta atomic.Int64
}

func (r *secretReads) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	switch o := obj.(type) {
	case *corev1.Secret:
		r.data.Add(1)
	case *metav1.PartialObjectMetadata:
		if o.Kind == "Secret" {
			r.meta.Add(1)
		}
	}
	return r.Reader.Get(ctx, key, obj, opts...)
}

func TestSecretIsReadOncePerVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t)
	host, manifests := registry(t, "v1")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"}, StringData: map[string]string{"username": "u", "password": "p"}}
	if err := env.Client.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	cs := clusterStack(t, ns, &clusterstackv1alpha1.ReleaseSource{
		OCI:       &clusterstackv1alpha1.OCISource{Registry: host, Repository: "stacks", Insecure: true},
		SecretRef: &clusterstackv1alpha1.SecretReference{Name: "creds"},
	})
	reads := &secretReads{Reader: env.Client}
	r, err := resolver.New(reads, source.Config{}, t.TempDir(), testConfinement)
	if err != nil {
		t.Fatal(err)
	}
	v1 := name.MustParse("openstack-scs-1-32-v1")
	for range 3 {
		if _, err := r.SourceFor(ctx, cs); err != nil {
			t.Fatal(err)
		}
	}
	if d, m := reads.data.Load(), reads.meta.Load(); d != 1 || m != 3 {
		t.Errorf("three listings read the Secret's data %d times and its metadata %d times, want 1 and 3", d, m)
	}
	// The first Release fetches (with the source already built: no further data read); later
	// ones are served from the cache without touching the Secret at all.
	for range 3 {
		if _, err := r.Release(ctx, cs, v1); err != nil {
			t.Fatal(err)
		}
	}
	if d, m := reads.data.Load(), reads.meta.Load(); d != 1 || m != 4 {
		t.Errorf("after three Release calls: %d data and %d metadata reads of the Secret, want 1 and 4", d, m)
	}
	if n := manifests.Load(); n == 0 {
		t.Error("the release was never fetched")
	}
	secret.StringData = map[string]string{"password": "rotated"}
	if err := env.Client.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if _, err := r.SourceFor(ctx, cs); err != nil {
		t.Fatal(err)
	}
	if d := reads.data.Load(); d != 2 {
		t.Errorf("a rotated Secret: %d data reads, want 2", d)
	}
}

func TestClustersByReleaseFollowsClassNamespace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stacks, tenant := namespace(t), namespace(t)
	create := func(ns, cluster, class, classNS string) {
		t.Helper()
		c := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cluster}}
		c.Spec.Topology.Version = "v1.32.5"
		c.Spec.Topology.ClassRef = clusterv1.ClusterClassRef{Name: class, Namespace: classNS}
		if err := env.Client.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	create(stacks, "own", "openstack-scs-1-32-v1", "")
	create(tenant, "borrowing", "openstack-scs-1-32-v1", stacks)
	create(tenant, "local", "openstack-scs-1-32-v2", "")
	create(tenant, "foreign-class", "my-class", "")

	tests := []struct {
		namespace string
		want      resolver.Usage
	}{
		{namespace: stacks, want: resolver.Usage{"openstack-scs-1-32-v1": {Release: name.MustParse("openstack-scs-1-32-v1"), Clusters: []string{"own", tenant + "/borrowing"}}}},
		{namespace: tenant, want: resolver.Usage{"openstack-scs-1-32-v2": {Release: name.MustParse("openstack-scs-1-32-v2"), Clusters: []string{"local"}}}},
	}
	for _, tt := range tests {
		got, err := resolver.ClustersByRelease(ctx, env.Client, tt.namespace)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("namespace %s (-want +got):\n%s", tt.namespace, d)
		}
	}
}

func TestPrunerKeepsNamedReleases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := namespace(t)
	host, manifests := registry(t, "v5", "v6", "v7")
	cs := clusterStack(t, ns, &clusterstackv1alpha1.ReleaseSource{OCI: &clusterstackv1alpha1.OCISource{Registry: host, Repository: "stacks", Insecure: true}})
	// Release names are kept whatever the namespace of their ClusterStackRelease: the versions
	// here are named by no other test of the package.
	r := store(t)
	for _, v := range []string{"v5", "v6", "v7"} {
		if _, err := r.Release(ctx, cs, name.MustParse("openstack-scs-1-32-"+v)); err != nil {
			t.Fatal(err)
		}
	}
	csr := &clusterstackv1alpha1.ClusterStackRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "openstack-scs-1-32-v6"}}
	if err := env.Client.Create(ctx, csr); err != nil {
		t.Fatal(err)
	}
	removed, err := (&resolver.Pruner{Reader: env.Client, Cache: r.Cache()}).Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if removed != 2 {
		t.Errorf("removed %d releases, want 2 (v5 and v7)", removed)
	}
	fetched := manifests.Load()
	if _, err := r.Release(ctx, cs, name.MustParse("openstack-scs-1-32-v6")); err != nil {
		t.Fatal(err)
	}
	if got := manifests.Load(); got != fetched {
		t.Errorf("the named release was fetched again: %d manifest requests, want %d", got, fetched)
	}
	if _, err := r.Release(ctx, cs, name.MustParse("openstack-scs-1-32-v5")); err != nil {
		t.Fatal(err)
	}
	if got := manifests.Load(); got == fetched {
		t.Error("a pruned release was served without fetching it again")
	}
}
