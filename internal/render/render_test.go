package render_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/render"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// keys lists "Kind/namespace/name" of objs in order.
func keys(objs []*unstructured.Unstructured) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
	}
	return out
}

func clusterClassChartDir() string {
	return filepath.Join(testenv.RepoRoot(), "test", "fixtures", "stacks", "openstack-scs", "cluster-class")
}

func TestChartFixtureClusterClass(t *testing.T) {
	dir, err := fixtures.Build(t.TempDir(), fixtures.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts := fixtures.Options{}
	rel, err := release.Load(dir, opts.Release(), release.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"packaged": rel.ClusterClassChart, "directory": clusterClassChartDir()} {
		t.Run(name, func(t *testing.T) {
			objs, err := render.Chart(context.Background(), path, render.Options{
				ReleaseName: "openstack-scs-1-32",
				Namespace:   "tenant-a",
				KubeVersion: "v1.32.5",
				Values:      map[string]any{"flavor": "SCS-4V-8"},
			})
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]*unstructured.Unstructured{}
			for _, o := range objs {
				if o.GetNamespace() != "tenant-a" {
					t.Errorf("%s/%s: namespace %q, want tenant-a", o.GetKind(), o.GetName(), o.GetNamespace())
				}
				kinds[o.GetKind()] = o
			}
			for _, k := range []string{"ClusterClass", "KubeadmConfigTemplate", "KubeadmControlPlaneTemplate", "OpenStackClusterTemplate", "OpenStackMachineTemplate"} {
				if kinds[k] == nil {
					t.Errorf("no %s rendered; got %v", k, keys(objs))
				}
			}
			cc := kinds["ClusterClass"]
			if cc == nil {
				return
			}
			if !strings.HasPrefix(cc.GetName(), "openstack-scs-1-32-") {
				t.Errorf("ClusterClass name %q does not start with the release name", cc.GetName())
			}
			flavor, _, _ := unstructured.NestedString(kinds["OpenStackMachineTemplate"].Object, "spec", "template", "spec", "flavor")
			if flavor != "SCS-4V-8" {
				t.Errorf("flavor = %q, want the value given over values.yaml", flavor)
			}
			disk, _, _ := unstructured.NestedInt64(kinds["OpenStackMachineTemplate"].Object, "spec", "template", "spec", "rootVolume", "sizeGiB")
			if disk != 50 {
				t.Errorf("rootVolume.sizeGiB = %d, want 50 from values.yaml", disk)
			}
		})
	}
}

func TestChartCRDsNamespacesHooksAndOrder(t *testing.T) {
	values := map[string]any{"size": 5}
	objs, err := render.Chart(context.Background(), "testdata/crds", render.Options{
		ReleaseName: "rel",
		Namespace:   "ns1",
		IncludeCRDs: true,
		Values:      values,
	})
	if err != nil {
		t.Fatal(err)
	}
	got := keys(objs)
	// crds/ first, then Namespace, then install order (ClusterRole before ConfigMap and custom
	// kinds), hooks last; no namespace the templates do not set (defaulting is apply's), no NOTES.txt, no empty documents.
	want := []string{
		"CustomResourceDefinition//widgets.example.org",
		"Namespace//rel-system",
		"ClusterRole//rel-reader",
		"Widget//rel-widget",
		"ConfigMap//rel-hook",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("objects:\n got %v\nwant %v", got, want)
	}
	if size, _, _ := unstructured.NestedInt64(objs[3].Object, "spec", "size"); size != 5 {
		t.Errorf("Widget size = %d, want 5", size)
	}
	if len(values) != 1 {
		t.Errorf("the caller's values were modified: %v", values)
	}

	without, err := render.Chart(context.Background(), "testdata/crds", render.Options{ReleaseName: "rel", Namespace: "ns1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(without) != len(objs)-1 || without[0].GetKind() == "CustomResourceDefinition" {
		t.Errorf("without IncludeCRDs: %v", keys(without))
	}
}

func TestChartVendoredDependency(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]any
		want   []string
		greet  string
	}{
		{name: "enabled", values: nil, want: []string{"ConfigMap//child", "ConfigMap//parent"}, greet: "hello"},
		{name: "parent values override", values: map[string]any{"child": map[string]any{"greeting": "servus"}}, want: []string{"ConfigMap//child", "ConfigMap//parent"}, greet: "servus"},
		{name: "condition false", values: map[string]any{"child": map[string]any{"enabled": false}}, want: []string{"ConfigMap//parent"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := render.Chart(context.Background(), "testdata/deps", render.Options{ReleaseName: "r", Namespace: "n", Values: tt.values})
			if err != nil {
				t.Fatal(err)
			}
			if got := keys(objs); strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("objects %v, want %v", got, tt.want)
			}
			if tt.greet != "" {
				if g, _, _ := unstructured.NestedString(objs[0].Object, "data", "greeting"); g != tt.greet {
					t.Errorf("greeting %q, want %q", g, tt.greet)
				}
			}
		})
	}
}

func TestChartKubeVersion(t *testing.T) {
	_, err := render.Chart(context.Background(), "testdata/kube", render.Options{ReleaseName: "r", KubeVersion: "v1.32.5"})
	if !errors.Is(err, render.ErrIncompatibleKubeVersion) {
		t.Fatalf("error %v, want ErrIncompatibleKubeVersion", err)
	}
	if !strings.Contains(err.Error(), "kube") || !strings.Contains(err.Error(), ">= 1.33.0-0") {
		t.Errorf("error %q does not name the chart and its constraint", err)
	}

	objs, err := render.Chart(context.Background(), "testdata/kube", render.Options{
		ReleaseName: "r", KubeVersion: "v1.33.2", APIVersions: []string{"example.org/v1/Widget"},
	})
	if err != nil {
		t.Fatal(err)
	}
	data, _, _ := unstructured.NestedStringMap(objs[0].Object, "data")
	if data["version"] != "v1.33.2" || data["widgets"] != "yes" {
		t.Errorf("capabilities not passed to templates: %v", data)
	}

	if _, err := render.Chart(context.Background(), "testdata/kube", render.Options{KubeVersion: "not-a-version"}); err == nil {
		t.Error("a malformed KubeVersion was accepted")
	}
}

func writeChart(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "chart")
	files["Chart.yaml"] = "apiVersion: v2\nname: mychart\nversion: 0.1.0\n"
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestChartErrors(t *testing.T) {
	tests := []struct {
		name  string
		path  func(t *testing.T) string
		wants []string // substrings: the chart and the template file
	}{
		{
			name:  "nil value in template",
			path:  func(*testing.T) string { return "testdata/broken" },
			wants: []string{"rendering chart broken", "broken/templates/bad.yaml"},
		},
		{
			name: "template parse error",
			path: func(t *testing.T) string {
				return writeChart(t, map[string]string{"templates/x.yaml": "{{ if }}"})
			},
			wants: []string{"rendering chart mychart", "mychart/templates/x.yaml"},
		},
		{
			name: "fail function",
			path: func(t *testing.T) string {
				return writeChart(t, map[string]string{"templates/y.yaml": `{{ fail "flavor must be set" }}`})
			},
			wants: []string{"mychart", "templates/y.yaml", "flavor must be set"},
		},
		{
			name: "rendered YAML is invalid",
			path: func(t *testing.T) string {
				return writeChart(t, map[string]string{"templates/z.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n"})
			},
			wants: []string{"mychart", "templates/z.yaml"},
		},
		{
			name: "object without a name",
			path: func(t *testing.T) string {
				return writeChart(t, map[string]string{"templates/n.yaml": "apiVersion: v1\nkind: ConfigMap\ndata: {}\n"})
			},
			wants: []string{"mychart", "templates/n.yaml", "no metadata.name"},
		},
		{
			name:  "missing chart",
			path:  func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") },
			wants: []string{"loading chart"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := render.Chart(context.Background(), tt.path(t), render.Options{ReleaseName: "r", Namespace: "n"})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// BenchmarkChartClusterClass renders the fixture cluster-class chart (the packaged chart of a
// release) in a warm worker: each rendering has options of its own (a namespace), so that the
// cache does not answer it.
func BenchmarkChartClusterClass(b *testing.B) {
	chart := fixtureClusterClassChart(b)
	renderChart(b, chart, "warm")
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		renderChart(b, chart, fmt.Sprintf("bench-%d", i))
	}
}

// BenchmarkChartClusterClassFreshProcess is BenchmarkChartClusterClass with a process start per
// rendering, as the renderer was before its workers were reused.
func BenchmarkChartClusterClassFreshProcess(b *testing.B) {
	chart := fixtureClusterClassChart(b)
	limits := render.CurrentLimits()
	b.Cleanup(func() { render.SetLimits(limits) })
	i := 0
	for b.Loop() {
		i++
		render.SetLimits(limits) // new, empty pool and cache
		renderChart(b, chart, fmt.Sprintf("bench-%d", i))
	}
}

// BenchmarkChartClusterClassCached is the same rendering answered by the cache.
func BenchmarkChartClusterClassCached(b *testing.B) {
	chart := fixtureClusterClassChart(b)
	renderChart(b, chart, "cached")
	b.ReportAllocs()
	for b.Loop() {
		renderChart(b, chart, "cached")
	}
}

func fixtureClusterClassChart(b *testing.B) string {
	dir, err := fixtures.Build(b.TempDir(), fixtures.Options{})
	if err != nil {
		b.Fatal(err)
	}
	rel, err := release.Load(dir, fixtures.Options{}.Release(), release.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return rel.ClusterClassChart
}

func renderChart(b *testing.B, chart, namespace string) {
	objs, err := render.Chart(context.Background(), chart, render.Options{ReleaseName: "openstack-scs-1-32", Namespace: namespace, KubeVersion: "v1.32.5"})
	if err != nil || len(objs) == 0 {
		b.Fatal(len(objs), err)
	}
}
