package capability

import (
	"strings"
	"testing"
)

// TestCheck covers each missing capability, the advisory import fallback, and a cloud that has
// everything, with the message that must name what is missing.
func TestCheck(t *testing.T) {
	t.Parallel()
	needs := Needs{
		LoadBalancer: "variable apiserver_loadbalancer",
		Flavors: []FlavorNeed{
			{Role: RoleControlPlane, Name: "SCS-2V-4-20s", Source: "variable controller_flavor"},
			{Role: RoleWorkers, Name: "SCS-2V-4", Source: "variable worker_flavor", RootVolume: true},
		},
		ExternalNetwork: &NetworkNeed{Name: "public", Source: "OpenStackClusterTemplate c"},
		Images:          []ImageNeed{{Name: "ubuntu-capi-image-v1.32.5", DiskFormat: "qcow2", Source: "node-images.yaml", WebDownload: true, Tracked: true}},
		RootVolumes:     []VolumeNeed{{Role: RoleWorkers, SizeGiB: 25}},
	}
	all := func() Answers {
		return Answers{
			Services:         []string{ServiceBlockStorage, ServiceCompute, ServiceImage, ServiceLoadBalancer, ServiceNetwork},
			Flavors:          []Flavor{{Name: "SCS-2V-4", VCPUs: 2, RAM: 4096}, {Name: "SCS-2V-4-20s", VCPUs: 2, RAM: 4096, DiskGiB: 20}},
			ExternalNetworks: []Network{{ID: "n1", Name: "public"}},
			ImportMethods:    []string{"glance-direct", "web-download"},
			DiskFormats:      []string{"raw", "qcow2"},
			Compute:          &ComputeQuota{Instances: Quota{Limit: 10}, Cores: Quota{Limit: 20}, RAM: Quota{Limit: 51200}},
			Volume:           &VolumeQuota{Volumes: Quota{Limit: 10}, Gigabytes: Quota{Limit: 1000}},
			Image:            &ImageQuota{Count: Quota{Limit: -1}, SizeMiB: Quota{Limit: -1}},
		}
	}
	tests := []struct {
		name   string
		needs  func(*Needs)
		answer func(*Answers)
		// want are the capabilities of the findings, in order; message parts each must contain.
		want     []string
		messages []string
		capable  bool
	}{
		{name: "all present", capable: true},
		{name: "no Octavia", answer: func(a *Answers) {
			a.Services = []string{ServiceBlockStorage, ServiceCompute, ServiceImage, ServiceNetwork}
		},
			want: []string{CapLoadBalancer}, messages: []string{"no load-balancer service (Octavia) in the catalog, but the class enables the API server load balancer (variable apiserver_loadbalancer)"}},
		{name: "no Octavia, class without load balancer", needs: func(n *Needs) { n.LoadBalancer = "" },
			answer: func(a *Answers) {
				a.Services = []string{ServiceBlockStorage, ServiceCompute, ServiceImage, ServiceNetwork}
			}, capable: true},
		{name: "control plane flavor missing", answer: func(a *Answers) { a.Flavors = a.Flavors[:1] },
			want: []string{CapFlavor}, messages: []string{"flavor SCS-2V-4-20s (control plane default, variable controller_flavor) not found"}},
		{name: "diskless flavor without root volume", needs: func(n *Needs) { n.Flavors[1].RootVolume = false },
			want: []string{CapFlavor}, messages: []string{"flavor SCS-2V-4 (workers default, variable worker_flavor) has no local disk and the class gives the workers no root volume"}},
		{name: "no compute service", answer: func(a *Answers) {
			a.Services = []string{ServiceBlockStorage, ServiceImage, ServiceLoadBalancer, ServiceNetwork}
			a.Flavors, a.Compute = nil, nil
		}, want: []string{CapService}, messages: []string{"no compute service (Nova) in the catalog"}},
		{name: "named external network missing", answer: func(a *Answers) { a.ExternalNetworks = []Network{{ID: "x", Name: "ext-net"}} },
			want: []string{CapExternalNetwork}, messages: []string{"external network public (OpenStackClusterTemplate c) not found among the project's external networks (router:external): ext-net"}},
		{name: "no external network at all", needs: func(n *Needs) { n.ExternalNetwork = &NetworkNeed{} }, answer: func(a *Answers) { a.ExternalNetworks = []Network{} },
			want: []string{CapExternalNetwork}, messages: []string{"no external network (router:external) visible to the project"}},
		{name: "several external networks and none named", needs: func(n *Needs) { n.ExternalNetwork = &NetworkNeed{} },
			answer: func(a *Answers) { a.ExternalNetworks = []Network{{Name: "a"}, {Name: "b"}} },
			want:   []string{CapExternalNetwork}, messages: []string{"the project sees 2 (a, b)"}},
		{name: "the only external network, none named", needs: func(n *Needs) { n.ExternalNetwork = &NetworkNeed{} }, capable: true},
		{name: "external networking disabled", needs: func(n *Needs) { n.ExternalNetwork = nil }, answer: func(a *Answers) { a.ExternalNetworks = nil }, capable: true},
		{name: "disk format refused", answer: func(a *Answers) { a.DiskFormats = []string{"raw"} },
			want: []string{CapImageFormat}, messages: []string{"image ubuntu-capi-image-v1.32.5 (node-images.yaml) has disk format qcow2, which Glance does not accept (it accepts raw)"}},
		{name: "no web-download: advisory", answer: func(a *Answers) { a.ImportMethods = []string{"glance-direct", "copy-image"} }, capable: true,
			want: []string{CapImageImport}, messages: []string{"Glance offers no web-download import (it offers glance-direct, copy-image): image ubuntu-capi-image-v1.32.5 (node-images.yaml) is downloaded by the management cluster and uploaded instead"}},
		{name: "no web-download but the image is hashed", needs: func(n *Needs) { n.Images[0].WebDownload = false },
			answer: func(a *Answers) { a.ImportMethods = nil }, capable: true},
		{name: "instances exhausted", answer: func(a *Answers) { a.Compute.Instances = Quota{Limit: 10, Used: 9} },
			want: []string{CapComputeQuota}, messages: []string{"instance quota exhausted: 1 left (9 of 10 used), one Cluster of the class needs 2 (one machine of SCS-2V-4-20s for the control plane and one of SCS-2V-4 for the workers)"}},
		{name: "cores and RAM short", answer: func(a *Answers) {
			a.Compute.Cores = Quota{Limit: 20, Used: 17}
			a.Compute.RAM = Quota{Limit: 8192, Used: 1}
		},
			want: []string{CapComputeQuota, CapComputeQuota}, messages: []string{"core quota exhausted: 3 left (17 of 20 used), one Cluster of the class needs 4", "RAM quota exhausted: 8191 MiB left"}},
		{name: "unlimited compute", answer: func(a *Answers) {
			a.Compute = &ComputeQuota{Instances: Quota{Limit: -1, Used: 500}, Cores: Quota{Limit: -1}, RAM: Quota{Limit: -1}}
		}, capable: true},
		{name: "volume gigabytes exhausted", answer: func(a *Answers) { a.Volume.Gigabytes = Quota{Limit: 1000, Used: 990} },
			want: []string{CapVolumeQuota}, messages: []string{"volume gigabyte quota exhausted: 10 GiB left (990 of 1000 used), one Cluster of the class needs 25 GiB (25 GiB root volume for the workers)"}},
		{name: "image count exhausted", answer: func(a *Answers) { a.Image.Count = Quota{Limit: 5, Used: 5} },
			want: []string{CapImageQuota}, messages: []string{"image quota exhausted: 0 left (5 of 5 used), one Cluster of the class needs 1 (images ubuntu-capi-image-v1.32.5)"}},
		{name: "image quota full, the image is ORC's", needs: func(n *Needs) { n.Images[0].Tracked, n.Images[0].Source = false, "ORC Image x" },
			answer: func(a *Answers) { a.Image.Count = Quota{Limit: 5, Used: 5} }, capable: true},
		{name: "image quota full but the image is stored", needs: func(n *Needs) { n.Images[0].Stored = true },
			answer: func(a *Answers) { a.Image.Count = Quota{Limit: 5, Used: 5} }, capable: true},
		{name: "several missing, in order", answer: func(a *Answers) {
			a.Services = []string{ServiceBlockStorage, ServiceCompute, ServiceImage, ServiceNetwork}
			a.Flavors = nil
			a.ExternalNetworks = []Network{}
		}, want: []string{CapLoadBalancer, CapFlavor, CapFlavor, CapExternalNetwork}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n := needs
			n.Flavors = append([]FlavorNeed(nil), needs.Flavors...)
			n.Images = append([]ImageNeed(nil), needs.Images...)
			if tt.needs != nil {
				tt.needs(&n)
			}
			a := all()
			if tt.answer != nil {
				tt.answer(&a)
			}
			got := Check(n, a)
			var caps, msgs []string
			for _, f := range got {
				caps = append(caps, f.Capability)
				msgs = append(msgs, f.Message)
			}
			if strings.Join(caps, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("capabilities = %v, want %v (%q)", caps, tt.want, msgs)
			}
			joined := strings.Join(msgs, "\n")
			for _, m := range tt.messages {
				if !strings.Contains(joined, m) {
					t.Errorf("findings %q do not contain %q", joined, m)
				}
			}
			if Capable(got) != tt.capable {
				t.Errorf("Capable = %t, want %t", Capable(got), tt.capable)
			}
		})
	}
}
