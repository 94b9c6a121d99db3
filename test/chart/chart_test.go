// Package chart_test renders what a release installs, the Helm chart under config/chart (with
// Helm's own engine, as `helm install` does) and clusterctl's components (config/clusterctl), and
// applies it to a real API server (server-side, dry run), so a template that renders an object
// the API refuses fails here, not in a user's cluster.
package chart_test

import (
	"bytes"
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
	"maps"
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
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
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
// does not have: cert-manager and the Prometheus Operator are prerequisites of the installation
// (or of its options), not of the tests. The cases check those objects' references instead, and
// the case without cert-manager applies everything else.
var notInEnvtest = map[string]bool{"cert-manager.io": true, "monitoring.coreos.com": true}

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
			checkMetrics(t, objs, ns, "https", 8443)
			checkAvailability(t, objs, 2, true)
			if got := deploymentArgs(t, find(objs, "Deployment", fullname)); slices.ContainsFunc(got, func(a string) bool { return strings.HasPrefix(a, "--metrics-cert-dir") }) {
				t.Errorf("manager args %v name a metrics certificate without metrics.certSecret", got)
			}
			for _, kind := range []string{"ServiceMonitor", "PrometheusRule", "ConfigMap"} {
				if o := find(objs, kind, ""); o != nil {
					t.Errorf("%s %s rendered by default", kind, o.GetName())
				}
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
				if o.GetKind() == "Service" && o.GetName() == fullname+"-metrics-service" {
					t.Error("a metrics Service with metrics disabled")
				}
				if o.GetKind() == "ClusterRole" && strings.Contains(o.GetName(), "-metrics-") {
					t.Errorf("ClusterRole %s with metrics disabled", o.GetName())
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
		name: "insecure metrics, ServiceMonitor, alerts and dashboard",
		values: map[string]any{"metrics": map[string]any{
			"secure":         false,
			"serviceMonitor": map[string]any{"enabled": true},
			"prometheusRule": map[string]any{"enabled": true},
			"dashboard":      map[string]any{"enabled": true},
		}},
		check: func(t *testing.T, objs []*unstructured.Unstructured, ns string) {
			checkMetrics(t, objs, ns, "http", 8080)
			endpoint := checkServiceMonitor(t, objs, ns)
			for _, field := range []string{"bearerTokenFile", "tlsConfig"} {
				if endpoint[field] != nil {
					t.Errorf("the plain HTTP scrape has %s %v", field, endpoint[field])
				}
			}
			rule := find(objs, "PrometheusRule", fullname+"-alerts")
			if rule == nil {
				t.Fatal("no PrometheusRule with metrics.prometheusRule.enabled")
			}
			if rule.GetNamespace() != ns {
				t.Errorf("the PrometheusRule is in namespace %q, want %s", rule.GetNamespace(), ns)
			}
			want := overlayObject(t, "config/prometheus/alerts.yaml", "PrometheusRule")
			if diff := cmp.Diff(normal(t, want.Object["spec"]), normal(t, rule.Object["spec"])); diff != "" {
				t.Errorf("the PrometheusRule's rules differ from config/prometheus (-overlay +chart):\n%s", diff)
			}
			dashboard := find(objs, "ConfigMap", fullname+"-grafana-dashboard")
			if dashboard == nil {
				t.Fatal("no dashboard ConfigMap with metrics.dashboard.enabled")
			}
			if got := dashboard.GetLabels()["grafana_dashboard"]; got != "1" {
				t.Errorf("the dashboard ConfigMap has label grafana_dashboard=%q, want the 1 Grafana's sidecar looks for", got)
			}
			got, _, _ := unstructured.NestedString(dashboard.Object, "data", "clusterstack-operator.json")
			source, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "grafana", "clusterstack-operator.json"))
			if err != nil {
				t.Fatal(err)
			}
			if got != string(source) {
				t.Errorf("the dashboard ConfigMap holds %d bytes, not config/grafana's dashboard (%d bytes)", len(got), len(source))
			}
		},
	}, {
		name: "secure metrics with a certificate and Prometheus labels",
		values: map[string]any{"metrics": map[string]any{
			"certSecret":     "metrics-cert",
			"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "kps"}, "tlsConfig": map[string]any{"serverName": "metrics.example.org", "ca": map[string]any{"secret": map[string]any{"name": "metrics-ca", "key": "ca.crt"}}}},
			"prometheusRule": map[string]any{"enabled": true, "labels": map[string]any{"release": "kps"}},
		}},
		check: func(t *testing.T, objs []*unstructured.Unstructured, ns string) {
			checkMetrics(t, objs, ns, "https", 8443)
			deploy := find(objs, "Deployment", fullname)
			const certDir = "/tmp/k8s-metrics-server/metrics-certs"
			if args := deploymentArgs(t, deploy); !slices.Contains(args, "--metrics-cert-dir="+certDir) {
				t.Errorf("manager args %v lack --metrics-cert-dir=%s", args, certDir)
			}
			mounted := ""
			for _, m := range container(t, deploy).VolumeMounts {
				if m.MountPath == certDir {
					mounted = m.Name
				}
			}
			var pod corev1.PodSpec
			spec, _, _ := unstructured.NestedMap(deploy.Object, "spec", "template", "spec")
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(spec, &pod); err != nil {
				t.Fatal(err)
			}
			secret := ""
			for _, v := range pod.Volumes {
				if v.Name == mounted && v.Secret != nil {
					secret = v.Secret.SecretName
				}
			}
			if mounted == "" || secret != "metrics-cert" {
				t.Errorf("%s is volume %q from Secret %q, want the Secret metrics-cert", certDir, mounted, secret)
			}
			endpoint := checkServiceMonitor(t, objs, ns)
			if endpoint["bearerTokenFile"] == nil {
				t.Errorf("the HTTPS scrape %v sends no token", endpoint)
			}
			wantTLS := map[string]any{"serverName": "metrics.example.org", "ca": map[string]any{"secret": map[string]any{"name": "metrics-ca", "key": "ca.crt"}}}
			if diff := cmp.Diff(wantTLS, endpoint["tlsConfig"]); diff != "" {
				t.Errorf("the scrape's tlsConfig is not metrics.serviceMonitor.tlsConfig (-want +got):\n%s", diff)
			}
			for _, kind := range []string{"ServiceMonitor", "PrometheusRule"} {
				if o := find(objs, kind, ""); o == nil || o.GetLabels()["release"] != "kps" {
					t.Errorf("%s lacks the label release=kps a Prometheus selects it by", kind)
				}
			}
		},
	}, {
		// One replica gets no PodDisruptionBudget: minAvailable 1 of one pod would block every drain.
		name:   "one replica",
		values: map[string]any{"replicas": 1},
		check: func(t *testing.T, objs []*unstructured.Unstructured, _ string) {
			checkAvailability(t, objs, 1, false)
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

// checkAvailability checks the manager's replicas, leader election, its spread over nodes and,
// with pdb, a PodDisruptionBudget keeping one replica, each selecting the manager's pods.
func checkAvailability(t *testing.T, objs []*unstructured.Unstructured, replicas int64, pdb bool) {
	t.Helper()
	deploy := find(objs, "Deployment", fullname)
	if got, _, _ := unstructured.NestedInt64(deploy.Object, "spec", "replicas"); got != replicas {
		t.Errorf("replicas %d, want %d", got, replicas)
	}
	if args := deploymentArgs(t, deploy); !slices.Contains(args, "--leader-elect") {
		t.Errorf("manager args %v lack --leader-elect", args)
	}
	podLabels, _, _ := unstructured.NestedStringMap(deploy.Object, "spec", "template", "metadata", "labels")
	selects := func(what string, sel *metav1.LabelSelector) {
		t.Helper()
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil || s.Empty() || !s.Matches(labels.Set(podLabels)) {
			t.Errorf("%s selects %v (%v), not the manager's pods (%v)", what, sel, err, podLabels)
		}
	}
	var pod corev1.PodSpec
	spec, _, _ := unstructured.NestedMap(deploy.Object, "spec", "template", "spec")
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(spec, &pod); err != nil {
		t.Fatal(err)
	}
	if len(pod.TopologySpreadConstraints) != 1 {
		t.Fatalf("topologySpreadConstraints %+v, want one", pod.TopologySpreadConstraints)
	}
	c := pod.TopologySpreadConstraints[0]
	if c.TopologyKey != corev1.LabelHostname || c.WhenUnsatisfiable != corev1.ScheduleAnyway || c.MaxSkew != 1 {
		t.Errorf("topology spread %+v, want maxSkew 1 over %s, ScheduleAnyway", c, corev1.LabelHostname)
	}
	selects("the topology spread", c.LabelSelector)
	o := find(objs, "PodDisruptionBudget", fullname)
	if !pdb {
		if o != nil {
			t.Errorf("PodDisruptionBudget %s rendered for %d replica(s)", o.GetName(), replicas)
		}
		return
	}
	if o == nil {
		t.Fatal("no PodDisruptionBudget")
	}
	var budget policyv1.PodDisruptionBudget
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &budget); err != nil {
		t.Fatal(err)
	}
	if budget.Spec.MinAvailable == nil || budget.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PodDisruptionBudget minAvailable %v, want 1", budget.Spec.MinAvailable)
	}
	selects("the PodDisruptionBudget", budget.Spec.Selector)
}

// checkMetrics checks that the manager serves its metrics as the metrics Service reaches them
// (scheme https: secure, with the ClusterRoles the manager and a scraper need).
func checkMetrics(t *testing.T, objs []*unstructured.Unstructured, ns, scheme string, port int64) {
	t.Helper()
	deploy := find(objs, "Deployment", fullname)
	secure := scheme == "https"
	args := deploymentArgs(t, deploy)
	for _, want := range []string{fmt.Sprintf("--metrics-secure=%t", secure), fmt.Sprintf("--metrics-bind-address=:%d", port)} {
		if !slices.Contains(args, want) {
			t.Errorf("manager args %v lack %s", args, want)
		}
	}
	var containerPort int32
	for _, p := range container(t, deploy).Ports {
		if p.Name == "metrics" {
			containerPort = p.ContainerPort
		}
	}
	if int64(containerPort) != port {
		t.Errorf("the manager's metrics port is %d, want %d", containerPort, port)
	}
	svc := find(objs, "Service", fullname+"-metrics-service")
	if svc == nil {
		t.Fatal("no metrics Service")
	}
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	wantPorts := []any{map[string]any{"name": scheme, "port": port, "protocol": "TCP", "targetPort": "metrics"}}
	if diff := cmp.Diff(normal(t, wantPorts), normal(t, ports)); diff != "" {
		t.Errorf("metrics Service ports (-want +got):\n%s", diff)
	}

	binding := find(objs, "ClusterRoleBinding", fullname+"-metrics-auth")
	reader := find(objs, "ClusterRole", fullname+"-metrics-reader")
	if !secure {
		if binding != nil || reader != nil {
			t.Error("metrics ClusterRoles rendered for plain HTTP metrics")
		}
		return
	}
	if binding == nil || reader == nil {
		t.Fatal("no metrics-auth ClusterRoleBinding or metrics-reader ClusterRole with secure metrics")
	}
	subjects, _, _ := unstructured.NestedSlice(binding.Object, "subjects")
	wantSubjects := []any{map[string]any{"kind": "ServiceAccount", "name": fullname, "namespace": ns}}
	if diff := cmp.Diff(wantSubjects, subjects); diff != "" {
		t.Errorf("the metrics-auth binding does not bind the manager's ServiceAccount (-want +got):\n%s", diff)
	}
	roleName, _, _ := unstructured.NestedString(binding.Object, "roleRef", "name")
	role := find(objs, "ClusterRole", roleName)
	if role == nil {
		t.Fatalf("the metrics-auth binding names ClusterRole %q, which the chart does not render", roleName)
	}
	for _, want := range []struct {
		role  *unstructured.Unstructured
		rules []any
	}{
		{role, []any{
			map[string]any{"apiGroups": []any{"authentication.k8s.io"}, "resources": []any{"tokenreviews"}, "verbs": []any{"create"}},
			map[string]any{"apiGroups": []any{"authorization.k8s.io"}, "resources": []any{"subjectaccessreviews"}, "verbs": []any{"create"}},
		}},
		{reader, []any{map[string]any{"nonResourceURLs": []any{"/metrics"}, "verbs": []any{"get"}}}},
	} {
		if diff := cmp.Diff(want.rules, want.role.Object["rules"]); diff != "" {
			t.Errorf("ClusterRole %s rules (-want +got):\n%s", want.role.GetName(), diff)
		}
	}
}

// checkServiceMonitor checks what the API server cannot (envtest lacks the Prometheus Operator's
// CRDs): that the ServiceMonitor selects the metrics Service and no other, and scrapes its port
// with its scheme. It returns the endpoint.
func checkServiceMonitor(t *testing.T, objs []*unstructured.Unstructured, ns string) map[string]any {
	t.Helper()
	mon := find(objs, "ServiceMonitor", fullname+"-metrics-monitor")
	if mon == nil {
		t.Fatal("no ServiceMonitor with metrics.serviceMonitor.enabled")
	}
	if mon.GetNamespace() != ns {
		t.Errorf("the ServiceMonitor is in namespace %q, want %s", mon.GetNamespace(), ns)
	}
	selector, _, _ := unstructured.NestedStringMap(mon.Object, "spec", "selector", "matchLabels")
	if len(selector) == 0 {
		t.Fatal("the ServiceMonitor selects every Service")
	}
	var selected []string
	for _, o := range objs {
		if o.GetKind() != "Service" {
			continue
		}
		labels := o.GetLabels()
		if !slices.ContainsFunc(slices.Collect(maps.Keys(selector)), func(k string) bool { return labels[k] != selector[k] }) {
			selected = append(selected, o.GetName())
		}
	}
	if want := []string{fullname + "-metrics-service"}; !slices.Equal(selected, want) {
		t.Errorf("the ServiceMonitor (%v) selects the Services %v, want %v", selector, selected, want)
	}
	endpoints, _, _ := unstructured.NestedSlice(mon.Object, "spec", "endpoints")
	if len(endpoints) != 1 {
		t.Fatalf("the ServiceMonitor has %d endpoints, want 1", len(endpoints))
	}
	endpoint := endpoints[0].(map[string]any)
	ports, _, _ := unstructured.NestedSlice(find(objs, "Service", fullname+"-metrics-service").Object, "spec", "ports")
	portName := ""
	if len(ports) > 0 {
		portName, _ = ports[0].(map[string]any)["name"].(string)
	}
	if endpoint["port"] != portName || endpoint["scheme"] != portName || endpoint["path"] != "/metrics" {
		t.Errorf("the ServiceMonitor endpoint %v does not scrape /metrics on the Service's port %q with its scheme", endpoint, portName)
	}
	return endpoint
}

// overlayObject is the one object of a kind in a file of the overlays.
func overlayObject(t *testing.T, path, kind string) *unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), path))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decode(path, string(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].GetKind() != kind {
		t.Fatalf("%s holds %d objects, want one %s", path, len(objs), kind)
	}
	return objs[0]
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
		{"ServiceMonitor without metrics", map[string]any{"metrics": map[string]any{"enabled": false, "serviceMonitor": map[string]any{"enabled": true}}}, "metrics.serviceMonitor.enabled"},
		{"alerts without metrics", map[string]any{"metrics": map[string]any{"enabled": false, "prometheusRule": map[string]any{"enabled": true}}}, "metrics.prometheusRule.enabled"},
		{"dashboard without metrics", map[string]any{"metrics": map[string]any{"enabled": false, "dashboard": map[string]any{"enabled": true}}}, "metrics.dashboard.enabled"},
		{"metrics certificate for plain HTTP", map[string]any{"metrics": map[string]any{"secure": false, "certSecret": "metrics-cert"}}, "metrics.certSecret"},
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

	for file, source := range map[string]struct {
		path, kind string
		field      []string
	}{
		"files/manager-role-rules.yaml":        {"config/rbac/role.yaml", "ClusterRole", []string{"rules"}},
		"files/metrics-auth-role-rules.yaml":   {"config/rbac/metrics_auth_role.yaml", "ClusterRole", []string{"rules"}},
		"files/metrics-reader-role-rules.yaml": {"config/rbac/metrics_reader_role.yaml", "ClusterRole", []string{"rules"}},
		"files/servicemonitor-endpoints.yaml":  {"config/prometheus/monitor.yaml", "ServiceMonitor", []string{"spec", "endpoints"}},
		"files/prometheus-rule-groups.yaml":    {"config/prometheus/alerts.yaml", "PrometheusRule", []string{"spec", "groups"}},
		"files/mutating-webhooks.yaml":         {"config/webhook/manifests.yaml", "MutatingWebhookConfiguration", []string{"webhooks"}},
		"files/validating-webhooks.yaml":       {"config/webhook/manifests.yaml", "ValidatingWebhookConfiguration", []string{"webhooks"}},
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
				want, _, _ = unstructured.NestedFieldNoCopy(o.Object, source.field...)
			}
		}
		var got any
		if err := sigsyaml.Unmarshal(chartFile(t, ch, file), &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(normal(t, want), normal(t, got)); diff != "" {
			t.Errorf("%s differs from %s; run make manifests (-source +chart):\n%s", file, source.path, diff)
		}
	}

	dashboard, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "grafana", "clusterstack-operator.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(chartFile(t, ch, "files/clusterstack-operator.json"), dashboard) {
		t.Error("files/clusterstack-operator.json differs from config/grafana/clusterstack-operator.json; run make manifests")
	}
}

// chartFile is the content of a file of the chart outside templates/ and crds/.
func chartFile(t *testing.T, ch *chart.Chart, name string) []byte {
	t.Helper()
	for _, f := range ch.Files {
		if f.Name == name {
			return f.Data
		}
	}
	t.Fatalf("the chart has no %s; run make manifests", name)
	return nil
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
