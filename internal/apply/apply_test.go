package apply_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
)

const manager = "clusterstack-operator"

func applier() *apply.Applier {
	return &apply.Applier{Client: counted, FieldManager: manager}
}

func obj(t testing.TB, y string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(y), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

func get(t *testing.T, ref apply.Ref) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(ref.GroupVersionKind())
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, u); err != nil {
		t.Fatalf("getting %s: %v", ref, err)
	}
	return u
}

func mustApply(t *testing.T, a *apply.Applier, desired []*unstructured.Unstructured, previous []apply.Ref) (apply.Result, int64) {
	t.Helper()
	var res apply.Result
	var err error
	n := countWrites(func() { res, err = a.Apply(context.Background(), desired, previous) })
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatalf("per-object errors: %v", err)
	}
	return res, n
}

// mixed returns objects in two namespaces, a cluster-scoped one, a custom resource and kinds the
// API server normalises (a Deployment with quantities and defaults, a Service).
func mixed(t testing.TB, ns1, ns2, data string) []*unstructured.Unstructured {
	return []*unstructured.Unstructured{
		obj(t, `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: `+ns1+`-reader
  labels: {app: test}
rules:
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get, list]
`),
		obj(t, `
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: `+ns1+`
  creationTimestamp: null
  labels: {app: test}
data:
  key: `+data+`
  other: "1"
`),
		obj(t, `
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: `+ns2+`
data:
  key: elsewhere
`),
		obj(t, `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: `+ns1+`
  annotations: {}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: registry.invalid/web:1
          ports: [{containerPort: 8080}]
          resources:
            requests: {cpu: 1000m, memory: 1024Mi}
          env: []
status: {}
`),
		obj(t, `
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: `+ns1+`
spec:
  selector: {app: web}
  ports:
    - port: 80
      targetPort: 8080
`),
		obj(t, `
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: OpenStackMachineTemplate
metadata:
  name: machine
  namespace: `+ns2+`
spec:
  template:
    spec:
      flavor: SCS-2V-4
      rootVolume: {sizeGiB: 50}
      image: {filter: {name: ubuntu-capi-image-v1.32.5}}
`),
	}
}

func refs(objs []*unstructured.Unstructured) []apply.Ref {
	out := make([]apply.Ref, len(objs))
	for i, o := range objs {
		out[i] = apply.RefOf(o)
	}
	return out
}

func TestApplyCreateConvergeChange(t *testing.T) {
	ns1, ns2 := newNamespace(t), newNamespace(t)
	a := applier()
	desired := mixed(t, ns1, ns2, "v1")

	res, n := mustApply(t, a, desired, nil)
	if !slices.Equal(res.Applied, refs(desired)) || !slices.Equal(res.Changed, refs(desired)) {
		t.Errorf("first apply: applied %v changed %v, want all of %v", res.Applied, res.Changed, refs(desired))
	}
	if n != int64(len(desired)) || len(res.Drifted) != 0 {
		t.Errorf("first apply made %d writes (want %d), drifted %v", n, len(desired), res.Drifted)
	}
	cm := get(t, res.Applied[1])
	if cm.GetAnnotations()[apply.HashAnnotation] == "" {
		t.Error("no hash annotation on the applied object")
	}

	// Converged: the server normalised the Deployment (quantities, defaults) and the Service, and
	// dropped the empty values, yet nothing is written again.
	// Nothing to write means nothing to ask either: no SelfSubjectAccessReview.
	for i := range 3 {
		_, r := countRequests(func() { res, n = mustApply(t, a, mixed(t, ns1, ns2, "v1"), res.Applied) })
		if n != 0 || r != 0 || len(res.Changed) != 0 || len(res.Pruned) != 0 {
			t.Fatalf("re-apply %d: %d writes, %d reviews, changed %v, pruned %v; want none", i, n, r, res.Changed, res.Pruned)
		}
	}

	// One changed object: one write.
	res, n = mustApply(t, a, mixed(t, ns1, ns2, "v2"), res.Applied)
	if n != 1 || !slices.Equal(res.Changed, []apply.Ref{res.Applied[1]}) || len(res.Drifted) != 0 {
		t.Fatalf("after a change: %d writes, changed %v, drifted %v; want 1 write of the ConfigMap, no drift", n, res.Changed, res.Drifted)
	}
	if v, _, _ := unstructured.NestedString(get(t, res.Applied[1]).Object, "data", "key"); v != "v2" {
		t.Errorf("data.key = %q, want v2", v)
	}
	res, n = mustApply(t, a, mixed(t, ns1, ns2, "v2"), res.Applied)
	if n != 0 || len(res.Changed) != 0 {
		t.Errorf("after the change converged: %d writes, changed %v", n, res.Changed)
	}
}

func TestApplyRepairsDrift(t *testing.T) {
	ns1, ns2 := newNamespace(t), newNamespace(t)
	a := applier()
	res, _ := mustApply(t, a, mixed(t, ns1, ns2, "v1"), nil)
	cmRef, deployRef, omtRef := res.Applied[1], res.Applied[3], res.Applied[5]
	ctx := context.Background()

	tests := []struct {
		name  string
		ref   apply.Ref
		drift func(u *unstructured.Unstructured) // another client's change, written with Update
		check func(u *unstructured.Unstructured) bool
		// notDrift: the change looks like a new rendering (our hash is gone), not like drift.
		notDrift bool
	}{
		{
			name:  "data key removed",
			ref:   cmRef,
			drift: func(u *unstructured.Unstructured) { unstructured.RemoveNestedField(u.Object, "data", "other") },
			check: func(u *unstructured.Unstructured) bool {
				v, _, _ := unstructured.NestedString(u.Object, "data", "other")
				return v == "1"
			},
		},
		{
			name:  "label removed",
			ref:   cmRef,
			drift: func(u *unstructured.Unstructured) { u.SetLabels(nil) },
			check: func(u *unstructured.Unstructured) bool { return u.GetLabels()["app"] == "test" },
		},
		{
			name: "container resources removed",
			ref:  deployRef,
			drift: func(u *unstructured.Unstructured) {
				cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
				delete(cs[0].(map[string]any), "resources")
				_ = unstructured.SetNestedSlice(u.Object, cs, "spec", "template", "spec", "containers")
			},
			check: func(u *unstructured.Unstructured) bool {
				cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
				_, ok, _ := unstructured.NestedFieldNoCopy(cs[0].(map[string]any), "resources", "requests", "cpu")
				return ok
			},
		},
		{
			name: "custom resource field removed",
			ref:  omtRef,
			drift: func(u *unstructured.Unstructured) {
				unstructured.RemoveNestedField(u.Object, "spec", "template", "spec", "rootVolume")
			},
			check: func(u *unstructured.Unstructured) bool {
				v, _, _ := unstructured.NestedInt64(u.Object, "spec", "template", "spec", "rootVolume", "sizeGiB")
				return v == 50
			},
		},
		{
			name: "hash annotation removed",
			ref:  cmRef,
			drift: func(u *unstructured.Unstructured) {
				ann := u.GetAnnotations()
				delete(ann, apply.HashAnnotation)
				u.SetAnnotations(ann)
			},
			check:    func(u *unstructured.Unstructured) bool { return u.GetAnnotations()[apply.HashAnnotation] != "" },
			notDrift: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			live := get(t, tt.ref)
			tt.drift(live)
			if err := env.Client.Update(ctx, live, client.FieldOwner("intruder")); err != nil {
				t.Fatal(err)
			}
			if tt.check(get(t, tt.ref)) {
				t.Fatal("the drift did not change the object")
			}
			r, n := mustApply(t, a, mixed(t, ns1, ns2, "v1"), res.Applied)
			if n != 1 || !slices.Equal(r.Changed, []apply.Ref{tt.ref}) {
				t.Errorf("%d writes, changed %v; want one write of %s", n, r.Changed, tt.ref)
			}
			if !tt.check(get(t, tt.ref)) {
				t.Error("drift not repaired")
			}
			if wantDrifted := !tt.notDrift; slices.Equal(r.Drifted, []apply.Ref{tt.ref}) != wantDrifted {
				t.Errorf("drifted %v (want it reported: %v)", r.Drifted, wantDrifted)
			}
			if _, n := mustApply(t, a, mixed(t, ns1, ns2, "v1"), res.Applied); n != 0 {
				t.Errorf("after the repair: %d writes, want 0", n)
			}
		})
	}

	t.Run("object deleted", func(t *testing.T) {
		if err := env.Client.Delete(ctx, get(t, cmRef)); err != nil {
			t.Fatal(err)
		}
		r, n := mustApply(t, a, mixed(t, ns1, ns2, "v1"), res.Applied)
		if n != 1 || !slices.Equal(r.Changed, []apply.Ref{cmRef}) || !slices.Equal(r.Drifted, []apply.Ref{cmRef}) {
			t.Errorf("%d writes, changed %v, drifted %v; want the ConfigMap re-created as drift", n, r.Changed, r.Drifted)
		}
		get(t, cmRef)
	})
}

func TestApplyConflictIsNotForced(t *testing.T) {
	ns := newNamespace(t)
	a := applier()
	ctx := context.Background()
	desired := func(v string) []*unstructured.Unstructured {
		return []*unstructured.Unstructured{
			obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: owned, namespace: "+ns+"}\ndata: {key: "+v+"}\n"),
			obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine, namespace: "+ns+"}\ndata: {key: "+v+"}\n"),
		}
	}
	res, _ := mustApply(t, a, desired("ours"), nil)
	owned := res.Applied[0]

	// Another client changes a field we applied: the field is theirs now.
	live := get(t, owned)
	_ = unstructured.SetNestedField(live.Object, "theirs", "data", "key")
	if err := env.Client.Update(ctx, live, client.FieldOwner("intruder")); err != nil {
		t.Fatal(err)
	}
	r, err := a.Apply(ctx, desired("ours"), res.Applied)
	if err != nil {
		t.Fatal(err)
	}
	var ce *apply.ConflictError
	if !errors.As(r.Failed[owned], &ce) {
		t.Fatalf("error for %s: %v, want a *apply.ConflictError", owned, r.Failed[owned])
	}
	if !slices.Equal(ce.Managers, []string{"intruder"}) || !slices.Equal(ce.Fields, []string{".data.key"}) {
		t.Errorf("conflict managers %v fields %v, want intruder on .data.key", ce.Managers, ce.Fields)
	}
	if !apierrors.IsConflict(r.Failed[owned]) {
		t.Error("the conflict does not unwrap to the API's conflict error")
	}
	if len(r.Failed) != 1 || !slices.Equal(r.Applied, res.Applied) {
		t.Errorf("failed %v applied %v: the other object must still be applied and both stay in the inventory", r.Failed, r.Applied)
	}
	if v, _, _ := unstructured.NestedString(get(t, owned).Object, "data", "key"); v != "theirs" {
		t.Errorf("data.key = %q: the apply was forced", v)
	}

	// A field another manager applied first, with a different value.
	other := obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: claimed, namespace: "+ns+"}\ndata: {key: other}\n")
	if err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(other), client.FieldOwner("other-controller")); err != nil {
		t.Fatal(err)
	}
	mine := obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: claimed, namespace: "+ns+"}\ndata: {key: mine}\n")
	r, err = a.Apply(ctx, []*unstructured.Unstructured{mine}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.As(r.Failed[apply.RefOf(mine)], &ce) || !slices.Equal(ce.Managers, []string{"other-controller"}) {
		t.Fatalf("error %v, want a conflict with other-controller", r.Failed[apply.RefOf(mine)])
	}
	if msg := ce.Error(); !containsAll(msg, `"other-controller"`, ".data.key", "ConfigMap "+ns+"/claimed") {
		t.Errorf("message %q does not name the manager, field and object", msg)
	}
	if len(r.Changed) != 0 {
		t.Errorf("changed %v after a conflict", r.Changed)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func TestApplyPrunes(t *testing.T) {
	ns1, ns2 := newNamespace(t), newNamespace(t)
	a := applier()
	all := mixed(t, ns1, ns2, "v1")
	res, _ := mustApply(t, a, all, nil)

	// Drop the ClusterRole and the second namespace's ConfigMap; add a ref that never existed.
	keep := []*unstructured.Unstructured{all[1], all[3], all[4], all[5]}
	ghost := apply.Ref{Version: "v1", Kind: "ConfigMap", Namespace: ns1, Name: "ghost"}
	previous := append(slices.Clone(res.Applied), ghost)
	r, n := mustApply(t, a, mixed(t, ns1, ns2, "v1")[1:2], nil) // sanity: no previous, nothing pruned
	if len(r.Pruned) != 0 || n != 0 {
		t.Fatalf("pruned %v with no previous inventory, %d writes", r.Pruned, n)
	}
	r, n = mustApply(t, a, keep, previous)
	wantPruned := []apply.Ref{ghost, res.Applied[2], res.Applied[0]} // reverse inventory order
	if !slices.Equal(r.Pruned, wantPruned) {
		t.Errorf("pruned %v, want %v", r.Pruned, wantPruned)
	}
	if n != 3 || len(r.Changed) != 0 {
		t.Errorf("%d writes (want 3 deletes), changed %v", n, r.Changed)
	}
	if !slices.Equal(r.Applied, refs(keep)) {
		t.Errorf("new inventory %v, want %v", r.Applied, refs(keep))
	}
	for _, gone := range []apply.Ref{res.Applied[0], res.Applied[2]} {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gone.GroupVersionKind())
		err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: gone.Namespace, Name: gone.Name}, u)
		if !apierrors.IsNotFound(err) {
			t.Errorf("%s still exists (%v)", gone, err)
		}
	}

	// WithKeepOnPrune protects an object and keeps it in the inventory.
	protected := r.Applied[3] // the OpenStackMachineTemplate
	a = a.WithKeepOnPrune(func(ref apply.Ref) bool { return ref == protected })
	r2, _ := mustApply(t, a, keep[:3], r.Applied)
	if len(r2.Pruned) != 0 || !slices.Contains(r2.Applied, protected) {
		t.Errorf("pruned %v, applied %v: the protected object must be kept", r2.Pruned, r2.Applied)
	}
	get(t, protected)
}

func TestPreflight(t *testing.T) {
	ns := newNamespace(t)
	a := applier()
	ctx := context.Background()
	desired := []*unstructured.Unstructured{
		obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: "+ns+"}\n"),
		obj(t, `
apiVersion: openstack.k-orc.cloud/v1alpha1
kind: Image
metadata: {name: ubuntu-capi-image-v1.32.5, namespace: `+ns+`}
spec:
  cloudCredentialsRef: {cloudName: openstack, secretName: openstack}
  managementPolicy: managed
  resource:
    content:
      diskFormat: qcow2
      download:
        url: https://images.example.org/ubuntu-2204-kube-v1.32.5.qcow2
        hash: {algorithm: sha256, value: 8bfad5cb331480a7530952d8d6ff41155c28b2941f8be7a3f0318ebd1569cf83}
`),
		obj(t, "apiVersion: missing.example.org/v1\nkind: Thing\nmetadata: {name: t1, namespace: "+ns+"}\n"),
		obj(t, "apiVersion: missing.example.org/v1\nkind: Thing\nmetadata: {name: t2, namespace: "+ns+"}\n"),
		obj(t, "apiVersion: cluster.x-k8s.io/v1alpha9\nkind: ClusterClass\nmetadata: {name: cc, namespace: "+ns+"}\n"),
	}
	var err error
	n := countWrites(func() { err = a.Preflight(ctx, desired) })
	var mk *apply.MissingKindsError
	if !errors.As(err, &mk) || !errors.Is(err, apply.ErrKindNotServed) {
		t.Fatalf("error %v, want a *MissingKindsError", err)
	}
	want := []string{"Thing.v1.missing.example.org", "ClusterClass.v1alpha9.cluster.x-k8s.io"}
	if len(mk.Kinds) != 2 || !containsAll(err.Error(), want...) {
		t.Errorf("error %q, want exactly %v named", err, want)
	}
	if n != 0 {
		t.Errorf("preflight made %d writes", n)
	}
	if err := a.Preflight(ctx, desired[:2]); err != nil {
		t.Errorf("served kinds: %v", err)
	}

	// Applying anyway fails per object and still applies the rest.
	r, err := a.Apply(ctx, desired[:3], nil)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(r.Failed[apply.RefOf(desired[2])], apply.ErrKindNotServed) || len(r.Failed) != 1 {
		t.Errorf("failed %v, want only the Thing as not served", r.Failed)
	}
}

func TestApplyCRDAndItsObjects(t *testing.T) {
	ns := newNamespace(t)
	a := applier()
	ctx := context.Background()
	group := ns + ".example.org"
	desired := []*unstructured.Unstructured{
		obj(t, `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.`+group+`
spec:
  group: `+group+`
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
`),
		obj(t, "apiVersion: "+group+"/v1\nkind: Widget\nmetadata: {name: w, namespace: "+ns+"}\nspec: {size: 3}\n"),
	}
	if err := a.Preflight(ctx, desired); err != nil {
		t.Fatalf("preflight with the CRD among the objects: %v", err)
	}
	if err := a.Preflight(ctx, desired[1:]); !errors.Is(err, apply.ErrKindNotServed) {
		t.Fatalf("preflight without the CRD: %v, want ErrKindNotServed", err)
	}
	res, _ := mustApply(t, a, desired, nil)
	if len(res.Changed) != 2 {
		t.Fatalf("changed %v, want the CRD and the Widget", res.Changed)
	}
	if _, n := mustApply(t, a, desired, res.Applied); n != 0 {
		t.Errorf("converged CRD set: %d writes", n)
	}
	// Pruning everything deletes the Widget before its CRD.
	r, _ := mustApply(t, a, nil, res.Applied)
	if !slices.Equal(r.Pruned, []apply.Ref{res.Applied[1], res.Applied[0]}) {
		t.Errorf("pruned %v, want the Widget then the CRD", r.Pruned)
	}
}

func TestDelete(t *testing.T) {
	ns1, ns2 := newNamespace(t), newNamespace(t)
	a := applier()
	ctx := context.Background()
	all := mixed(t, ns1, ns2, "v1")
	held := obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, namespace: "+ns1+", finalizers: [example.org/hold]}\n")
	res, _ := mustApply(t, a, append(all, held), nil)
	inventory := append(slices.Clone(res.Applied),
		apply.Ref{Version: "v1", Kind: "ConfigMap", Namespace: ns1, Name: "never-existed"},
		apply.Ref{Group: "gone.example.org", Version: "v1", Kind: "Gone", Namespace: ns1, Name: "crd-removed"},
	)
	remaining, err := a.Delete(ctx, inventory)
	if err != nil {
		t.Fatal(err)
	}
	heldRef := apply.RefOf(held)
	if !slices.Equal(remaining, []apply.Ref{heldRef}) {
		t.Fatalf("remaining %v, want only the object with a finalizer", remaining)
	}
	for _, ref := range res.Applied[:len(all)] {
		o := &unstructured.Unstructured{}
		o.SetGroupVersionKind(ref.GroupVersionKind())
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, o); !apierrors.IsNotFound(err) && o.GetDeletionTimestamp() == nil {
			t.Errorf("%s not deleted (%v)", ref, err)
		}
	}

	// Once the finalizer is gone, a second Delete reports nothing remaining (404 is success).
	live := get(t, heldRef)
	live.SetFinalizers(nil)
	if err := env.Client.Update(ctx, live); err != nil {
		t.Fatal(err)
	}
	remaining, err = a.Delete(ctx, inventory)
	if err != nil || len(remaining) != 0 {
		t.Errorf("second delete: remaining %v, error %v", remaining, err)
	}
}

// TestApplyKeepsBarrierOrder checks the order writeAll keeps while it writes ordinary objects
// side by side: a Namespace before what lives in it, and a webhook configuration (which refuses
// every ConfigMap of that namespace, since its service does not exist) only after the ConfigMaps
// rendered before it. Written out of order, the ConfigMaps fail to be created.
func TestApplyKeepsBarrierOrder(t *testing.T) {
	// The Namespace is one of the objects applied, so it is named here, not by newNamespace; the
	// clock keeps a second run (-count=2) clear of the first one's, which envtest never finishes
	// deleting.
	ns := fmt.Sprintf("barrier-order-%d", time.Now().UnixNano())
	ctx := context.Background()
	desired := []*unstructured.Unstructured{
		obj(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: "+ns+"}\n"),
	}
	for i := range 12 {
		desired = append(desired, obj(t, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%02d, namespace: %s}\ndata: {k: v}\n", i, ns)))
	}
	desired = append(desired, obj(t, `
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: `+ns+`}
webhooks:
  - name: refuse.`+ns+`.example.org
    admissionReviewVersions: [v1]
    sideEffects: None
    failurePolicy: Fail
    timeoutSeconds: 1
    clientConfig:
      service: {name: nowhere, namespace: `+ns+`, port: 443}
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: `+ns+`}
    rules:
      - {apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [configmaps]}
`))
	a := applier()
	t.Cleanup(func() {
		// Pruning goes in reverse order: the webhook configuration first.
		var refs []apply.Ref
		for _, d := range desired {
			refs = append(refs, apply.RefOf(d))
		}
		if _, err := a.Apply(context.Background(), nil, refs); err != nil {
			t.Logf("cleaning up: %v", err)
		}
	})
	res, _ := mustApply(t, a, desired, nil)
	if len(res.Changed) != len(desired) {
		t.Fatalf("changed %d objects, want %d: %v", len(res.Changed), len(desired), res.Changed)
	}
	for i, ref := range res.Changed {
		if ref != apply.RefOf(desired[i]) {
			t.Errorf("changed[%d] = %s, want %s (render order)", i, ref, apply.RefOf(desired[i]))
		}
	}
	// Written in that order: etcd's revision, which envtest's API server gives out as
	// resourceVersion, is one counter for every write, so each ConfigMap's must be below the
	// webhook configuration's. (Opaque to clients in general; a fact of this test server.)
	rv := func(ref apply.Ref) uint64 {
		n, err := strconv.ParseUint(get(t, ref).GetResourceVersion(), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	webhookRV := rv(apply.RefOf(desired[len(desired)-1]))
	for _, d := range desired[1 : len(desired)-1] {
		if r := rv(apply.RefOf(d)); r > webhookRV {
			t.Errorf("%s written at revision %d, after the webhook configuration (%d)", d.GetName(), r, webhookRV)
		}
	}
	// The webhook is live: a ConfigMap written now is refused, so the ones above were written
	// before it.
	late := obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late, namespace: "+ns+"}\n")
	if err := env.Client.Create(ctx, late); err == nil {
		t.Fatal("a ConfigMap created after the webhook configuration was admitted: the test proves nothing")
	}
}

// Prime reads one object of each kind, in the given namespace where an object has none, and
// writes nothing: it only pays the first request of each kind ahead of an apply.
func TestPrimeReadsOneObjectOfEachKindAndWritesNothing(t *testing.T) {
	ctx := context.Background()
	ns := "prime"
	desired := []*unstructured.Unstructured{
		obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"),
		obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n"),
		obj(t, "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: c, namespace: other}\n"),
		obj(t, "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: prime-d}\n"),
	}
	a := applier()
	a.Prime(ctx, desired, ns) // the first call also finds the kinds' REST mappings
	r0, w0, v0 := reads.Load(), writes.Load(), reviews.Load()
	a.Prime(ctx, desired, ns)
	if got := reads.Load() - r0; got != 3 {
		t.Errorf("Prime read %d times, want 3 (one per kind)", got)
	}
	if w, v := writes.Load()-w0, reviews.Load()-v0; w != 0 || v != 0 {
		t.Errorf("Prime made %d writes and %d access reviews, want none", w, v)
	}
	for _, d := range desired {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(d.GroupVersionKind())
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: d.GetName()}, u)
		if !apierrors.IsNotFound(err) {
			t.Errorf("%s %s after Prime: %v, want not found", d.GetKind(), d.GetName(), err)
		}
	}
	var nilApplier *apply.Applier
	nilApplier.Prime(ctx, desired, ns) // no applier (a reconciler without one): nothing to do
}
