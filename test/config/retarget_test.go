package config_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	gostrings "strings"
	"testing"

	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// retargeted renders config/default from an in-memory copy of config/ whose default overlay has
// another namespace and name prefix, the way a user re-targets the installation.
func retargeted(t *testing.T, namespace, prefix string) resmap.ResMap {
	t.Helper()
	root := filepath.Join(testenv.RepoRoot(), "config")
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if path == filepath.Join(root, "default", "kustomization.yaml") {
			var k map[string]any
			if err := yaml.Unmarshal(data, &k); err != nil {
				return err
			}
			k["namespace"], k["namePrefix"] = namespace, prefix
			if data, err = yaml.Marshal(k); err != nil {
				return err
			}
		}
		return mem.WriteFile(path, data)
	})
	if err != nil {
		t.Fatalf("copying config/: %v", err)
	}
	return renderFS(t, mem, filepath.Join(root, "default"))
}

// TestOverlayReferences checks that every reference between the installed objects holds, in the
// default overlay and in one re-targeted to another namespace and name prefix: the webhook
// configurations' services and CA injection, the certificate's DNS names, the ExtensionConfig's
// service and CA injection, the RBAC subjects and role references, the manager's service account
// and certificate Secret.
func TestOverlayReferences(t *testing.T) {
	tests := []struct {
		name, namespace, prefix string
		render                  func(t *testing.T) resmap.ResMap
	}{{
		name: "default", namespace: "clusterstack-system", prefix: "clusterstack-",
		render: func(t *testing.T) resmap.ResMap { return render(t, "default") },
	}, {
		name: "other namespace and prefix", namespace: "platform-operators", prefix: "cso-",
		render: func(t *testing.T) resmap.ResMap { return retargeted(t, "platform-operators", "cso-") },
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.render(t)
			for _, r := range m.Resources() {
				if ns := r.GetNamespace(); ns != "" && ns != tt.namespace {
					t.Errorf("%s %s is in namespace %q, want %s", r.GetKind(), r.GetName(), ns, tt.namespace)
				}
				if r.GetKind() == "Namespace" && r.GetName() != tt.namespace {
					t.Errorf("the overlay creates namespace %s, want %s", r.GetName(), tt.namespace)
				}
				for _, v := range r.GetAnnotations() {
					if tt.namespace != "clusterstack-system" && gostrings.Contains(v, "clusterstack-system") {
						t.Errorf("%s %s still names clusterstack-system: %s", r.GetKind(), r.GetName(), v)
					}
				}
			}

			cert := find(t, m, "Certificate", tt.prefix+"serving-cert")
			if got := get(cert, "metadata", "namespace"); got != tt.namespace {
				t.Fatalf("the certificate is in %v, want %s", got, tt.namespace)
			}
			caFrom := tt.namespace + "/" + tt.prefix + "serving-cert"
			dnsNames := strings(get(cert, "spec", "dnsNames"))
			var wantDNS []string
			for _, svc := range []string{"webhook-service", "runtime-extension"} {
				host := tt.prefix + svc + "." + tt.namespace + ".svc"
				wantDNS = append(wantDNS, host, host+".cluster.local")
			}
			if !slices.Equal(dnsNames, wantDNS) {
				t.Errorf("certificate DNS names %v, want %v", dnsNames, wantDNS)
			}
			// service checks that a clientConfig's service is rendered and named by the certificate.
			service := func(what string, svc map[string]any) {
				t.Helper()
				name, _ := svc["name"].(string)
				ns, _ := svc["namespace"].(string)
				if ns != tt.namespace {
					t.Errorf("%s calls a service in %q, want %s", what, ns, tt.namespace)
				}
				find(t, m, "Service", name)
				if host := name + "." + ns + ".svc"; !slices.Contains(dnsNames, host) {
					t.Errorf("%s calls %s, which the certificate (%v) does not name", what, host, dnsNames)
				}
			}

			for _, kind := range []string{"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} {
				wh := find(t, m, kind, tt.prefix+map[string]string{"ValidatingWebhookConfiguration": "validating-webhook-configuration", "MutatingWebhookConfiguration": "mutating-webhook-configuration"}[kind])
				if got := get(wh, "metadata", "annotations", "cert-manager.io/inject-ca-from"); got != caFrom {
					t.Errorf("%s CA injection from %v, want %s", kind, got, caFrom)
				}
				for i, w := range get(wh, "webhooks").([]any) {
					service(fmt.Sprintf("%s webhook %d", kind, i), get(w.(map[string]any), "clientConfig", "service").(map[string]any))
				}
			}

			ext := find(t, m, "ExtensionConfig", tt.prefix+"operator")
			if got := get(ext, "metadata", "annotations", "cert-manager.io/inject-ca-from"); got != caFrom {
				t.Errorf("ExtensionConfig CA injection from %v, want %s", got, caFrom)
			}
			service("the ExtensionConfig", get(ext, "spec", "clientConfig", "service").(map[string]any))

			for _, r := range m.Resources() {
				if r.GetKind() != "RoleBinding" && r.GetKind() != "ClusterRoleBinding" {
					continue
				}
				b, err := r.Map()
				if err != nil {
					t.Fatal(err)
				}
				roleRef := get(b, "roleRef").(map[string]any)
				find(t, m, roleRef["kind"].(string), roleRef["name"].(string))
				for _, s := range get(b, "subjects").([]any) {
					s := s.(map[string]any)
					if s["kind"] != "ServiceAccount" {
						continue
					}
					if s["namespace"] != tt.namespace {
						t.Errorf("%s %s binds service account %v in %v, want %s", r.GetKind(), r.GetName(), s["name"], s["namespace"], tt.namespace)
					}
					find(t, m, "ServiceAccount", s["name"].(string))
				}
			}

			deploy := find(t, m, "Deployment", tt.prefix+"controller-manager")
			pod := get(deploy, "spec", "template", "spec").(map[string]any)
			find(t, m, "ServiceAccount", pod["serviceAccountName"].(string))
			mounted := false
			for _, v := range get(pod, "volumes").([]any) {
				if get(v.(map[string]any), "secret", "secretName") == get(cert, "spec", "secretName") {
					mounted = true
				}
			}
			if !mounted {
				t.Errorf("the manager does not mount the certificate's Secret %v", get(cert, "spec", "secretName"))
			}
		})
	}
}
