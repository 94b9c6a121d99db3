// Package argocd_test runs the Argo CD health checks of this directory, as Argo CD does (the
// object as the global obj, the returned table's status and message), on objects whose status
// the API server stored: each kind is created in envtest, given the conditions the operator's
// kstatus functions set, and read back.
package argocd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cluster-api/util/conditions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/kstatus"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

var k8s client.Client

func TestMain(m *testing.M) {
	testenv.Main(m, func(s *testenv.Suite) error {
		env, err := s.Start(testenv.Options{})
		if err != nil {
			return err
		}
		k8s = env.Client
		return nil
	})
}

// statusObject is a kind with kstatus conditions and observedGeneration.
type statusObject interface {
	client.Object
	conditions.Setter
}

func kinds() map[string]func() statusObject {
	return map[string]func() statusObject{
		"clusterstack.x-k8s.io_ClusterStack": func() statusObject {
			return &csv1alpha1.ClusterStack{Spec: csv1alpha1.ClusterStackSpec{Provider: "openstack", Name: "scs", KubernetesVersion: "1.32", Versions: []string{"v1"}, NoProvider: true}}
		},
		"clusterstack.x-k8s.io_ClusterStackRelease": func() statusObject { return &csv1alpha1.ClusterStackRelease{} },
		"clusterstack.x-k8s.io_ClusterAddon": func() statusObject {
			return &csv1alpha1.ClusterAddon{Spec: csv1alpha1.ClusterAddonSpec{ClusterRef: &corev1.ObjectReference{Kind: "Cluster", Name: "workload"}}}
		},
		"infrastructure.clusterstack.x-k8s.io_OpenStackClusterStackRelease": func() statusObject {
			return &infrav1alpha1.OpenStackClusterStackRelease{Spec: infrav1alpha1.OpenStackClusterStackReleaseSpec{IdentityRef: &infrav1alpha1.OpenStackIdentityReference{Kind: "Secret", Name: "openstack"}}}
		},
		"infrastructure.clusterstack.x-k8s.io_OpenStackClusterCredential": func() statusObject {
			return &infrav1alpha1.OpenStackClusterCredential{Spec: infrav1alpha1.OpenStackClusterCredentialSpec{
				ClusterName: "workload", IdentityRef: &infrav1alpha1.OpenStackIdentityReference{Kind: "Secret", Name: "openstack"}, Roles: []string{"member"},
				Lifetime: metav1.Duration{Duration: time.Hour}, RotateBefore: metav1.Duration{Duration: 20 * time.Minute}, RevokeAfter: metav1.Duration{Duration: time.Minute},
			}}
		},
		"infrastructure.clusterstack.x-k8s.io_OpenStackNodeImageRelease": func() statusObject {
			return &infrav1alpha1.OpenStackNodeImageRelease{Spec: infrav1alpha1.OpenStackNodeImageReleaseSpec{
				IdentityRef: &infrav1alpha1.OpenStackIdentityReference{Kind: "Secret", Name: "openstack"},
				Image: &infrav1alpha1.NodeImage{URL: "https://images.example/ubuntu.qcow2", CreateOpts: &infrav1alpha1.ImageCreateOpts{
					Name: "ubuntu", DiskFormat: "qcow2", ContainerFormat: "bare",
				}},
			}}
		},
	}
}

// health runs script on obj as Argo CD does and returns the table's status and message.
func health(t *testing.T, script string, obj map[string]any) (string, string) {
	t.Helper()
	L := lua.NewState()
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		t.Fatalf("running the health check: %v", err)
	}
	tbl, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("the health check returned %s, want a table", L.Get(-1).Type())
	}
	return lua.LVAsString(tbl.RawGetString("status")), lua.LVAsString(tbl.RawGetString("message"))
}

func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case nil:
		return lua.LNil
	}
	panic("unexpected JSON value")
}

// templateKey is the one kind without status; every other kind's health is conditions.lua.
const templateKey = "infrastructure.clusterstack.x-k8s.io_OpenStackClusterStackReleaseTemplate"

func script(t *testing.T, key string) string {
	t.Helper()
	file := "conditions.lua"
	if key == templateKey {
		file = key + ".lua"
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stored creates obj, writes status with set applied and observedGeneration at its generation
// plus lag (negative: behind), and returns what the API server returns of it.
func stored(t *testing.T, name string, obj statusObject, set func(conditions.Setter), lag int64) map[string]any {
	t.Helper()
	ctx := context.Background()
	obj.SetNamespace("default")
	obj.SetName(name)
	if err := k8s.Create(ctx, obj); err != nil {
		t.Fatalf("creating: %v", err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), obj) })
	gvk, err := k8s.GroupVersionKindFor(obj)
	if err != nil {
		t.Fatal(err)
	}
	if set != nil {
		set(obj)
		b, _ := json.Marshal(obj)
		var u map[string]any
		_ = json.Unmarshal(b, &u)
		st, _ := u["status"].(map[string]any)
		st["observedGeneration"] = obj.GetGeneration() + lag
		full := &unstructured.Unstructured{Object: u}
		full.SetGroupVersionKind(gvk)
		if err := k8s.Status().Update(ctx, full); err != nil {
			t.Fatalf("writing status: %v", err)
		}
	}
	out := &unstructured.Unstructured{}
	out.SetGroupVersionKind(gvk)
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), out); err != nil {
		t.Fatalf("reading back: %v", err)
	}
	return out.Object
}

// TestHealth: per kind and state, the health Argo CD shows for the status the API server holds.
func TestHealth(t *testing.T) {
	tests := []struct {
		name        string
		set         func(conditions.Setter)
		lag         int64
		wantStatus  string
		wantMessage string
	}{
		{name: "no status yet", wantStatus: "Progressing", wantMessage: "Waiting for the operator to report status"},
		{name: "ready", set: func(o conditions.Setter) { kstatus.MarkReady(o, csv1alpha1.ReadyReason, "All good") }, wantStatus: "Healthy", wantMessage: "All good"},
		{name: "stalled", set: func(o conditions.Setter) {
			kstatus.MarkStalled(o, "VersionNotFound", "spec.versions: version v4 is not in the release source (nearest: v3, v5)")
		}, wantStatus: "Degraded", wantMessage: "spec.versions: version v4 is not in the release source (nearest: v3, v5)"},
		{name: "reconciling", set: func(o conditions.Setter) { kstatus.MarkProgressing(o, "Waiting", "Waiting for images") }, wantStatus: "Progressing", wantMessage: "Waiting for images"},
		{name: "ready but generation not observed", set: func(o conditions.Setter) { kstatus.MarkReady(o, csv1alpha1.ReadyReason, "All good") }, lag: -1, wantStatus: "Progressing", wantMessage: "Waiting for the operator to observe generation 1"},
		{name: "only Ready False", set: func(o conditions.Setter) {
			conditions.Set(o, metav1.Condition{Type: csv1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: "NotYet", Message: "Not yet"})
		}, wantStatus: "Progressing", wantMessage: "Not yet"},
	}
	i := 0
	for key, newObj := range kinds() {
		src := script(t, key)
		for _, tt := range tests {
			i++
			name := fmt.Sprintf("openstack-scs-1-32-v%d", i)
			t.Run(key+"/"+tt.name, func(t *testing.T) {
				status, msg := health(t, src, stored(t, name, newObj(), tt.set, tt.lag))
				if status != tt.wantStatus || msg != tt.wantMessage {
					t.Errorf("health = %s %q, want %s %q", status, msg, tt.wantStatus, tt.wantMessage)
				}
			})
		}
	}
}

// TestTemplateHealthy: the template has no status and is healthy once it exists.
func TestTemplateHealthy(t *testing.T) {
	tmpl := &infrav1alpha1.OpenStackClusterStackReleaseTemplate{}
	tmpl.Spec.Template.Spec.IdentityRef = &infrav1alpha1.OpenStackIdentityReference{Kind: "Secret", Name: "openstack"}
	tmpl.SetNamespace("default")
	tmpl.SetName("openstack")
	if err := k8s.Create(context.Background(), tmpl); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	gvk, _ := k8s.GroupVersionKindFor(tmpl)
	u.SetGroupVersionKind(gvk)
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(tmpl), u); err != nil {
		t.Fatal(err)
	}
	if status, _ := health(t, script(t, "infrastructure.clusterstack.x-k8s.io_OpenStackClusterStackReleaseTemplate"), u.Object); status != "Healthy" {
		t.Errorf("health = %s, want Healthy", status)
	}
}

// TestConfigMapPatch: the argocd-cm patch holds, under each kind's key, the script of that kind.
func TestConfigMapPatch(t *testing.T) {
	b, err := os.ReadFile("argocd-cm-patch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	keys := append([]string{"infrastructure.clusterstack.x-k8s.io_OpenStackClusterStackReleaseTemplate"}, mapKeys(kinds())...)
	if len(cm.Data) != len(keys) {
		t.Errorf("argocd-cm has %d health checks, want %d", len(cm.Data), len(keys))
	}
	for _, k := range keys {
		if got := cm.Data["resource.customizations.health."+k]; got != script(t, k) {
			t.Errorf("argocd-cm's %s differs from %s.lua", k, k)
		}
	}
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
