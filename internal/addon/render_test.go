package addon

import (
	"context"
	"os"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/apply"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
)

// asApplied defaults the namespaces of objs as the controller does before applying them, so that
// the test sees where they land: addon charts rely on DefaultNamespace.
func asApplied(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	t.Helper()
	m := meta.NewDefaultRESTMapper(nil)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, meta.RESTScopeNamespace)
	if err := apply.SetDefaultNamespace(objs, DefaultNamespace, m); err != nil {
		t.Fatal(err)
	}
	return objs
}

func loadFixture(t *testing.T, opts fixtures.Options) *release.Release {
	t.Helper()
	dir, err := fixtures.Build(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := release.Load(dir, opts.Release(), release.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

func TestRenderBothConventions(t *testing.T) {
	ctx := context.Background()
	in := Input{
		KubeVersion: "v1.32.5",
		Data:        map[string]any{"Cluster": map[string]any{"metadata": map[string]any{"name": "alpha"}}},
	}
	r := &Renderer{Dir: t.TempDir()}
	want := []string{"ConfigMap kube-system/fixture-cni alpha", "Deployment kube-system/fixture-metrics-server alpha"}

	rel := loadFixture(t, fixtures.Options{})
	dir, err := r.Extract(rel)
	if err != nil {
		t.Fatalf("Extract: %v", err)
	}
	again, err := r.Extract(rel)
	if err != nil || again != dir {
		t.Fatalf("second Extract: %q, %v; want the cached %q", again, err, dir)
	}
	var got []string
	for _, chart := range rel.AddonPlan.SteadyCharts() {
		objs, err := r.RenderChart(ctx, dir, chart, in)
		if err != nil {
			t.Fatalf("RenderChart %s: %v", chart, err)
		}
		for _, o := range asApplied(t, objs) {
			got = append(got, summary(o.GetKind(), o.GetNamespace(), o.GetName(), o.Object))
		}
	}
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("new convention (-want +got):\n%s", diff)
	}

	old := loadFixture(t, fixtures.Options{Convention: release.AddonConventionValues, StackVersion: "v2"})
	objs, err := r.RenderUmbrella(ctx, old, in)
	if err != nil {
		t.Fatalf("RenderUmbrella: %v", err)
	}
	got = nil
	for _, o := range asApplied(t, objs) {
		got = append(got, summary(o.GetKind(), o.GetNamespace(), o.GetName(), o.Object))
	}
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("old convention (-want +got):\n%s", diff)
	}
	if entries, _ := os.ReadDir(r.Dir); len(entries) != 1 {
		t.Errorf("extracted %d directories, want 1", len(entries))
	}
}

// summary names an object and the cluster name the values template put into it.
func summary(kind, ns, name string, obj map[string]any) string {
	var cluster string
	if d, ok := obj["data"].(map[string]any); ok {
		cluster, _ = d["clusterName"].(string)
	}
	if md, ok := obj["metadata"].(map[string]any); ok {
		if l, ok := md["labels"].(map[string]any); ok && cluster == "" {
			cluster, _ = l["cluster"].(string)
		}
	}
	return kind + " " + ns + "/" + name + " " + cluster
}
