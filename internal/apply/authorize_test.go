package apply_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
)

// restricted is a user of the test API server whose permissions in one namespace are the rules
// of a Role the test sets.
type restricted struct {
	ns     string
	cfg    *rest.Config
	client client.Client // counted
	plain  client.Client // not counted, for waiting on RBAC
}

func newRestricted(t *testing.T, ns string, rules []rbacv1.PolicyRule) *restricted {
	t.Helper()
	ctx := context.Background()
	user := "applier-" + ns
	cfg, err := env.AddUser(user, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &restricted{ns: ns, cfg: cfg}
	if r.client, err = client.New(countingConfig(cfg), client.Options{Scheme: env.Scheme}); err != nil {
		t.Fatal(err)
	}
	if r.plain, err = client.New(cfg, client.Options{Scheme: env.Scheme}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "applier"}, Rules: rules}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "applier"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "applier"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// setRules replaces the Role's rules.
func (r *restricted) setRules(t *testing.T, rules []rbacv1.PolicyRule) {
	t.Helper()
	role := &rbacv1.Role{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: r.ns, Name: "applier"}, role); err != nil {
		t.Fatal(err)
	}
	role.Rules = rules
	if err := env.Client.Update(context.Background(), role); err != nil {
		t.Fatal(err)
	}
}

// waitAllowed waits until the API server's RBAC authorizer (fed by an informer) allows verb on
// resource in the user's namespace: Role changes reach it after a short delay.
func (r *restricted) waitAllowed(t *testing.T, verb, resource string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		ssar := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: r.ns, Verb: verb, Resource: resource},
		}}
		if err := r.plain.Create(ctx, ssar); err != nil {
			return false, err
		}
		return ssar.Status.Allowed, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s %s to be allowed: %v", verb, resource, err)
	}
}

func (r *restricted) applier() *apply.Applier {
	return &apply.Applier{Client: r.client, FieldManager: manager}
}

func rule(resource string, verbs ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{resource}, Verbs: verbs}
}

// exists reports whether ref exists, read as admin.
func exists(t *testing.T, ref apply.Ref) bool {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(ref.GroupVersionKind())
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, u)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

func forbidden(t *testing.T, err error) *apply.ForbiddenError {
	t.Helper()
	var fe *apply.ForbiddenError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v, want a *apply.ForbiddenError", err)
	}
	return fe
}

func TestApplyForbiddenWritesNothing(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cmRules := rule("configmaps", "get", "list", "watch", "create", "patch", "delete")
	u := newRestricted(t, ns, []rbacv1.PolicyRule{cmRules, rule("secrets", "get")})
	u.waitAllowed(t, "patch", "configmaps")
	a := u.applier()
	desired := func(v string) []*unstructured.Unstructured {
		return []*unstructured.Unstructured{
			obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: "+ns+"}\ndata: {key: "+v+"}\n"),
			obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: "+ns+"}\ndata: {key: "+v+"}\n"),
			obj(t, "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: "+ns+"}\nstringData: {key: "+v+"}\n"),
		}
	}
	all := refs(desired("v1"))

	// ConfigMaps allowed, Secrets not: nothing is written, the error names what is missing.
	var err error
	var res apply.Result
	w, r := countRequests(func() { res, err = a.Apply(ctx, desired("v1"), nil) })
	fe := forbidden(t, err)
	want := []apply.Permission{
		{Resource: "secrets", Namespace: ns, Verb: "create", Kind: "Secret"},
		{Resource: "secrets", Namespace: ns, Verb: "patch", Kind: "Secret"},
	}
	if !slices.Equal(fe.Denied, want) {
		t.Errorf("denied %+v, want %+v", fe.Denied, want)
	}
	if msg := err.Error(); !containsAll(msg, "create, patch secrets (Secret) in namespace "+ns) {
		t.Errorf("message %q does not name the verbs, resource, kind and namespace", msg)
	}
	if w != 0 || len(res.Changed) != 0 {
		t.Errorf("%d writes, changed %v: nothing may be written", w, res.Changed)
	}
	if r != 5 {
		t.Errorf("%d SelfSubjectAccessReviews, want 5 (everything, denied; then create and patch of configmaps and secrets)", r)
	}
	for _, ref := range all {
		if exists(t, ref) {
			t.Errorf("%s was applied", ref)
		}
	}

	// Granted: everything is applied; the allowed answers about ConfigMaps are remembered, the
	// denials are not.
	u.setRules(t, []rbacv1.PolicyRule{cmRules, rule("secrets", "get", "create", "patch")})
	u.waitAllowed(t, "create", "secrets")
	u.waitAllowed(t, "patch", "secrets")
	w, r = countRequests(func() { res, err = a.Apply(ctx, desired("v1"), nil) })
	if err != nil || res.Err() != nil {
		t.Fatalf("apply with permissions: %v %v", err, res.Err())
	}
	if w != 3 || !slices.Equal(res.Changed, all) {
		t.Errorf("%d writes, changed %v; want the 3 objects", w, res.Changed)
	}
	if r != 2 {
		t.Errorf("%d SelfSubjectAccessReviews, want 2 (the secrets again; configmaps and the denial of everything remembered)", r)
	}

	// Converged: no write, no review.
	w, r = countRequests(func() { res, err = a.Apply(ctx, desired("v1"), res.Applied) })
	if err != nil || w != 0 || r != 0 || len(res.Changed) != 0 {
		t.Errorf("converged: error %v, %d writes, %d reviews, changed %v; want none", err, w, r, res.Changed)
	}
	// A change within the remembered time asks nothing again.
	w, r = countRequests(func() { res, err = a.Apply(ctx, desired("v2"), res.Applied) })
	if err != nil || w != 3 || r != 0 {
		t.Errorf("changed: error %v, %d writes, %d reviews; want 3 writes and no review", err, w, r)
	}

	// Pruning a ConfigMap (allowed) and the Secret (no delete): refused before deleting either.
	w, r = countRequests(func() { _, err = a.Apply(ctx, desired("v2")[:1], res.Applied) })
	fe = forbidden(t, err)
	if want := []apply.Permission{{Resource: "secrets", Namespace: ns, Verb: "delete", Kind: "Secret"}}; !slices.Equal(fe.Denied, want) {
		t.Errorf("denied %+v, want %+v", fe.Denied, want)
	}
	if w != 0 || r != 2 {
		t.Errorf("prune: %d writes, %d reviews; want no write and 2 reviews (delete of configmaps and secrets)", w, r)
	}
	for _, ref := range all {
		if !exists(t, ref) {
			t.Errorf("%s was pruned", ref)
		}
	}
}

// TestApplyCreateNeedsCreate checks what the API server authorises for server-side apply: patch
// is enough for an object that exists, an apply that creates also needs create.
func TestApplyCreateNeedsCreate(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	u := newRestricted(t, ns, []rbacv1.PolicyRule{rule("configmaps", "get", "patch")})
	u.waitAllowed(t, "patch", "configmaps")
	cm := func(name, v string) *unstructured.Unstructured {
		return obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "+name+", namespace: "+ns+"}\ndata: {key: "+v+"}\n")
	}

	// The API server itself: an apply that would create is refused without create.
	err := u.plain.Apply(ctx, client.ApplyConfigurationFromUnstructured(cm("raw", "v1")), client.FieldOwner(manager))
	if !apierrors.IsForbidden(err) {
		t.Fatalf("raw apply creating with only patch: %v, want Forbidden", err)
	}

	// The Applier asks first and names create.
	a := u.applier()
	var res apply.Result
	w, _ := countRequests(func() { _, err = a.Apply(ctx, []*unstructured.Unstructured{cm("new", "v1")}, nil) })
	fe := forbidden(t, err)
	if want := []apply.Permission{{Resource: "configmaps", Namespace: ns, Verb: "create", Kind: "ConfigMap"}}; !slices.Equal(fe.Denied, want) || w != 0 {
		t.Errorf("denied %+v with %d writes, want only create denied and no write", fe.Denied, w)
	}

	// An object that exists is changed with patch alone (allowed, and remembered from above).
	if _, err := applier().Apply(ctx, []*unstructured.Unstructured{cm("existing", "v1")}, nil); err != nil {
		t.Fatal(err)
	}
	w, r := countRequests(func() { res, err = a.Apply(ctx, []*unstructured.Unstructured{cm("existing", "v2")}, nil) })
	if err != nil || res.Err() != nil || w != 1 || r != 0 {
		t.Fatalf("changing an existing object with patch only: error %v %v, %d writes, %d reviews; want 1 write and no review", err, res.Err(), w, r)
	}
	if v, _, _ := unstructured.NestedString(get(t, apply.RefOf(cm("existing", ""))).Object, "data", "key"); v != "v2" {
		t.Errorf("data.key = %q, want v2", v)
	}

	// An object the user may not even read needs get as well, and whatever a create needs.
	_, err = a.Apply(ctx, []*unstructured.Unstructured{
		cm("existing", "v2"),
		obj(t, "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: "+ns+"}\nspec: {ports: [{port: 80}]}\n"),
	}, nil)
	fe = forbidden(t, err)
	var verbs []string
	for _, p := range fe.Denied {
		if p.Resource != "services" || p.Kind != "Service" {
			t.Errorf("denied %+v, want only services", p)
		}
		verbs = append(verbs, p.Verb)
	}
	if !slices.Equal(verbs, []string{"create", "get", "patch"}) {
		t.Errorf("denied verbs %v, want create, get, patch", verbs)
	}
	rules := fe.Rules()
	if len(rules) != 1 || rules[0].Resource != "services" || !slices.Equal(rules[0].Verbs, []string{"create", "get", "patch"}) || !slices.Equal(rules[0].Namespaces, []string{ns}) {
		t.Errorf("rules %+v", rules)
	}
}

// TestApplyAdminAsksOnce checks that a user who may do everything (a workload cluster's admin
// kubeconfig) costs one SelfSubjectAccessReview for a new set, whatever kinds it holds, and that
// an Applier that trusts its own writes does not read again what it just wrote.
func TestApplyAdminAsksOnce(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	desired := func(v string) []*unstructured.Unstructured {
		return []*unstructured.Unstructured{
			obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: "+ns+"}\ndata: {key: "+v+"}\n"),
			obj(t, "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: "+ns+"}\nstringData: {key: "+v+"}\n"),
			obj(t, "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa, namespace: "+ns+"}\n"),
			obj(t, "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: "+ns+"}\nrules: [{apiGroups: [''], resources: [configmaps], verbs: [get]}]\n"),
		}
	}
	// Discovery is the client's, not the Applier's: warm it so that reads count objects only.
	for _, o := range desired("v1") {
		gvk := o.GroupVersionKind()
		if _, err := counted.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			t.Fatal(err)
		}
	}
	a := &apply.Applier{Client: counted, FieldManager: manager, TrustOwnWrites: true}
	var res apply.Result
	var err error
	g, w, r := countAll(func() { res, err = a.Apply(ctx, desired("v1"), nil) })
	if err != nil || res.Err() != nil {
		t.Fatalf("apply: %v %v", err, res.Err())
	}
	if r != 1 || w != 4 || g != 4 {
		t.Errorf("new set of 4 kinds: %d reviews, %d writes, %d reads; want 1 review, 4 writes, 4 reads", r, w, g)
	}
	for _, ref := range res.Applied {
		if !exists(t, ref) {
			t.Errorf("%s was not applied", ref)
		}
	}

	// The same content again: nothing read, asked or written, and the versions the writes left
	// are known (a converged set for a cheap drift check).
	written := res.Versions
	g, w, r = countAll(func() { res, err = a.Apply(ctx, desired("v1"), res.Applied) })
	if err != nil || g != 0 || w != 0 || r != 0 || len(res.Changed) != 0 {
		t.Errorf("same content, same Applier: error %v, %d reads, %d writes, %d reviews, changed %v; want none", err, g, w, r, res.Changed)
	}
	if len(written) != 4 || !maps.Equal(res.Versions, written) {
		t.Errorf("same content, same Applier: versions %v, want the 4 the writes left %v", res.Versions, written)
	}
	// Changed content is read and written; the answer about everything is remembered.
	g, w, r = countAll(func() { res, err = a.Apply(ctx, desired("v2"), res.Applied) })
	if err != nil || res.Err() != nil || g != 2 || w != 2 || r != 0 {
		t.Errorf("changed content: error %v %v, %d reads, %d writes, %d reviews; want 2 reads and 2 writes (the ConfigMap and the Secret; the others are as written), no review", err, res.Err(), g, w, r)
	}

	// What it deleted is read (and created) again.
	if _, err := a.Delete(ctx, res.Applied[:1]); err != nil {
		t.Fatal(err)
	}
	g, w, r = countAll(func() { res, err = a.Apply(ctx, desired("v2"), res.Applied) })
	if err != nil || res.Err() != nil || g != 1 || w != 1 || r != 0 || !exists(t, res.Applied[0]) {
		t.Errorf("after deleting the ConfigMap: error %v %v, %d reads, %d writes, %d reviews; want the ConfigMap read and created again", err, res.Err(), g, w, r)
	}

	// An Applier that does not trust its own writes reads everything (its drift check).
	g, w, r = countAll(func() { res, err = applier().Apply(ctx, desired("v2"), res.Applied) })
	if err != nil || g != 4 || w != 0 || r != 0 {
		t.Errorf("converged, long-lived Applier: error %v, %d reads, %d writes, %d reviews; want 4 reads only", err, g, w, r)
	}
}
