package apply_test

import (
	"context"
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
)

// TestVersionsTellsChanges checks the cheap drift check: after an Apply that wrote every object,
// and after one that read every object unchanged, Versions returns the same resourceVersions
// with one metadata-only list per kind, and a change by someone else, a deletion or another
// inventory's object shows.
func TestVersionsTellsChanges(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	desired := []*unstructured.Unstructured{
		obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: "+ns+"}\ndata: {key: v}\n"),
		obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: "+ns+"}\ndata: {key: v}\n"),
		obj(t, "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa, namespace: "+ns+"}\n"),
	}
	a := &apply.Applier{Client: counted, FieldManager: manager, Inventory: "inv-" + ns}
	res, err := a.Apply(ctx, desired, nil)
	if err != nil || res.Err() != nil {
		t.Fatalf("apply: %v %v", err, res.Err())
	}
	if len(res.Changed) != 3 || len(res.Versions) != 3 {
		t.Fatalf("first apply: changed %v, versions %v; want 3 written, with the versions the writes left", res.Changed, res.Versions)
	}
	// Another inventory's object of the same kind is not part of the answer.
	other := &apply.Applier{Client: counted, FieldManager: manager, Inventory: "other-" + ns}
	if _, err := other.Apply(ctx, []*unstructured.Unstructured{obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: "+ns+"}\n")}, nil); err != nil {
		t.Fatal(err)
	}
	var live map[apply.Ref]string
	if live, err = a.Versions(ctx, res.Applied); err != nil || !maps.Equal(live, res.Versions) {
		t.Fatalf("versions %v (error %v), want those the writes left %v", live, err, res.Versions)
	}

	written := res.Versions
	res, err = a.Apply(ctx, desired, res.Applied)
	if err != nil || len(res.Changed) != 0 || !maps.Equal(res.Versions, written) {
		t.Fatalf("converged apply: error %v, changed %v, versions %v; want nothing changed and the versions of the writes %v", err, res.Changed, res.Versions, written)
	}
	g, w, r := countAll(func() { live, err = a.Versions(ctx, res.Applied) })
	if err != nil || !maps.Equal(live, res.Versions) {
		t.Fatalf("versions %v (error %v), want those of the converged apply %v", live, err, res.Versions)
	}
	if g != 2 || w != 0 || r != 0 {
		t.Errorf("%d reads, %d writes, %d reviews; want 2 lists (ConfigMaps, ServiceAccounts)", g, w, r)
	}

	// Someone else's change, even one that is no drift (a label of theirs), and a deletion show.
	cm := &corev1.ConfigMap{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "a"}, cm); err != nil {
		t.Fatal(err)
	}
	cm.Labels["theirs"] = "x"
	if err := env.Client.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{}
	sa.Namespace, sa.Name = ns, "sa"
	if err := env.Client.Delete(ctx, sa); err != nil {
		t.Fatal(err)
	}
	if live, err = a.Versions(ctx, res.Applied); err != nil {
		t.Fatal(err)
	}
	a0, b := res.Applied[0].Key(), res.Applied[1].Key()
	if live[a0] == res.Versions[a0] || live[b] != res.Versions[b] || len(live) != 2 {
		t.Errorf("after a change of a and the deletion of sa: versions %v, was %v", live, res.Versions)
	}
}
