package scope

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/lru"
	"sigs.k8s.io/controller-runtime/pkg/client"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

// secrets is the smallest client.Reader that serves Secrets from a map; the factory only Gets.
type secrets map[string]*corev1.Secret

func (s secrets) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	sec, ok := s[key.String()]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, key.Name)
	}
	sec.DeepCopyInto(obj.(*corev1.Secret))
	return nil
}

func (s secrets) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("not used")
}

func TestFactoryCachesLogins(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	srv, err := openstackdouble.New(openstackdouble.WithClock(clock), openstackdouble.WithTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := t.Context()
	cloudsYAML, _ := srv.CloudsYAML(openstackdouble.CloudsYAMLOptions{})
	sec := secretWith(map[string]string{CloudsYAMLKey: cloudsYAML, CACertKey: string(srv.CACertPEM())})
	sec.UID, sec.ResourceVersion = "uid-1", "1"
	store := secrets{"ns/creds": sec}
	f := NewFactory(store)
	ref := &infrav1.OpenStackIdentityReference{Kind: "Secret", Name: "creds"}

	list := func() {
		t.Helper()
		c, err := f.ImageClient(ctx, "ns", ref)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ListImages(ctx, images.ListOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		list()
	}
	if got := srv.Calls(openstackdouble.CallAuthTokens); got != 1 {
		t.Fatalf("logins after 5 uses of the same Secret = %d, want 1", got)
	}
	// The cached login keeps its token's ID, not the whole decoded answer of the login.
	slim := func(when string) {
		t.Helper()
		e, ok := f.clients.Get(types.NamespacedName{Namespace: "ns", Name: "creds"})
		if !ok {
			t.Fatalf("%s: no cached login", when)
		}
		p := e.(*entry).provider
		if _, ok := p.GetAuthResult().(tokenID); !ok || p.Token() == "" {
			t.Fatalf("%s: the cached login keeps %T, token %q", when, p.GetAuthResult(), p.Token())
		}
	}
	slim("after the login")

	// An expired token is renewed once by gophercloud, on the same cached client.
	srv.ExpireTokens()
	list()
	list()
	if got := srv.Calls(openstackdouble.CallAuthTokens); got != 2 {
		t.Fatalf("logins after token expiry = %d, want 2", got)
	}
	slim("after the renewal")

	// A changed Secret is a new resourceVersion: one new login.
	sec.ResourceVersion = "2"
	list()
	list()
	if got := srv.Calls(openstackdouble.CallAuthTokens); got != 3 {
		t.Fatalf("logins after the Secret changed = %d, want 3", got)
	}

	// Wrong credentials: a readable, value-free error naming the Secret.
	bad, _ := srv.CloudsYAML(openstackdouble.CloudsYAMLOptions{Password: "wrong-" + testPassword})
	store["ns/bad"] = secretWith(map[string]string{CloudsYAMLKey: bad, CACertKey: string(srv.CACertPEM())})
	store["ns/bad"].Name, store["ns/bad"].UID = "bad", "uid-2"
	_, err = f.ImageClient(ctx, "ns", &infrav1.OpenStackIdentityReference{Name: "bad"})
	if !errors.Is(err, ErrAuthenticationFailed) || !strings.Contains(err.Error(), "ns/bad") || strings.Contains(err.Error(), testPassword) {
		t.Fatalf("wrong password: %v", err)
	}

	// No CA: TLS verification fails with a hint.
	store["ns/noca"] = secretWith(map[string]string{CloudsYAMLKey: cloudsYAML})
	store["ns/noca"].Name, store["ns/noca"].UID = "noca", "uid-3"
	_, err = f.ImageClient(ctx, "ns", &infrav1.OpenStackIdentityReference{Name: "noca"})
	if !errors.Is(err, ErrTLS) {
		t.Fatalf("missing CA: %v", err)
	}

	// Missing Secret.
	_, err = f.ImageClient(ctx, "ns", &infrav1.OpenStackIdentityReference{Name: "absent"})
	if !errors.Is(err, ErrSecretNotFound) || !strings.Contains(err.Error(), "ns/absent") {
		t.Fatalf("missing Secret: %v", err)
	}
}

// TestFactoryBoundsClients: the factory keeps the logins of the most recently used Secrets only,
// drops the login of a Secret that is gone, and a Secret whose catalog has no Glance endpoint
// says so.
func TestFactoryBoundsClients(t *testing.T) {
	t.Parallel()
	srv, err := openstackdouble.New()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := t.Context()
	cloudsYAML, _ := srv.CloudsYAML(openstackdouble.CloudsYAMLOptions{})
	store := secrets{}
	add := func(name, content string) {
		sec := secretWith(map[string]string{CloudsYAMLKey: content})
		sec.Name, sec.UID, sec.ResourceVersion = name, types.UID("uid-"+name), "1"
		store["ns/"+name] = sec
	}
	for _, n := range []string{"a", "b", "c"} {
		add(n, cloudsYAML)
	}
	f := NewFactory(store)
	f.clients = lru.New(2)
	use := func(name string, wantLogin bool) {
		t.Helper()
		before := srv.Calls(openstackdouble.CallAuthTokens)
		if _, err := f.ImageClient(ctx, "ns", &infrav1.OpenStackIdentityReference{Name: name}); err != nil {
			t.Fatalf("client of %s: %v", name, err)
		}
		if login := srv.Calls(openstackdouble.CallAuthTokens) > before; login != wantLogin {
			t.Fatalf("client of %s: logged in = %t, want %t", name, login, wantLogin)
		}
	}
	use("a", true)
	use("b", true)
	use("a", false)
	use("c", true) // b is the least recently used: dropped
	if got := f.clients.Len(); got != 2 {
		t.Fatalf("cached clients = %d, want the bound 2", got)
	}
	use("a", false)
	use("b", true)

	// A Secret that is gone takes its login with it; re-created as it was, it logs in again.
	sec := store["ns/b"]
	delete(store, "ns/b")
	if _, err := f.ImageClient(ctx, "ns", &infrav1.OpenStackIdentityReference{Name: "b"}); !errors.Is(err, ErrSecretNotFound) {
		t.Fatalf("deleted Secret: %v, want ErrSecretNotFound", err)
	}
	if _, ok := f.clients.Get(types.NamespacedName{Namespace: "ns", Name: "b"}); ok {
		t.Fatal("the client of a deleted Secret is still cached")
	}
	store["ns/b"] = sec
	use("b", true)

	// A region the catalog does not have: no image endpoint.
	elsewhere, _ := srv.CloudsYAML(openstackdouble.CloudsYAMLOptions{Region: "RegionThree"})
	add("elsewhere", elsewhere)
	if _, err := f.ImageClient(ctx, "ns", &infrav1.OpenStackIdentityReference{Name: "elsewhere"}); !errors.Is(err, ErrNoEndpoint) || !strings.Contains(err.Error(), "RegionThree") {
		t.Fatalf("catalog without the region: %v, want ErrNoEndpoint naming the region", err)
	}
}
