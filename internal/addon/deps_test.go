package addon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	chart "helm.sh/helm/v4/pkg/chart/v2"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/chartdeps"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/test/helmrepo"
)

func writeAddonChart(t *testing.T, addonDir, name, overwrite string) {
	t.Helper()
	dir := filepath.Join(addonDir, name)
	if err := os.MkdirAll(filepath.Join(dir, "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"Chart.yaml":          "apiVersion: v2\nname: " + name + "\nversion: 0.1.0\n",
		"templates/cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  host: {{ .Values.host | quote }}\n",
		OverwriteFile:         overwrite,
		"values.yaml":         "host: none\n",
		"templates/NOTES.txt": "",
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A values template that fails on the Cluster's current state waits (ErrValuesNotReady); one
// that is broken in itself is the release's fault (ErrRender).
func TestValuesTemplateClasses(t *testing.T) {
	early := map[string]any{"Cluster": map[string]any{"metadata": map[string]any{"name": "a"}, "spec": map[string]any{}}}
	later := map[string]any{"Cluster": map[string]any{"metadata": map[string]any{"name": "a"},
		"spec": map[string]any{"controlPlaneEndpoint": map[string]any{"host": "10.0.0.1", "port": int64(6443)}}}}
	for _, tc := range []struct {
		name, overwrite string
		data            map[string]any
		want            error // nil: renders
		notWant         error
	}{
		{name: "endpoint not set yet", overwrite: `host: "{{ .Cluster.spec.controlPlaneEndpoint.host }}"`, data: early, want: ErrValuesNotReady, notWant: ErrRender},
		{name: "endpoint set", overwrite: `host: "{{ .Cluster.spec.controlPlaneEndpoint.host }}"`, data: later},
		{name: "required value missing", overwrite: `host: {{ required "needs the endpoint" .Cluster.spec.controlPlaneEndpoint }}`, data: early, want: ErrValuesNotReady, notWant: ErrRender},
		{name: "template does not parse", overwrite: `host: {{ .Cluster.spec`, data: later, want: ErrRender, notWant: ErrValuesNotReady},
		{name: "result is not YAML", overwrite: "host: [a\n", data: later, want: ErrRender, notWant: ErrValuesNotReady},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeAddonChart(t, dir, "cni", tc.overwrite)
			r := &Renderer{Dir: t.TempDir()}
			objs, err := r.RenderChart(context.Background(), dir, "cni", Input{KubeVersion: "v1.32.5", Data: tc.data})
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if h, _, _ := unstructuredString(objs[0].Object, "data", "host"); h != "10.0.0.1" {
					t.Errorf("host = %q", h)
				}
				return
			}
			if !errors.Is(err, tc.want) || errors.Is(err, tc.notWant) {
				t.Fatalf("error %v; want %v and not %v", err, tc.want, tc.notWant)
			}
		})
	}
}

func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[f]
	}
	s, ok := cur.(string)
	return s, ok, nil
}

// The umbrella chart of the cluster-addon-values.yaml convention gets its missing Chart.yaml
// dependencies resolved before rendering, like the sub-charts of the new convention.
func TestRenderUmbrellaResolvesDependencies(t *testing.T) {
	repo := helmrepo.NewRepo(t)
	repo.Add(t, helmrepo.ConfigMapChart("cilium", "1.18.9"))
	client := helmrepo.Client(map[string]string{"charts.example.com": repo.Host()})
	deps, err := chartdeps.New(chartdeps.Options{Dir: t.TempDir(), HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	umbrella := helmrepo.Chart("openstack-scs-1-32-cluster-addon", "v1", nil, "")
	umbrella.Metadata.Dependencies = []*chart.Dependency{{Name: "cilium", Version: "1.18.9", Repository: "https://charts.example.com"}}
	dir := t.TempDir()
	archive := filepath.Join(dir, "openstack-scs-1-32-cluster-addon-v1.tgz")
	data, err := helmrepo.Package(umbrella)
	if err != nil {
		t.Fatal(err)
	}
	values := filepath.Join(dir, release.ClusterAddonValuesFile)
	if err := os.WriteFile(archive, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(values, []byte("cilium:\n  host: {{ .Cluster.metadata.name }}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel := &release.Release{ClusterAddonArchive: archive, ClusterAddonValues: values}
	in := Input{KubeVersion: "v1.32.5", Data: map[string]any{"Cluster": map[string]any{"metadata": map[string]any{"name": "alpha"}}}}

	without := &Renderer{Dir: t.TempDir()}
	if objs, err := without.RenderUmbrella(context.Background(), rel, in); err != nil || len(objs) != 0 {
		t.Fatalf("without a resolver: %d objects, %v; want none (the dependency is missing)", len(objs), err)
	}
	with := &Renderer{Dir: t.TempDir(), Dependencies: deps}
	objs, err := with.RenderUmbrella(context.Background(), rel, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].GetName() != "dep-cilium" {
		t.Fatalf("objects: %v", objs)
	}
	if h, _, _ := unstructuredString(objs[0].Object, "data", "host"); h != "alpha" {
		t.Errorf("host = %q; want the values of cluster-addon-values.yaml", h)
	}
}
