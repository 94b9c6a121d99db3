package api_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// TestReferenceManifestsApply applies manifests written for the reference operators, unchanged,
// and checks that every object is stored with the fields it was given.
func TestReferenceManifestsApply(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/reference-manifests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t)
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	applied := 0
	for {
		obj := &unstructured.Unstructured{}
		if err := decoder.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("decoding manifests: %v", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		sent := obj.DeepCopy()
		obj.SetNamespace(ns)
		if err := env.Client.Create(context.Background(), obj); err != nil {
			t.Fatalf("applying %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
		// Every field the manifest set is stored as given (defaults may add fields, nothing is
		// dropped or changed).
		if spec, ok := sent.Object["spec"].(map[string]any); ok {
			assertContains(t, obj.GetKind()+" "+obj.GetName()+" spec", obj.Object["spec"], spec)
		}
		applied++
	}
	if applied != 8 {
		t.Fatalf("applied %d objects, want 8: the test data changed without this test", applied)
	}
}

// assertContains fails unless every field of want is in got with the same value.
func assertContains(t *testing.T, path string, got, want any) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			t.Fatalf("%s: stored %T, sent an object", path, got)
		}
		for k, v := range w {
			assertContains(t, path+"."+k, g[k], v)
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			t.Fatalf("%s: stored %v, sent %v", path, got, want)
		}
		for i := range w {
			assertContains(t, path, g[i], w[i])
		}
	default:
		if got != want {
			t.Fatalf("%s: stored %v (%T), sent %v (%T)", path, got, got, want, want)
		}
	}
}
