package capability

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
)

// scsClass is shaped like the published openstack/scs stack (v1beta1 references, snake_case
// variables, patches guarded by enabledIf templates on the variables).
const scsClass = `
apiVersion: cluster.x-k8s.io/v1beta1
kind: ClusterClass
metadata: {name: openstack-scs-1-32-v1}
spec:
  controlPlane:
    machineInfrastructure:
      ref: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta1, kind: OpenStackMachineTemplate, name: cc-control-plane}
  infrastructure:
    ref: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta1, kind: OpenStackClusterTemplate, name: cc-cluster}
  workers:
    machineDeployments:
    - class: default-worker
      template:
        infrastructure:
          ref: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta1, kind: OpenStackMachineTemplate, name: cc-default-worker}
  variables:
  - {name: external_id, required: false, schema: {openAPIV3Schema: {type: string}}}
  - {name: controller_flavor, required: false, schema: {openAPIV3Schema: {type: string, default: SCS-2V-4-20s}}}
  - {name: worker_flavor, required: false, schema: {openAPIV3Schema: {type: string, default: SCS-2V-4}}}
  - {name: controller_root_disk, required: false, schema: {openAPIV3Schema: {type: integer}}}
  - {name: worker_root_disk, required: false, schema: {openAPIV3Schema: {type: integer, default: 25}}}
  - {name: apiserver_loadbalancer, required: false, schema: {openAPIV3Schema: {type: string, default: octavia-amphora}}}
  patches:
  - name: k8s_version
    definitions:
    - selector: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta1, kind: OpenStackMachineTemplate, matchResources: {controlPlane: true, machineDeploymentClass: {names: [default-worker]}}}
      jsonPatches:
      - {op: replace, path: /spec/template/spec/image/filter/name, valueFrom: {template: "ubuntu-capi-image-{{ .builtin.cluster.topology.version }}"}}
  - name: apiserver_loadbalancer_octavia-amphora
    enabledIf: '{{ eq .apiserver_loadbalancer "octavia-amphora" }}'
    definitions:
    - selector: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta1, kind: OpenStackClusterTemplate, matchResources: {infrastructureCluster: true}}
      jsonPatches:
      - {op: replace, path: /spec/template/spec/apiServerLoadBalancer/enabled, value: true}
      - {op: add, path: /spec/template/spec/apiServerLoadBalancer/provider, value: amphora}
  - name: controller_flavor
    enabledIf: '{{ ne .controller_flavor "" }}'
    definitions:
    - selector: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta1, kind: OpenStackMachineTemplate, matchResources: {controlPlane: true}}
      jsonPatches:
      - {op: replace, path: /spec/template/spec/flavor, valueFrom: {variable: controller_flavor}}
  - name: worker_flavor
    enabledIf: '{{ ne .worker_flavor "" }}'
    definitions:
    - selector: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta1, kind: OpenStackMachineTemplate, matchResources: {controlPlane: false, machineDeploymentClass: {names: [default-worker]}}}
      jsonPatches:
      - {op: replace, path: /spec/template/spec/flavor, valueFrom: {variable: worker_flavor}}
  - name: controller_root_disk
    enabledIf: '{{ if .controller_root_disk }}true{{end}}'
    definitions:
    - selector: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta1, kind: OpenStackMachineTemplate, matchResources: {controlPlane: true}}
      jsonPatches:
      - {op: add, path: /spec/template/spec/rootVolume, valueFrom: {template: "sizeGiB: {{ .controller_root_disk }}"}}
  - name: worker_root_disk
    enabledIf: '{{ if .worker_root_disk }}true{{end}}'
    definitions:
    - selector: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta1, kind: OpenStackMachineTemplate, matchResources: {controlPlane: false, machineDeploymentClass: {names: [default-worker]}}}
      jsonPatches:
      - {op: add, path: /spec/template/spec/rootVolume, valueFrom: {template: "sizeGiB: {{ .worker_root_disk }}"}}
  - name: external_id
    enabledIf: '{{ if .external_id }}true{{end}}'
    definitions:
    - selector: {apiVersion: infrastructure.cluster.x-k8s.io/v1beta1, kind: OpenStackClusterTemplate, matchResources: {infrastructureCluster: true}}
      jsonPatches:
      - {op: add, path: /spec/template/spec/externalNetwork, value: {}}
      - {op: add, path: /spec/template/spec/externalNetwork/id, valueFrom: {variable: external_id}}
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: OpenStackClusterTemplate
metadata: {name: cc-cluster}
spec:
  template:
    spec:
      identityRef: {name: openstack, cloudName: openstack}
      apiServerLoadBalancer: {enabled: false}
      managedSubnets: [{cidr: 10.8.0.0/20}]
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: OpenStackMachineTemplate
metadata: {name: cc-control-plane}
spec: {template: {spec: {flavor: SCS-2V-4-20, image: {filter: {name: ubuntu-capi-image}}}}}
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: OpenStackMachineTemplate
metadata: {name: cc-default-worker}
spec: {template: {spec: {flavor: SCS-2V-4-20, image: {filter: {name: ubuntu-capi-image}}}}}
---
apiVersion: openstack.k-orc.cloud/v1alpha1
kind: Image
metadata: {name: ubuntu-capi-image-v1.32.5}
spec:
  managementPolicy: managed
  resource:
    content:
      diskFormat: qcow2
      download:
        hash: {algorithm: sha256, value: 8bfad5cb}
        url: https://images.example/ubuntu-2204-kube-v1.32.5.qcow2
`

// fixtureClass is shaped like test/fixtures/stacks/openstack-scs: v1beta2 templateRefs, one
// template for both roles, the flavor from a variable, the load balancer and the external network
// in the cluster template.
const fixtureClass = `
apiVersion: cluster.x-k8s.io/v1beta2
kind: ClusterClass
metadata: {name: openstack-scs-1-32-v1}
spec:
  infrastructure: {templateRef: {kind: OpenStackClusterTemplate, name: cc-cluster}}
  controlPlane:
    machineInfrastructure: {templateRef: {kind: OpenStackMachineTemplate, name: cc-machine}}
  workers:
    machineDeployments:
    - class: default-worker
      infrastructure: {templateRef: {kind: OpenStackMachineTemplate, name: cc-machine}}
  variables:
  - {name: flavor, required: false, schema: {openAPIV3Schema: {type: string, default: SCS-2V-4}}}
  patches:
  - name: machine
    definitions:
    - selector: {kind: OpenStackMachineTemplate, matchResources: {controlPlane: true, machineDeploymentClass: {names: [default-worker]}}}
      jsonPatches:
      - {op: replace, path: /spec/template/spec/flavor, valueFrom: {variable: flavor}}
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: OpenStackClusterTemplate
metadata: {name: cc-cluster}
spec:
  template:
    spec:
      apiServerLoadBalancer: {enabled: true}
      externalNetwork: {filter: {name: public}}
---
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: OpenStackMachineTemplate
metadata: {name: cc-machine}
spec: {template: {spec: {flavor: SCS-2V-4, rootVolume: {sizeGiB: 50}}}}
`

func decode(t *testing.T, docs string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, doc := range strings.Split(docs, "\n---\n") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

func TestNeedsOf(t *testing.T) {
	t.Parallel()
	nodeImages := []infrav1.NodeImage{
		{URL: "https://images.example/a.qcow2", CreateOpts: &infrav1.ImageCreateOpts{Name: "a", DiskFormat: "qcow2"}},
		{URL: "https://images.example/b.raw", Hash: &infrav1.ImageHash{Algorithm: "sha256", Value: "00"}, CreateOpts: &infrav1.ImageCreateOpts{Name: "b", DiskFormat: "raw"}},
	}
	tests := []struct {
		name       string
		objs       string
		class      string
		nodeImages []infrav1.NodeImage
		stored     func(string) bool
		want       Needs
	}{
		{name: "published scs shape", objs: scsClass, class: "openstack-scs-1-32-v1", want: Needs{
			LoadBalancer: "patch apiserver_loadbalancer_octavia-amphora",
			Flavors: []FlavorNeed{
				{Role: RoleControlPlane, Name: "SCS-2V-4-20s", Source: "variable controller_flavor"},
				{Role: RoleWorkers, Name: "SCS-2V-4", Source: "variable worker_flavor", RootVolume: true},
			},
			ExternalNetwork: &NetworkNeed{},
			Images:          []ImageNeed{{Name: "ubuntu-capi-image-v1.32.5", DiskFormat: "qcow2", Source: "ORC Image ubuntu-capi-image-v1.32.5"}},
			RootVolumes:     []VolumeNeed{{Role: RoleWorkers, SizeGiB: 25}},
		}},
		{name: "fixture shape with node images", objs: fixtureClass, class: "openstack-scs-1-32-v1", nodeImages: nodeImages,
			stored: func(n string) bool { return n == "b" }, want: Needs{
				LoadBalancer: "OpenStackClusterTemplate cc-cluster",
				Flavors: []FlavorNeed{
					{Role: RoleControlPlane, Name: "SCS-2V-4", Source: "variable flavor", RootVolume: true},
					{Role: RoleWorkers, Name: "SCS-2V-4", Source: "variable flavor", RootVolume: true},
				},
				ExternalNetwork: &NetworkNeed{Name: "public", Source: "OpenStackClusterTemplate cc-cluster"},
				Images: []ImageNeed{
					{Name: "a", DiskFormat: "qcow2", Source: "node-images.yaml", WebDownload: true, Tracked: true},
					{Name: "b", DiskFormat: "raw", Source: "node-images.yaml", Tracked: true, Stored: true},
				},
				RootVolumes: []VolumeNeed{{Role: RoleControlPlane, SizeGiB: 50}, {Role: RoleWorkers, SizeGiB: 50}},
			}},
		{name: "another release's class: only the images", objs: fixtureClass, class: "openstack-scs-1-32-v2", nodeImages: nodeImages[:1],
			want: Needs{Images: []ImageNeed{{Name: "a", DiskFormat: "qcow2", Source: "node-images.yaml", WebDownload: true, Tracked: true}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := NeedsOf(decode(t, tt.objs), tt.class, "v1.32.5", tt.nodeImages, tt.stored)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("NeedsOf() (-want +got):\n%s", d)
			}
		})
	}
}

// TestNeedsOfVariables checks the patch evaluation on the defaults: a variable that selects an
// external network by ID and turns the load balancer off.
func TestNeedsOfVariables(t *testing.T) {
	t.Parallel()
	objs := decode(t, strings.NewReplacer(
		"{name: external_id, required: false, schema: {openAPIV3Schema: {type: string}}}",
		"{name: external_id, required: false, schema: {openAPIV3Schema: {type: string, default: ext-1}}}",
		"default: octavia-amphora", "default: none",
	).Replace(scsClass))
	got := NeedsOf(objs, "openstack-scs-1-32-v1", "v1.32.5", nil, nil)
	if got.LoadBalancer != "" {
		t.Errorf("LoadBalancer = %q, want none", got.LoadBalancer)
	}
	if d := cmp.Diff(&NetworkNeed{ID: "ext-1", Source: "variable external_id"}, got.ExternalNetwork); d != "" {
		t.Errorf("ExternalNetwork (-want +got):\n%s", d)
	}
}
