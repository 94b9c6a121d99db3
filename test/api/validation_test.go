package api_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

func keyOf(obj client.Object) client.ObjectKey { return client.ObjectKeyFromObject(obj) }

var namespaceSeq atomic.Int64

// newNamespace creates a namespace of its own for a test, so that tests never see each other's
// objects.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("api-%d", namespaceSeq.Add(1))}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return ns.Name
}

// parse turns a YAML manifest into an object in the given namespace.
func parse(t *testing.T, manifest, namespace string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(manifest), &obj.Object); err != nil {
		t.Fatalf("parsing manifest: %v\n%s", err, manifest)
	}
	obj.SetNamespace(namespace)
	return obj
}

// create applies a manifest as a user would, through the API server's validation.
func create(t *testing.T, manifest, namespace string) (*unstructured.Unstructured, error) {
	t.Helper()
	obj := parse(t, manifest, namespace)
	err := env.Client.Create(context.Background(), obj)
	return obj, err
}

// expectRefused fails unless err is a refusal that carries every given message part.
func expectRefused(t *testing.T, err error, wantParts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("the API server accepted the object; want a refusal mentioning %q", wantParts)
	}
	for _, part := range wantParts {
		if !strings.Contains(err.Error(), part) {
			t.Fatalf("refusal %q does not mention %q", err.Error(), part)
		}
	}
}

// nested reads a field of a stored object.
func nested(t *testing.T, obj *unstructured.Unstructured, fields ...string) any {
	t.Helper()
	v, found, err := unstructured.NestedFieldNoCopy(obj.Object, fields...)
	if err != nil || !found {
		t.Fatalf("field %s not found in %s: %v", strings.Join(fields, "."), obj.GetName(), err)
	}
	return v
}

// manifest returns a manifest of kind with the given spec lines (YAML, indented by two spaces).
func manifest(apiVersion, kind, name, spec string) string {
	return fmt.Sprintf("apiVersion: %s\nkind: %s\nmetadata:\n  name: %s\nspec:\n%s", apiVersion, kind, name, spec)
}

const (
	csAPI    = "clusterstack.x-k8s.io/v1alpha1"
	infraAPI = "infrastructure.clusterstack.x-k8s.io/v1alpha1"
)

// clusterStack is a valid ClusterStack spec; cases change it line by line.
const clusterStackSpec = `  provider: openstack
  name: scs
  kubernetesVersion: "1.32"
  channel: stable
  autoSubscribe: false
  providerRef:
    apiVersion: infrastructure.clusterstack.x-k8s.io/v1alpha1
    kind: OpenStackClusterStackReleaseTemplate
    name: cspotemplate
  versions:
  - v1
  - v2
`

func TestClusterStackValidation(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	cases := []struct {
		name string
		spec string
		// wantErr lists parts of the expected refusal; empty means the object must be accepted.
		wantErr []string
	}{
		{name: "reference sample", spec: clusterStackSpec},
		{name: "two-digit major", spec: strings.Replace(clusterStackSpec, `"1.32"`, `"10.2"`, 1)},
		{name: "no provider", spec: "  provider: docker\n  name: scs\n  kubernetesVersion: \"1.33\"\n  noProvider: true\n"},
		{name: "custom channel hash version", spec: "  provider: docker\n  name: scs\n  kubernetesVersion: \"1.34\"\n  channel: custom\n  noProvider: true\n  versions: [v0-sha.lvlvyfw]\n"},
		{name: "nine-digit stable version", spec: strings.Replace(clusterStackSpec, "  - v2\n", "  - v999999999\n", 1)},
		{name: "alpha channel", spec: "  provider: docker\n  name: scs\n  kubernetesVersion: \"1.34\"\n  channel: alpha\n  noProvider: true\n  versions: [v1-alpha.0, v2-alpha.10]\n"},
		{name: "oci source", spec: clusterStackSpec + "  source:\n    oci:\n      registry: registry.example.org:5000\n      repository: kaas/cluster-stacks\n    secretRef:\n      name: creds\n    checkInterval: 10m\n"},
		{name: "github source", spec: clusterStackSpec + "  source:\n    github:\n      owner: SovereignCloudStack\n      repository: cluster-stacks\n      apiURL: https://github.example.org/api/v3\n"},
		{name: "local source", spec: clusterStackSpec + "  source:\n    local:\n      path: /releases\n"},

		{name: "provider with dash", spec: strings.Replace(clusterStackSpec, "provider: openstack", "provider: open-stack", 1), wantErr: []string{"provider must be lowercase letters and digits only"}},
		{name: "uppercase name", spec: strings.Replace(clusterStackSpec, "name: scs", "name: SCS", 1), wantErr: []string{"name must be lowercase letters and digits only"}},
		{name: "empty provider", spec: strings.Replace(clusterStackSpec, "provider: openstack", `provider: ""`, 1), wantErr: []string{"spec.provider"}},
		{name: "missing kubernetesVersion", spec: strings.Replace(clusterStackSpec, "  kubernetesVersion: \"1.32\"\n", "", 1), wantErr: []string{"spec.kubernetesVersion: Required value"}},
		{name: "kubernetesVersion with v", spec: strings.Replace(clusterStackSpec, `"1.32"`, `"v1.32"`, 1), wantErr: []string{"kubernetesVersion must be <major>.<minor>"}},
		{name: "kubernetesVersion with patch", spec: strings.Replace(clusterStackSpec, `"1.32"`, `"1.32.5"`, 1), wantErr: []string{"kubernetesVersion must be <major>.<minor>"}},
		{name: "unknown channel", spec: strings.Replace(clusterStackSpec, "channel: stable", "channel: nightly", 1), wantErr: []string{"spec.channel: Unsupported value"}},
		{name: "hash version in stable", spec: strings.Replace(clusterStackSpec, "  - v2\n", "  - v0-sha.abc1234\n", 1), wantErr: []string{"versions of the stable channel look like v1"}},
		{name: "huge stable version", spec: strings.Replace(clusterStackSpec, "  - v2\n", "  - v99999999999999999999999999999\n", 1), wantErr: []string{"versions of the stable channel look like v1"}},
		{name: "ten-digit stable version", spec: strings.Replace(clusterStackSpec, "  - v2\n", "  - v1000000000\n", 1), wantErr: []string{"versions of the stable channel look like v1"}},
		{name: "huge pre-release number", spec: "  provider: docker\n  name: scs\n  kubernetesVersion: \"1.34\"\n  channel: alpha\n  noProvider: true\n  versions: [v1-alpha.99999999999999999999]\n", wantErr: []string{"versions of a pre-release channel"}},
		{name: "malformed stable version", spec: strings.Replace(clusterStackSpec, "  - v2\n", "  - \"2\"\n", 1), wantErr: []string{"versions of the stable channel look like v1"}},
		{name: "stable version in custom", spec: strings.Replace(clusterStackSpec, "channel: stable", "channel: custom", 1), wantErr: []string{"versions of the custom channel look like v0-sha.abc1234"}},
		{name: "short hash in custom", spec: "  provider: docker\n  name: scs\n  kubernetesVersion: \"1.34\"\n  channel: custom\n  noProvider: true\n  versions: [v0-sha.abc]\n", wantErr: []string{"versions of the custom channel"}},
		{name: "beta version in alpha", spec: "  provider: docker\n  name: scs\n  kubernetesVersion: \"1.34\"\n  channel: alpha\n  noProvider: true\n  versions: [v1-beta.0]\n", wantErr: []string{"versions of a pre-release channel look like v1-<channel>.0"}},
		{name: "missing providerRef", spec: strings.Replace(clusterStackSpec, "  providerRef:\n    apiVersion: infrastructure.clusterstack.x-k8s.io/v1alpha1\n    kind: OpenStackClusterStackReleaseTemplate\n    name: cspotemplate\n", "", 1), wantErr: []string{"providerRef is required unless noProvider is true"}},
		{name: "duplicate versions", spec: strings.Replace(clusterStackSpec, "  - v2\n", "  - v1\n", 1), wantErr: []string{"Duplicate value"}},
		{name: "two sources", spec: clusterStackSpec + "  source:\n    local:\n      path: /releases\n    oci:\n      registry: r.example.org\n      repository: stacks\n", wantErr: []string{"set exactly one of source.oci, source.github or source.local"}},
		{name: "no source kind", spec: clusterStackSpec + "  source:\n    checkInterval: 10m\n", wantErr: []string{"set exactly one of source.oci, source.github or source.local"}},
		{name: "registry with scheme", spec: clusterStackSpec + "  source:\n    oci:\n      registry: https://r.example.org\n      repository: stacks\n", wantErr: []string{"registry must be a host name with an optional port"}},
		{name: "uppercase repository", spec: clusterStackSpec + "  source:\n    oci:\n      registry: r.example.org\n      repository: Stacks\n", wantErr: []string{"repository must be a lowercase OCI repository path"}},
		{name: "relative local path", spec: clusterStackSpec + "  source:\n    local:\n      path: releases\n", wantErr: []string{"path must be absolute"}},
		{name: "secret with local", spec: clusterStackSpec + "  source:\n    local:\n      path: /releases\n    secretRef:\n      name: creds\n", wantErr: []string{"source.secretRef is not used with source.local"}},
		{name: "tight check interval", spec: clusterStackSpec + "  source:\n    local:\n      path: /releases\n    checkInterval: 5s\n", wantErr: []string{"checkInterval must be at least 30s"}},
		{name: "github owner", spec: clusterStackSpec + "  source:\n    github:\n      owner: -org-\n      repository: r\n", wantErr: []string{"owner must be a GitHub organisation or user name"}},
		{name: "github repository", spec: clusterStackSpec + "  source:\n    github:\n      owner: org\n      repository: a/b\n", wantErr: []string{"repository must be a GitHub repository name"}},
		{name: "github api url not a url", spec: clusterStackSpec + "  source:\n    github:\n      owner: o\n      repository: r\n      apiURL: github.example.org\n", wantErr: []string{"apiURL must be an http(s) URL"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := create(t, manifest(csAPI, "ClusterStack", fmt.Sprintf("cs-%d", i), tc.spec), ns)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("want the object accepted, got %v", err)
				}
				return
			}
			expectRefused(t, err, tc.wantErr...)
		})
	}
}

func TestClusterStackDefaults(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	obj, err := create(t, manifest(csAPI, "ClusterStack", "defaults", "  provider: openstack\n  name: scs\n  kubernetesVersion: \"1.32\"\n  providerRef:\n    name: t\n"), ns)
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]any{"channel": "stable", "autoSubscribe": true, "noProvider": false} {
		if got := nested(t, obj, "spec", field); got != want {
			t.Errorf("spec.%s defaulted to %v, want %v", field, got, want)
		}
	}
}

func TestClusterStackImmutableFields(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	cases := []struct {
		field, from, to, wantErr string
	}{
		{"provider", "provider: openstack", "provider: docker", "provider is immutable"},
		{"name", "name: scs", "name: scs2", "name is immutable"},
		{"kubernetesVersion", `kubernetesVersion: "1.32"`, `kubernetesVersion: "1.33"`, "kubernetesVersion is immutable"},
		{"channel", "channel: stable\n", "channel: custom\n  noProvider: true\n  versions: [v0-sha.abc1234]\n", "channel is immutable"},
	}
	for i, tc := range cases {
		t.Run(tc.field, func(t *testing.T) {
			name := fmt.Sprintf("immutable-%d", i)
			if _, err := create(t, manifest(csAPI, "ClusterStack", name, clusterStackSpec), ns); err != nil {
				t.Fatal(err)
			}
			changed := parse(t, manifest(csAPI, "ClusterStack", name, strings.Replace(clusterStackSpec, tc.from, tc.to, 1)), ns)
			current := parse(t, manifest(csAPI, "ClusterStack", name, clusterStackSpec), ns)
			if err := env.Client.Get(context.Background(), keyOf(current), current); err != nil {
				t.Fatal(err)
			}
			changed.SetResourceVersion(current.GetResourceVersion())
			expectRefused(t, env.Client.Update(context.Background(), changed), tc.wantErr)
		})
	}

	t.Run("versions stay mutable", func(t *testing.T) {
		if _, err := create(t, manifest(csAPI, "ClusterStack", "mutable", clusterStackSpec), ns); err != nil {
			t.Fatal(err)
		}
		current := parse(t, manifest(csAPI, "ClusterStack", "mutable", ""), ns)
		if err := env.Client.Get(context.Background(), keyOf(current), current); err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedStringSlice(current.Object, []string{"v3"}, "spec", "versions"); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Update(context.Background(), current); err != nil {
			t.Fatalf("changing versions: %v", err)
		}
	})
}
