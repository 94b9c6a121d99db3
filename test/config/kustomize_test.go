// Package config_test renders the kustomize overlays under config/ the way `kubectl apply -k`
// does and checks that what they install fits together: every CRD, the manager with its
// certificate, and webhook and runtime-extension services that match the certificate's names,
// also when the overlay is re-targeted to another namespace and name prefix.
package config_test

import (
	"path/filepath"
	"slices"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

func render(t *testing.T, overlay string) resmap.ResMap {
	t.Helper()
	return renderFS(t, filesys.MakeFsOnDisk(), filepath.Join(testenv.RepoRoot(), "config", overlay))
}

func renderFS(t *testing.T, fs filesys.FileSystem, dir string) resmap.ResMap {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(fs, dir)
	if err != nil {
		t.Fatalf("rendering %s: %v", dir, err)
	}
	return m
}

// find returns the one object of kind and name, as a map.
func find(t *testing.T, m resmap.ResMap, kind, name string) map[string]any {
	t.Helper()
	for _, r := range m.Resources() {
		if r.GetKind() == kind && r.GetName() == name {
			obj, err := r.Map()
			if err != nil {
				t.Fatal(err)
			}
			return obj
		}
	}
	t.Fatalf("no %s %s in the rendered manifests", kind, name)
	return nil
}

func get(obj map[string]any, path ...any) any {
	var cur any = obj
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := cur.(map[string]any)
			cur = m[k]
		case int:
			l, _ := cur.([]any)
			if k >= len(l) {
				return nil
			}
			cur = l[k]
		}
	}
	return cur
}

func strings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestDefaultOverlay(t *testing.T) {
	m := render(t, "default")

	crds := 0
	for _, r := range m.Resources() {
		if r.GetKind() == "CustomResourceDefinition" {
			crds++
		}
		if ns := r.GetNamespace(); ns != "" && ns != "clusterstack-system" {
			t.Errorf("%s %s is in namespace %q, want clusterstack-system", r.GetKind(), r.GetName(), ns)
		}
	}
	if crds != 7 {
		t.Errorf("rendered %d CRDs, want the 7 of the API", crds)
	}

	cert := find(t, m, "Certificate", "clusterstack-serving-cert")
	dnsNames := strings(get(cert, "spec", "dnsNames"))
	secret := get(cert, "spec", "secretName")

	deploy := find(t, m, "Deployment", "clusterstack-controller-manager")
	pod := get(deploy, "spec", "template", "spec").(map[string]any)
	mounted := false
	for _, v := range get(pod, "volumes").([]any) {
		if get(v.(map[string]any), "secret", "secretName") == secret {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("the manager does not mount the certificate's Secret %v", secret)
	}
	args := strings(get(pod, "containers", 0, "args"))
	for _, want := range []string{"--leader-elect", "--webhook-cert-dir=/tmp/k8s-webhook-server/serving-certs", "--webhook-port=9443", "--runtime-extension-port=9444"} {
		if !slices.Contains(args, want) {
			t.Errorf("manager args %v lack %s", args, want)
		}
	}

	checkAvailability(t, m, deploy)

	for _, kind := range []string{"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} {
		name := map[string]string{"ValidatingWebhookConfiguration": "clusterstack-validating-webhook-configuration", "MutatingWebhookConfiguration": "clusterstack-mutating-webhook-configuration"}[kind]
		wh := find(t, m, kind, name)
		if got := get(wh, "metadata", "annotations", "cert-manager.io/inject-ca-from"); got != "clusterstack-system/clusterstack-serving-cert" {
			t.Errorf("%s CA injection from %v, want the serving certificate", kind, got)
		}
		for i, w := range get(wh, "webhooks").([]any) {
			svc := get(w.(map[string]any), "clientConfig", "service").(map[string]any)
			host := svc["name"].(string) + "." + svc["namespace"].(string) + ".svc"
			if !slices.Contains(dnsNames, host) {
				t.Errorf("%s webhook %d calls %s, which the certificate (%v) does not name", kind, i, host, dnsNames)
			}
			find(t, m, "Service", svc["name"].(string))
		}
	}
}

func TestRuntimeExtensionOverlay(t *testing.T) {
	m := render(t, "default")
	ext := find(t, m, "ExtensionConfig", "clusterstack-operator")
	if got := get(ext, "metadata", "annotations", "cert-manager.io/inject-ca-from"); got != "clusterstack-system/clusterstack-serving-cert" {
		t.Errorf("ExtensionConfig CA injection from %v, want the serving certificate", got)
	}
	svc := get(ext, "spec", "clientConfig", "service").(map[string]any)
	host := svc["name"].(string) + "." + svc["namespace"].(string) + ".svc"
	cert := find(t, m, "Certificate", "clusterstack-serving-cert")
	if !slices.Contains(strings(get(cert, "spec", "dnsNames")), host) {
		t.Errorf("the ExtensionConfig calls %s, which the serving certificate does not name", host)
	}
	find(t, m, "Service", svc["name"].(string))
}

// checkAvailability checks that the webhooks' and hooks' server stays up through a pod's loss or
// a node drain: two replicas (leader election makes one reconcile), spread over nodes where
// possible, and a PodDisruptionBudget keeping one of them.
func checkAvailability(t *testing.T, m resmap.ResMap, deploy map[string]any) {
	t.Helper()
	if got := get(deploy, "spec", "replicas"); got != 2 {
		t.Errorf("manager replicas %v, want 2", got)
	}
	podLabels, _ := get(deploy, "spec", "template", "metadata", "labels").(map[string]any)
	selects := func(what string, selector any) {
		t.Helper()
		want, _ := selector.(map[string]any)
		if len(want) == 0 {
			t.Errorf("%s selects no pods", what)
		}
		for k, v := range want {
			if podLabels[k] != v {
				t.Errorf("%s selects %s=%v, which the manager's pods (%v) lack", what, k, v, podLabels)
			}
		}
	}
	spread, _ := get(deploy, "spec", "template", "spec", "topologySpreadConstraints").([]any)
	if len(spread) != 1 {
		t.Fatalf("topologySpreadConstraints %v, want one", spread)
	}
	c := spread[0].(map[string]any)
	if c["topologyKey"] != "kubernetes.io/hostname" || c["whenUnsatisfiable"] != "ScheduleAnyway" || c["maxSkew"] != 1 {
		t.Errorf("topology spread %v, want maxSkew 1 over kubernetes.io/hostname, ScheduleAnyway", c)
	}
	selects("the topology spread", get(c, "labelSelector", "matchLabels"))
	pdb := find(t, m, "PodDisruptionBudget", "clusterstack-controller-manager")
	if got := get(pdb, "spec", "minAvailable"); got != 1 {
		t.Errorf("PodDisruptionBudget minAvailable %v, want 1", got)
	}
	selects("the PodDisruptionBudget", get(pdb, "spec", "selector", "matchLabels"))
}
