package render_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/render"
)

var clusterData = map[string]any{
	"Cluster": map[string]any{
		"metadata": map[string]any{"name": "prod-1", "namespace": "tenant-a", "labels": map[string]any{"team": "blue"}},
		"spec":     map[string]any{"controlPlaneEndpoint": map[string]any{"host": "10.0.0.1", "port": int64(6443)}},
	},
	"ControlPlane": map[string]any{"spec": map[string]any{"replicas": int64(3)}},
	"InfraCluster": map[string]any{"status": map[string]any{"network": map[string]any{"id": "net-1"}}},
}

func TestValuesTemplate(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    map[string]any
	}{
		{
			name:    "cluster name",
			content: "cni:\n  clusterName: {{ .Cluster.metadata.name }}\n",
			want:    map[string]any{"cni": map[string]any{"clusterName": "prod-1"}},
		},
		{
			name:    "sprig and helm functions",
			content: "name: {{ .Cluster.metadata.name | upper | quote }}\nendpoint: {{ printf \"%s:%v\" .Cluster.spec.controlPlaneEndpoint.host .Cluster.spec.controlPlaneEndpoint.port }}\nreplicas: {{ .ControlPlane.spec.replicas | add 1 }}\nnet: {{ default \"none\" .InfraCluster.status.network.id }}\nlabels:\n{{ toYaml .Cluster.metadata.labels | indent 2 }}\n",
			want: map[string]any{
				"name": "PROD-1", "endpoint": "10.0.0.1:6443", "replicas": float64(4), "net": "net-1",
				"labels": map[string]any{"team": "blue"},
			},
		},
		{
			name:    "values string wrapping (SCS convention)",
			content: "values: |\n  metrics-server:\n    clusterName: {{ .Cluster.metadata.name }}\n    replicas: 2\n",
			want:    map[string]any{"metrics-server": map[string]any{"clusterName": "prod-1", "replicas": float64(2)}},
		},
		{
			name:    "values key beside others is not unwrapped",
			content: "values: \"a: 1\"\nother: x\n",
			want:    map[string]any{"values": "a: 1", "other": "x"},
		},
		{
			name:    "values map is not unwrapped",
			content: "values:\n  a: 1\n",
			want:    map[string]any{"values": map[string]any{"a": float64(1)}},
		},
		{
			name:    "missing key renders empty",
			content: "zone: \"{{ .Cluster.metadata.zone }}\"\n",
			want:    map[string]any{"zone": ""},
		},
		{
			name:    "empty file",
			content: "# nothing\n",
			want:    map[string]any{},
		},
		{
			name:    "empty values string",
			content: "values: \"\"\n",
			want:    map[string]any{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := render.ValuesTemplate([]byte(tt.content), clusterData)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestValuesTemplateErrors(t *testing.T) {
	tests := map[string]string{
		"parse error":                "a: {{ .Cluster.metadata.name ",
		"unknown function":           "a: {{ nosuchfunc 1 }}",
		"env is not available":       "a: {{ env \"HOME\" }}",
		"expandenv is not available": "a: {{ expandenv \"$HOME\" }}",
		"DNS is not available":       "a: {{ getHostByName \"example.org\" }}",
		"execution error":            "a: {{ .Cluster.metadata.name.deeper.still }}",
		"required":                   "a: {{ required \"zone is required\" .Cluster.metadata.zone }}",
		"fail":                       "{{ fail \"no\" }}",
		"not YAML":                   "a: [unclosed",
		"not a map":                  "- a\n- b\n",
		"wrapped string not YAML":    "values: \"a: [unclosed\"\n",
	}
	for name, content := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := render.ValuesTemplate([]byte(content), clusterData)
			if !errors.Is(err, render.ErrValuesTemplate) {
				t.Fatalf("got %v, %v; want ErrValuesTemplate", got, err)
			}
		})
	}
}

func FuzzValuesTemplate(f *testing.F) {
	for _, seed := range []string{
		"cni:\n  clusterName: {{ .Cluster.metadata.name }}\n",
		"values: |\n  a: {{ .Cluster.metadata.name }}\n",
		"{{ range $k, $v := .Cluster.metadata.labels }}{{ $k }}: {{ $v }}\n{{ end }}",
		"a: {{ toYaml .ControlPlane | nindent 2 }}",
		"values: \"{{ .Cluster.metadata.name }}: 1\"",
		"{{ if }}",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, content string) {
		vals, err := render.ValuesTemplateInProcess([]byte(content), clusterData)
		if err != nil {
			if !errors.Is(err, render.ErrValuesTemplate) {
				t.Fatalf("error %v is not ErrValuesTemplate", err)
			}
			return
		}
		if vals == nil {
			t.Fatal("nil values without an error")
		}
	})
}
