package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// validationCase is one manifest and the refusal it must get (none: it must be accepted).
type validationCase struct {
	name    string
	obj     string
	wantErr []string
}

func runValidationCases(t *testing.T, cases []validationCase) {
	t.Helper()
	ns := newNamespace(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := create(t, tc.obj, ns)
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

func TestClusterStackReleaseValidation(t *testing.T) {
	t.Parallel()
	providerRef := "  providerRef:\n    apiVersion: infrastructure.clusterstack.x-k8s.io/v1alpha1\n    kind: OpenStackClusterStackRelease\n    name: %s\n"
	runValidationCases(t, []validationCase{
		{name: "stable release", obj: manifest(csAPI, "ClusterStackRelease", "openstack-scs-1-32-v1", fmt.Sprintf(providerRef, "openstack-scs-1-32-v1"))},
		{name: "hash release", obj: manifest(csAPI, "ClusterStackRelease", "docker-scs-1-34-v0-sha-lvlvyfw", "  {}\n")},
		{name: "pre-release", obj: manifest(csAPI, "ClusterStackRelease", "openstack-scs-1-32-v1-alpha-1", "  {}\n")},
		{name: "two-digit major", obj: manifest(csAPI, "ClusterStackRelease", "openstack-scs-10-2-v3", "  {}\n")},
		{name: "not a release name", obj: manifest(csAPI, "ClusterStackRelease", "my-release", "  {}\n"), wantErr: []string{"the name must be a release name <provider>-<stack>-<major>-<minor>-<version>"}},
		{name: "dotted hash name", obj: manifest(csAPI, "ClusterStackRelease", "docker-scs-1-34-v0-sha.lvlvyfw", "  {}\n"), wantErr: []string{"the name must be a release name"}},
		{name: "dash in provider", obj: manifest(csAPI, "ClusterStackRelease", "open-stack-scs-1-32-v1", "  {}\n"), wantErr: []string{"the name must be a release name"}},
		{name: "nine-digit version", obj: manifest(csAPI, "ClusterStackRelease", "openstack-scs-1-32-v999999999", "  {}\n")},
		{name: "huge version", obj: manifest(csAPI, "ClusterStackRelease", "openstack-scs-1-32-v99999999999999999999999999999", "  {}\n"), wantErr: []string{"the name must be a release name"}},
		{name: "huge pre-release number", obj: manifest(csAPI, "ClusterStackRelease", "openstack-scs-1-32-v1-alpha-99999999999999999999", "  {}\n"), wantErr: []string{"the name must be a release name"}},
		{name: "huge Kubernetes minor", obj: manifest(csAPI, "ClusterStackRelease", "openstack-scs-1-99999999999999999999-v1", "  {}\n"), wantErr: []string{"the name must be a release name"}},
	})
}

func TestClusterAddonValidation(t *testing.T) {
	t.Parallel()
	spec := "  clusterStack: openstack-scs-1-32-v1\n  version: v1\n  hook: %s\n  clusterRef:\n    apiVersion: cluster.x-k8s.io/v1beta2\n    kind: Cluster\n    name: workload\n    namespace: ns\n"
	runValidationCases(t, []validationCase{
		{name: "reference sample", obj: manifest(csAPI, "ClusterAddon", "cluster-addon-workload", fmt.Sprintf(spec, "AfterControlPlaneInitialized"))},
		{name: "no hook", obj: manifest(csAPI, "ClusterAddon", "cluster-addon-w2", fmt.Sprintf(spec, `""`))},
		{name: "unknown hook", obj: manifest(csAPI, "ClusterAddon", "cluster-addon-w3", fmt.Sprintf(spec, "AfterEverything")), wantErr: []string{"spec.hook: Unsupported value"}},
		{name: "missing clusterRef", obj: manifest(csAPI, "ClusterAddon", "cluster-addon-w4", "  version: v1\n"), wantErr: []string{"spec.clusterRef: Required value"}},
	})

	t.Run("clusterRef name is immutable", func(t *testing.T) {
		ns := newNamespace(t)
		obj, err := create(t, manifest(csAPI, "ClusterAddon", "cluster-addon-workload", fmt.Sprintf(spec, "BeforeClusterUpgrade")), ns)
		if err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedField(obj.Object, "other", "spec", "clusterRef", "name"); err != nil {
			t.Fatal(err)
		}
		expectRefused(t, env.Client.Update(context.Background(), obj), "clusterRef name and kind are immutable")
	})
}

// nodeImageSpec is a valid OpenStackNodeImageRelease spec in the reference format.
const nodeImageSpec = `  identityRef:
    kind: Secret
    name: openstack
  image:
    url: https://example.org/images/ubuntu-2204-kube-v1.30.9.qcow2
    createOpts:
      name: ubuntu-capi-image-v1.30.9
      id: 1bea47ed-f6a9-463b-b423-14b9cca9ad27
      disk_format: qcow2
      container_format: bare
      visibility: private
      os_hidden: false
      tags: [capi]
      min_disk: 20
      min_ram: 1024
      protected: false
      properties:
        os_distro: ubuntu
`

func TestOpenStackNodeImageReleaseValidation(t *testing.T) {
	t.Parallel()
	obj := func(name, spec string) string { return manifest(infraAPI, "OpenStackNodeImageRelease", name, spec) }
	sha256 := strings.Repeat("ab", 32)
	sha512 := strings.Repeat("cd", 64)
	runValidationCases(t, []validationCase{
		{name: "reference sample", obj: obj("openstack-scs-1-30-ubuntu-capi-image-v1.30.9-v1", nodeImageSpec)},
		{name: "sha256 hash and keep", obj: obj("hash256", nodeImageSpec+"    hash:\n      algorithm: sha256\n      value: "+sha256+"\n  deletionPolicy: keep\n")},
		{name: "sha512 hash", obj: obj("hash512", nodeImageSpec+"    hash:\n      algorithm: sha512\n      value: "+sha512+"\n")},
		{name: "ftp url", obj: obj("ftp", strings.Replace(nodeImageSpec, "https://example.org", "ftp://example.org", 1)), wantErr: []string{"url must be an http(s) URL of the image file"}},
		{name: "not a url", obj: obj("notaurl", strings.Replace(nodeImageSpec, "https://example.org/images/ubuntu-2204-kube-v1.30.9.qcow2", "ubuntu.qcow2", 1)), wantErr: []string{"url must be an http(s) URL"}},
		{name: "missing createOpts name", obj: obj("noname", strings.Replace(nodeImageSpec, "      name: ubuntu-capi-image-v1.30.9\n", "", 1)), wantErr: []string{"spec.image.createOpts.name: Required value"}},
		{name: "bad visibility", obj: obj("vis", strings.Replace(nodeImageSpec, "visibility: private", "visibility: everyone", 1)), wantErr: []string{"spec.image.createOpts.visibility: Unsupported value"}},
		{name: "bad disk format", obj: obj("disk", strings.Replace(nodeImageSpec, "disk_format: qcow2", "disk_format: exe", 1)), wantErr: []string{"spec.image.createOpts.disk_format: Unsupported value"}},
		{name: "bad container format", obj: obj("container", strings.Replace(nodeImageSpec, "container_format: bare", "container_format: zip", 1)), wantErr: []string{"spec.image.createOpts.container_format: Unsupported value"}},
		{name: "bad id", obj: obj("id", strings.Replace(nodeImageSpec, "1bea47ed-f6a9-463b-b423-14b9cca9ad27", "image-1", 1)), wantErr: []string{"id must be a UUID"}},
		{name: "negative min_disk", obj: obj("mindisk", strings.Replace(nodeImageSpec, "min_disk: 20", "min_disk: -1", 1)), wantErr: []string{"spec.image.createOpts.min_disk"}},
		{name: "hash length", obj: obj("hashlen", nodeImageSpec+"    hash:\n      algorithm: sha256\n      value: "+sha512+"\n"), wantErr: []string{"a sha256 hash value has 64 hexadecimal characters"}},
		{name: "sha512 hash length", obj: obj("hashlen512", nodeImageSpec+"    hash:\n      algorithm: sha512\n      value: "+sha256+"\n"), wantErr: []string{"a sha512 hash value has 128 hexadecimal characters"}},
		{name: "hash case", obj: obj("hashcase", nodeImageSpec+"    hash:\n      algorithm: sha256\n      value: "+strings.ToUpper(sha256)+"\n"), wantErr: []string{"hash value must be lowercase hexadecimal"}},
		{name: "hash algorithm", obj: obj("hashalgo", nodeImageSpec+"    hash:\n      algorithm: md5\n      value: "+sha256[:32]+"\n"), wantErr: []string{"spec.image.hash.algorithm: Unsupported value"}},
		{name: "deletion policy", obj: obj("policy", nodeImageSpec+"  deletionPolicy: purge\n"), wantErr: []string{"spec.deletionPolicy: Unsupported value"}},
		{name: "identity kind", obj: obj("kind", strings.Replace(nodeImageSpec, "kind: Secret", "kind: ConfigMap", 1)), wantErr: []string{"spec.identityRef.kind: Unsupported value"}},
		{name: "missing identityRef", obj: obj("noidentity", strings.Replace(nodeImageSpec, "  identityRef:\n    kind: Secret\n    name: openstack\n", "", 1)), wantErr: []string{"spec.identityRef: Required value"}},
	})
}

func TestOpenStackClusterStackReleaseDefaults(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	cases := []struct {
		name, obj string
		path      []string
	}{
		{
			name: "release",
			obj:  manifest(infraAPI, "OpenStackClusterStackRelease", "openstack-scs-1-32-v1", "  {}\n"),
			path: []string{"spec", "identityRef"},
		},
		{
			name: "template",
			obj:  manifest(infraAPI, "OpenStackClusterStackReleaseTemplate", "cspotemplate", "  template:\n    spec: {}\n"),
			path: []string{"spec", "template", "spec", "identityRef"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := create(t, tc.obj, ns)
			if err != nil {
				t.Fatal(err)
			}
			ref, ok := nested(t, obj, tc.path...).(map[string]any)
			if !ok || ref["kind"] != "Secret" || ref["name"] != "openstack" {
				t.Fatalf("%s defaulted to %v, want {kind: Secret, name: openstack}", strings.Join(tc.path, "."), ref)
			}
		})
	}
}
