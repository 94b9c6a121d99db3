package chart_test

import (
	"context"
	"path/filepath"
	"regexp"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// unsetVariable is a clusterctl variable with its default, ${NAME:=default}.
var unsetVariable = regexp.MustCompile(`\$\{\s*[A-Za-z0-9_]+\s*:=([^}]*)\}`)

// TestComponentsInstall applies the components clusterctl installs (config/clusterctl, which
// make release-artifacts renders), with every variable at its default as clusterctl substitutes
// it when unset, to the API server: the Secret of the release source decodes, every object is
// valid.
func TestComponentsInstall(t *testing.T) {
	ctx := context.Background()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(testenv.RepoRoot(), "config", "clusterctl"))
	if err != nil {
		t.Fatalf("rendering config/clusterctl: %v", err)
	}
	data, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	if len(unsetVariable.FindAll(data, -1)) == 0 {
		t.Fatal("the components hold no clusterctl variables: the release source cannot be set")
	}
	objs, err := decode("components", string(unsetVariable.ReplaceAll(data, []byte("$1"))))
	if err != nil {
		t.Fatal(err)
	}
	// The Namespace first, for real: dry-run objects in a namespace that does not exist are refused.
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			if err := env.Client.Create(ctx, o.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatalf("creating the components' namespace: %v", err)
			}
		}
	}
	applied := 0
	for _, o := range objs {
		if notInEnvtest[o.GroupVersionKind().Group] || o.GetKind() == "Namespace" {
			continue
		}
		if err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), client.FieldOwner("components-test"), client.ForceOwnership, client.DryRunAll); err != nil {
			t.Errorf("applying %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		applied++
	}
	if applied < 15 {
		t.Errorf("applied %d objects, want the CRDs, RBAC, Deployment, Services, Secret and registrations", applied)
	}
	secret := find(objs, "Secret", "clusterstack-release-source")
	if secret == nil {
		t.Fatal("no release source Secret")
	}
	var s corev1.Secret
	if err := runtimeConvert(secret, &s); err != nil {
		t.Fatal(err)
	}
	for k, v := range s.Data {
		if len(v) != 0 {
			t.Errorf("the release source's %s defaults to %q, want empty (no default source)", k, v)
		}
	}
}

func runtimeConvert(u *unstructured.Unstructured, out any) error {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out)
}
