package config_test

import (
	gostrings "strings"
	"testing"
)

// TestCRDNames checks the names kubectl resolves: the operator's category lists all seven kinds and
// is no kind's name, so `kubectl get clusterstack` lists ClusterStacks only.
func TestCRDNames(t *testing.T) {
	m := render(t, "crd")
	names := map[string]string{} // every name kubectl resolves to one kind -> that kind
	categories := map[string][]string{}
	for _, r := range m.Resources() {
		crd, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		n := get(crd, "spec", "names").(map[string]any)
		kind := n["kind"].(string)
		for _, name := range append([]any{n["plural"], n["singular"], gostrings.ToLower(kind)}, n["shortNames"].([]any)...) {
			names[name.(string)] = kind
		}
		for _, c := range strings(n["categories"]) {
			categories[c] = append(categories[c], kind)
		}
	}
	if got := categories["clusterstack-operator"]; len(got) != 7 {
		t.Errorf("category clusterstack-operator lists %v, want all seven kinds", got)
	}
	for c, kinds := range categories {
		if kind, ok := names[c]; ok {
			t.Errorf("category %s of %v is also a name of %s: kubectl get %s would list the category", c, kinds, kind, c)
		}
	}
}

// TestCRDMoveLabels checks the labels clusterctl move reads on CRDs: every kind moves, and a
// ClusterStack with what it owns.
func TestCRDMoveLabels(t *testing.T) {
	m := render(t, "default")
	crds := 0
	for _, r := range m.Resources() {
		if r.GetKind() != "CustomResourceDefinition" {
			continue
		}
		crds++
		labels := r.GetLabels()
		if _, ok := labels["clusterctl.cluster.x-k8s.io/move"]; !ok {
			t.Errorf("CRD %s lacks clusterctl.cluster.x-k8s.io/move: clusterctl move leaves its objects behind", r.GetName())
		}
		_, hierarchy := labels["clusterctl.cluster.x-k8s.io/move-hierarchy"]
		if want := r.GetName() == "clusterstacks.clusterstack.x-k8s.io"; hierarchy != want {
			t.Errorf("CRD %s has move-hierarchy %t, want %t", r.GetName(), hierarchy, want)
		}
	}
	if crds != 7 {
		t.Errorf("rendered %d CRDs, want 7", crds)
	}
}

// TestProviderLabel checks clusterctl's provider label on every object the default overlay
// installs: clusterctl upgrade and delete find the provider's objects by it.
func TestProviderLabel(t *testing.T) {
	for _, r := range render(t, "default").Resources() {
		if got := r.GetLabels()["cluster.x-k8s.io/provider"]; got != "runtime-extension-clusterstack" {
			t.Errorf("%s %s has provider label %q, want runtime-extension-clusterstack", r.GetKind(), r.GetName(), got)
		}
	}
}
