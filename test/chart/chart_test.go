// Package chart_test renders what a release installs, the Helm chart under config/chart (with
// Helm's own engine, as `helm install` does) and clusterctl's components (config/clusterctl), and
// applies it to a real API server (server-side, dry run), so a template that renders an object
// the API refuses fails here, not in a user's cluster.
package chart_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v4/pkg/chart/common"
	commonutil "helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

var env *testenv.Environment

// fullname is what the chart names its objects after for the release "cso".
const fullname = "cso-clusterstack-operator"

func TestMain(m *testing.M) {
	testenv.Main(m, func(s *testenv.Suite) error {
		var err error
		env, err = s.Start(testenv.Options{})
		return err
	})
}

func chartDir() string {
	return filepath.Join(testenv.RepoRoot(), "config", "chart", "clusterstack-operator")
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.LoadDir(chartDir())
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	return ch
}

// renderChart renders the chart as `helm install --dry-run` does: its CRDs, then its templates.
func renderChart(ch *chart.Chart, release, namespace string, values map[string]any) ([]*unstructured.Unstructured, error) {
	vals, err := commonutil.ToRenderValuesWithSchemaValidation(ch, values, common.ReleaseOptions{
		Name: release, Namespace: namespace, Revision: 1, IsInstall: true,
	}, common.DefaultCapabilities.Copy(), false)
	if err != nil {
		return nil, fmt.Errorf("preparing values: %w", err)
	}
	var e engine.Engine
	files, err := e.Render(ch, vals)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, crd := range ch.CRDObjects() {
		o, err := decode(crd.Filename, string(crd.File.Data))
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if strings.HasSuffix(name, "NOTES.txt") || strings.HasSuffix(name, ".tpl") {
			continue
		}
		o, err := decode(name, files[name])
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	return objs, nil
}

func decode(name, text string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	d := yaml.NewYAMLOrJSONDecoder(strings.NewReader(text), 4096)
	for {
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("decoding %s: %w", name, err)
		}
		if m != nil {
			out = append(out, &unstructured.Unstructured{Object: m})
		}
	}
}

// caBundle is a real self-signed CA certificate, base64 PEM, as a user would pass it.
func caBundle(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// notInEnvtest are the API groups of objects the chart renders whose CRDs the test API server
// does not have: cert-manager is a prerequisite of the installation, not of the tests. The
// default case checks those objects' references instead, and the case without cert-manager
// applies everything.
var notInEnvtest = map[string]bool{"cert-manager.io": true}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			return o
		}
	}
	return nil
}

func TestChartInstalls(t *testing.T) {
	ca := caBundle(t)
	tests := []struct {
		name   string
		values map[string]any
		check  func(t *testing.T, objs []*unstructured.Unstructured, ns string)
	}{{
		name: "default values",
		check: func(t *testing.T, objs []*unstructured.Unstructured, ns string) {
			deploy := find(objs, "Deployment", fullname)
			if got := deploymentArgs(t, deploy); !slices.Contains(got, "--metrics-bind-address=:8080") {
				t.Errorf("manager args %v do not serve metrics", got)
			}
			cert := find(objs, "Certificate", fullname+"-serving-cert")
			if cert == nil {
				t.Fatal("no serving Certificate with cert-manager enabled")
			}
			dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
			for _, svc := range []string{fullname + "-webhook-service", fullname + "-runtime-extension"} {
				if find(objs, "Service", svc) == nil {
					t.Errorf("no Service %s", svc)
				}
				if host := svc + "." + ns + ".svc"; !slices.Contains(dnsNames, host) {
					t.Errorf("the certificate (%v) does not name %s", dnsNames, host)
				}
			}
			for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "ExtensionConfig"} {
				o := find(objs, kind, "")
				if o == nil {
					t.Fatalf("no %s", kind)
				}
				if got := o.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != ns+"/"+fullname+"-serving-cert" {
					t.Errorf("%s CA injection from %q, want %s/%s-serving-cert", kind, got, ns, fullname)
				}
			}
			for _, o := range objs {
				if o.GetKind() == "CustomResourceDefinition" {
					continue
				}
				if got := o.GetLabels()["cluster.x-k8s.io/provider"]; got != "runtime-extension-clusterstack" {
					t.Errorf("%s %s has provider label %q", o.GetKind(), o.GetName(), got)
				}
			}
		},
	}, {
		name: "other values",
		values: map[string]any{
			"replicas":               2,
			"image":                  map[string]any{"repository": "registry.example.org/cso/manager", "tag": "v9.8.7"},
			"resources":              map[string]any{"requests": map[string]any{"cpu": "250m", "memory": "256Mi"}, "limits": map[string]any{"memory": "1Gi"}},
			"releaseSource":          map[string]any{"github": map[string]any{"org": "sovereigncloudstack", "repository": "cluster-stacks"}, "credentialsSecret": "release-credentials"},
			"chartCredentialsSecret": "chart-credentials",
			"metrics":                map[string]any{"enabled": false},
			"webhooks":               map[string]any{"failurePolicy": "Ignore"},
			"certManager":            map[string]any{"enabled": false, "caBundle": ca},
			"tlsSecretName":          "my-serving-cert",
			"extraArgs":              []any{"--egress-allow-private"},
		},
		check: func(t *testing.T, objs []*unstructured.Unstructured, ns string) {
			deploy := find(objs, "Deployment", fullname)
			if got, _, _ := unstructured.NestedInt64(deploy.Object, "spec", "replicas"); got != 2 {
				t.Errorf("replicas %d, want 2", got)
			}
			args := deploymentArgs(t, deploy)
			for _, want := range []string{"--metrics-bind-address=0", "--chart-credentials-secret=" + ns + "/chart-credentials", "--egress-allow-private"} {
				if !slices.Contains(args, want) {
					t.Errorf("manager args %v lack %s", args, want)
				}
			}
			c := container(t, deploy)
			if c.Image != "registry.example.org/cso/manager:v9.8.7" {
				t.Errorf("image %s", c.Image)
			}
			if got := c.Resources.Limits.Memory().String(); got != "1Gi" {
				t.Errorf("memory limit %s, want 1Gi", got)
			}
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			if env["GIT_ORG_NAME"] != "sovereigncloudstack" || env["GIT_REPOSITORY_NAME"] != "cluster-stacks" || env["OCI_REGISTRY"] != "" {
				t.Errorf("release source environment %v, want the GitHub source only", env)
			}
			if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "release-credentials" {
				t.Errorf("envFrom %+v, want the credentials Secret", c.EnvFrom)
			}
			for _, o := range objs {
				if o.GroupVersionKind().Group == "cert-manager.io" {
					t.Errorf("cert-manager %s rendered with certManager.enabled=false", o.GetKind())
				}
				if o.GetKind() == "Service" && strings.HasSuffix(o.GetName(), "-metrics") {
					t.Error("a metrics Service with metrics disabled")
				}
			}
			for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
				hooks, _, _ := unstructured.NestedSlice(find(objs, kind, "").Object, "webhooks")
				if len(hooks) == 0 {
					t.Errorf("%s has no webhooks", kind)
				}
				for _, h := range hooks {
					h := h.(map[string]any)
					if h["failurePolicy"] != "Ignore" {
						t.Errorf("%s webhook %v has failurePolicy %v, want Ignore", kind, h["name"], h["failurePolicy"])
					}
					if got, _, _ := unstructured.NestedString(h, "clientConfig", "caBundle"); got != ca {
						t.Errorf("%s webhook %v lacks the given CA bundle", kind, h["name"])
					}
				}
			}
		},
	}, {
		name:   "webhooks and runtime extension off",
		values: map[string]any{"webhooks": map[string]any{"enabled": false}, "runtimeExtension": map[string]any{"enabled": false}},
		check: func(t *testing.T, objs []*unstructured.Unstructured, _ string) {
			for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "ExtensionConfig"} {
				if find(objs, kind, "") != nil {
					t.Errorf("%s rendered although disabled", kind)
				}
			}
		},
	}}
	ch := loadChart(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			ns := fmt.Sprintf("chart-%d", i)
			objs, err := renderChart(ch, "cso", ns, tt.values)
			if err != nil {
				t.Fatalf("rendering the chart: %v", err)
			}
			if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
				t.Fatal(err)
			}
			applied := 0
			for _, o := range objs {
				if notInEnvtest[o.GetObjectKind().GroupVersionKind().Group] {
					continue
				}
				// Server-side apply, dry run: the API server validates every object against its
				// schema (CRDs' OpenAPI, webhooks, Deployments) without the test owning them.
				if err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o), client.FieldOwner("chart-test"), client.ForceOwnership, client.DryRunAll); err != nil {
					t.Errorf("applying %s %s: %v", o.GetKind(), o.GetName(), err)
				}
				applied++
			}
			if applied < 12 {
				t.Errorf("applied %d objects, want the CRDs, RBAC, Deployment, Services and registrations", applied)
			}
			tt.check(t, objs, ns)
		})
	}
}

func container(t *testing.T, deploy *unstructured.Unstructured) corev1.Container {
	t.Helper()
	if deploy == nil {
		t.Fatal("no Deployment rendered")
	}
	cs, _, _ := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "containers")
	for _, c := range cs {
		var out corev1.Container
		data, _ := sigsyaml.Marshal(c)
		if err := sigsyaml.Unmarshal(data, &out); err != nil {
			t.Fatal(err)
		}
		if out.Name == "manager" {
			return out
		}
	}
	t.Fatal("no manager container")
	return corev1.Container{}
}

func deploymentArgs(t *testing.T, deploy *unstructured.Unstructured) []string {
	t.Helper()
	return container(t, deploy).Args
}

// TestChartRefuses checks that values the manager cannot run with fail at rendering, saying
// what to change, instead of installing a manager that exits.
func TestChartRefuses(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"secure metrics", map[string]any{"metrics": map[string]any{"secure": true}}, "metrics.secure"},
		{"unknown failure policy", map[string]any{"webhooks": map[string]any{"failurePolicy": "Sometimes"}}, "webhooks.failurePolicy"},
		{"two release sources", map[string]any{"releaseSource": map[string]any{"oci": map[string]any{"registry": "r.example.org", "repository": "stacks"}, "github": map[string]any{"org": "o", "repository": "r"}}}, "releaseSource"},
		{"OCI registry without repository", map[string]any{"releaseSource": map[string]any{"oci": map[string]any{"registry": "r.example.org"}}}, "releaseSource.oci.repository"},
		{"no cert-manager and no CA", map[string]any{"certManager": map[string]any{"enabled": false}}, "certManager.caBundle"},
	}
	ch := loadChart(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderChart(ch, "cso", "default", tt.values)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("rendering with %v: error %v, want one naming %s", tt.values, err, tt.want)
			}
		})
	}
}

// TestChartInSync checks the chart's copies of generated files against their sources, so a
// marker change without `make manifests` fails here too.
func TestChartInSync(t *testing.T) {
	ch := loadChart(t)
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(testenv.RepoRoot(), "config", "crd"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{}
	for _, r := range m.Resources() {
		if want[r.GetName()], err = r.Map(); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]any{}
	for _, f := range ch.CRDObjects() {
		objs, err := decode(f.Filename, string(f.File.Data))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			got[o.GetName()] = o.Object
		}
	}
	if diff := cmp.Diff(normal(t, want), normal(t, got)); diff != "" {
		t.Errorf("the chart's CRDs differ from config/crd; run make manifests (-config/crd +chart):\n%s", diff)
	}

	for file, source := range map[string]struct{ path, kind, field string }{
		"files/manager-role-rules.yaml":  {"config/rbac/role.yaml", "ClusterRole", "rules"},
		"files/mutating-webhooks.yaml":   {"config/webhook/manifests.yaml", "MutatingWebhookConfiguration", "webhooks"},
		"files/validating-webhooks.yaml": {"config/webhook/manifests.yaml", "ValidatingWebhookConfiguration", "webhooks"},
	} {
		data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), source.path))
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decode(source.path, string(data))
		if err != nil {
			t.Fatal(err)
		}
		var want any
		for _, o := range objs {
			if o.GetKind() == source.kind {
				want = o.Object[source.field]
			}
		}
		var got any
		for _, f := range ch.Files {
			if f.Name == file {
				if err := sigsyaml.Unmarshal(f.Data, &got); err != nil {
					t.Fatal(err)
				}
			}
		}
		if diff := cmp.Diff(normal(t, want), normal(t, got)); diff != "" {
			t.Errorf("%s differs from %s; run make manifests (-source +chart):\n%s", file, source.path, diff)
		}
	}
}

// normal is v as JSON reads it back: YAML decoders differ in the Go types of numbers.
func normal(t *testing.T, v any) any {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
