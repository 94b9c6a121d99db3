package render_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/render"
)

func objectsJSON(t *testing.T, objs []*unstructured.Unstructured) string {
	t.Helper()
	b, err := json.Marshal(objs)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// renders runs fn and returns how many renderings it ran in a worker and how many the cache
// answered.
func renders(fn func()) (rendered, cached float64) {
	r0, c0 := render.Renders()
	fn()
	r1, c1 := render.Renders()
	return r1 - r0, c1 - c0
}

// TestChartCache checks that a chart rendered again with the same files and options is answered
// from the cache with the same objects, as fresh objects the caller may change, and that other
// values or other files render again.
func TestChartCache(t *testing.T) {
	opts := func(flavor string) render.Options {
		return render.Options{ReleaseName: "openstack-scs-1-32", Namespace: "cache-a", KubeVersion: "v1.32.5", Values: map[string]any{"flavor": flavor}}
	}
	chart := func(o render.Options) []*unstructured.Unstructured {
		objs, err := render.Chart(context.Background(), clusterClassChartDir(), o)
		if err != nil {
			t.Fatal(err)
		}
		return objs
	}
	var first, again []*unstructured.Unstructured
	rendered, cached := renders(func() { first = chart(opts("SCS-2V-4")) })
	if rendered != 1 || cached != 0 {
		t.Fatalf("first rendering: %v rendered, %v cached, want 1 and 0", rendered, cached)
	}
	want := objectsJSON(t, first)
	first[0].SetName("changed by the caller")
	rendered, cached = renders(func() { again = chart(opts("SCS-2V-4")) })
	if rendered != 0 || cached != 1 {
		t.Errorf("the same rendering again: %v rendered, %v cached, want 0 and 1", rendered, cached)
	}
	if got := objectsJSON(t, again); got != want {
		t.Errorf("the cache answered other objects:\n got %.500s\nwant %.500s", got, want)
	}

	var other []*unstructured.Unstructured
	rendered, _ = renders(func() { other = chart(opts("SCS-4V-8")) })
	if rendered != 1 || objectsJSON(t, other) == want {
		t.Errorf("other values: %v rendered, same objects %v; want a rendering of its own", rendered, objectsJSON(t, other) == want)
	}

	// Two charts of the same name and options, different templates.
	for _, data := range []string{"a", "b"} {
		dir := writeChart(t, map[string]string{"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  x: " + data + "\n"})
		var objs []*unstructured.Unstructured
		rendered, _ := renders(func() {
			var err error
			if objs, err = render.Chart(context.Background(), dir, render.Options{ReleaseName: "r", Namespace: "n"}); err != nil {
				t.Fatal(err)
			}
		})
		if got, _, _ := unstructured.NestedString(objs[0].Object, "data", "x"); rendered != 1 || got != data {
			t.Errorf("chart with data %s: %v rendered, data.x %q", data, rendered, got)
		}
	}
}

// TestChartCacheSharesConcurrent checks that identical renderings at the same time (a release
// and its capability check) render once.
func TestChartCacheSharesConcurrent(t *testing.T) {
	o := render.Options{ReleaseName: "openstack-scs-1-32", Namespace: "tenant-b", KubeVersion: "v1.32.5"}
	results := make([]string, 4)
	rendered, _ := renders(func() {
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() {
				objs, err := render.Chart(context.Background(), clusterClassChartDir(), o)
				if err != nil {
					t.Error(err)
					return
				}
				results[i] = objectsJSON(t, objs)
			})
		}
		wg.Wait()
	})
	if rendered != 1 {
		t.Errorf("4 identical renderings at once rendered %v times, want 1", rendered)
	}
	for i := range results {
		if results[i] != results[0] {
			t.Errorf("rendering %d differs", i)
		}
	}
}

// TestValuesTemplateCache checks that a values template is rendered once per content and data.
func TestValuesTemplateCache(t *testing.T) {
	tpl := []byte("name: {{ .Cluster.metadata.name }}\n")
	data := func(name string) map[string]any {
		return map[string]any{"Cluster": map[string]any{"metadata": map[string]any{"name": name}}}
	}
	for _, tc := range []struct {
		name             string
		rendered, cached float64
	}{{"cache-a", 1, 0}, {"cache-a", 0, 1}, {"cache-b", 1, 0}} {
		var got map[string]any
		rendered, cached := renders(func() {
			var err error
			if got, err = render.ValuesTemplate(tpl, data(tc.name)); err != nil {
				t.Fatal(err)
			}
		})
		if got["name"] != tc.name || rendered != tc.rendered || cached != tc.cached {
			t.Errorf("%s: values %v, %v rendered, %v cached; want %v and %v", tc.name, got, rendered, cached, tc.rendered, tc.cached)
		}
		got["name"] = "changed by the caller"
	}
}
