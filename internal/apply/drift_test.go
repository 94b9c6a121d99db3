package apply

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"sigs.k8s.io/yaml"
)

func tree(t *testing.T, y string) map[string]any {
	t.Helper()
	m := map[string]any{}
	if err := yaml.Unmarshal([]byte(y), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDrifted(t *testing.T) {
	tests := []struct {
		name                 string
		desired, live, owned string
		want                 bool
	}{
		{
			name:    "equal",
			desired: "data: {a: x, n: 1}", live: "data: {a: x, n: 1.0, extra: y}", owned: "",
			want: false,
		},
		{
			name:    "normalised value we own",
			desired: "spec: {cpu: 1000m}", live: "spec: {cpu: '1'}", owned: `{"f:spec": {"f:cpu": {}}}`,
			want: false,
		},
		{
			name:    "changed value someone else owns",
			desired: "spec: {cpu: 1000m}", live: "spec: {cpu: '2'}", owned: `{"f:spec": {}}`,
			want: true,
		},
		{
			name:    "missing field no longer owned",
			desired: "data: {a: x, b: y}", live: "data: {a: x}", owned: `{"f:data": {"f:a": {}}}`,
			want: true,
		},
		{
			name:    "missing field still owned is a dropped default",
			desired: "data: {a: x, b: y}", live: "data: {a: x}", owned: `{"f:data": {"f:a": {}, "f:b": {}}}`,
			want: false,
		},
		{
			name:    "empty and null values are ignored",
			desired: "metadata: {annotations: {}}\nspec: {env: [], x: null}", live: "metadata: {}\nspec: {}", owned: "",
			want: false,
		},
		{
			name:    "atomic list we own",
			desired: "spec: {args: [a, b]}", live: "spec: {args: [a, b, c]}", owned: `{"f:spec": {"f:args": {}}}`,
			want: false,
		},
		{
			name:    "atomic list taken",
			desired: "spec: {args: [a, b]}", live: "spec: {args: [z]}", owned: `{"f:spec": {}}`,
			want: true,
		},
		{
			name:    "keyed item normalised",
			desired: "spec: {containers: [{name: web, cpu: 1000m}]}",
			live:    "spec: {containers: [{name: web, cpu: '1', policy: Always}]}",
			owned:   `{"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:cpu": {}}}}}`,
			want:    false,
		},
		{
			name:    "keyed item field taken",
			desired: "spec: {containers: [{name: web, image: a}]}",
			live:    "spec: {containers: [{name: web, image: b}]}",
			owned:   `{"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:name": {}}}}}`,
			want:    true,
		},
		{
			name:    "keyed item removed",
			desired: "spec: {containers: [{name: web}, {name: side}]}",
			live:    "spec: {containers: [{name: web}]}",
			owned:   `{"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:name": {}}}}}`,
			want:    true,
		},
		{
			name:    "map replaced by a scalar, not owned",
			desired: "spec: {a: {b: c}}", live: "spec: {a: x}", owned: "",
			want: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var owned map[string]any
			if tt.owned != "" {
				owned = tree(t, tt.owned)
			}
			if got := drifted(tree(t, tt.desired), tree(t, tt.live), owned); got != tt.want {
				t.Errorf("drifted = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPrepareHash(t *testing.T) {
	hash := func(y string) (string, *unstructured.Unstructured) {
		o, h, err := prepare(&unstructured.Unstructured{Object: tree(t, y)}, "")
		if err != nil {
			t.Fatal(err)
		}
		return h, o
	}
	server, prepared := hash("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, creationTimestamp: null, resourceVersion: '5', annotations: {" + HashAnnotation + ": old}}\ndata: {k: v}\nstatus: {}")
	plain, _ := hash("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {k: v}")
	changed, _ := hash("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {k: w}")
	if server != plain {
		t.Error("server-managed fields, status or an old hash annotation change the hash")
	}
	if changed == plain {
		t.Error("a content change does not change the hash")
	}
	if _, ok := prepared.Object["status"]; ok || prepared.GetResourceVersion() != "" || prepared.GetAnnotations()[HashAnnotation] != server {
		t.Errorf("prepared object %v", prepared.Object)
	}
}
