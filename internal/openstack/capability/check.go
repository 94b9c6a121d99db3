package capability

import (
	"fmt"
	"slices"
	"strings"
)

// Capabilities a finding is about.
const (
	CapService         = "Service"
	CapLoadBalancer    = "LoadBalancer"
	CapFlavor          = "Flavor"
	CapExternalNetwork = "ExternalNetwork"
	CapImageFormat     = "ImageFormat"
	CapImageImport     = "ImageImport"
	CapComputeQuota    = "ComputeQuota"
	CapVolumeQuota     = "VolumeQuota"
	CapImageQuota      = "ImageQuota"
)

// Service types as the catalog names them.
const (
	ServiceCompute      = "compute"
	ServiceNetwork      = "network"
	ServiceBlockStorage = "block-storage"
	ServiceLoadBalancer = "load-balancer"
	ServiceImage        = "image"
)

// Roles of the class's machines.
const (
	RoleControlPlane = "control plane"
	RoleWorkers      = "workers"
)

// Needs is what a release's ClusterClass needs from the cloud when a Cluster keeps its defaults.
type Needs struct {
	// LoadBalancer says why the class needs Octavia (it enables the API server load balancer by
	// default); empty when it does not.
	LoadBalancer string
	// Flavors are the default flavors of the class's machines.
	Flavors []FlavorNeed
	// ExternalNetwork is the external network the class selects, nil when it disables external
	// networking.
	ExternalNetwork *NetworkNeed
	// Images are the images the release brings into Glance.
	Images []ImageNeed
	// RootVolumes are the default root volumes of the class's machines.
	RootVolumes []VolumeNeed
}

// FlavorNeed is the default flavor of one role.
type FlavorNeed struct {
	Role string
	Name string
	// Source says where the default comes from, e.g. `variable controller_flavor`.
	Source string
	// RootVolume says the role boots from a volume, so a flavor without a local disk works.
	RootVolume bool
}

// NetworkNeed is the external network the class selects: by ID, by name, or (both empty) the
// only one the project sees, as CAPO picks it.
type NetworkNeed struct {
	ID, Name string
	Source   string
}

// ImageNeed is one image the release creates in Glance.
type ImageNeed struct {
	Name       string
	DiskFormat string
	// Source is node-images.yaml or the ORC Image that asks for it.
	Source string
	// WebDownload says Glance would fetch the file itself if it offers web-download (the image
	// has a URL and no hash to verify); otherwise it is uploaded.
	WebDownload bool
	// Tracked says the operator knows whether the image is stored (node-images.yaml images
	// have objects that say so; ORC Images are ORC's), and Stored that it is in Glance already.
	// Only tracked images that are not stored count against the image quota: an ORC image that
	// exists must not make a full quota look exhausted.
	Tracked, Stored bool
}

// VolumeNeed is the default root volume of one role.
type VolumeNeed struct {
	Role    string
	SizeGiB int
}

// Answers is what the cloud said. A nil pointer or slice means the question was not asked
// (the service is not in the catalog) or the cloud has no such report.
type Answers struct {
	// Services are the service types of the catalog.
	Services []string
	Flavors  []Flavor
	// ExternalNetworks are the networks with router:external.
	ExternalNetworks []Network
	// ImportMethods are Glance's import methods; nil when Glance has no import API.
	ImportMethods []string
	// DiskFormats are the disk formats Glance accepts.
	DiskFormats []string
	Compute     *ComputeQuota
	Volume      *VolumeQuota
	Image       *ImageQuota
}

// Flavor is a Nova flavor.
type Flavor struct {
	Name       string
	VCPUs, RAM int
	DiskGiB    int
}

// Network is a Neutron network.
type Network struct{ ID, Name string }

// Quota is a limit and its usage; a negative limit is unlimited.
type Quota struct{ Limit, Used int64 }

// Left is the headroom, -1 when unlimited.
func (q Quota) Left() int64 {
	if q.Limit < 0 {
		return -1
	}
	return max(q.Limit-q.Used, 0)
}

// ComputeQuota is Nova's absolute limits (RAM in MiB).
type ComputeQuota struct{ Instances, Cores, RAM Quota }

// VolumeQuota is Cinder's absolute limits.
type VolumeQuota struct{ Volumes, Gigabytes Quota }

// ImageQuota is Glance's unified limits (size in MiB).
type ImageQuota struct{ Count, SizeMiB Quota }

// Finding is one thing the cloud lacks for the class's defaults.
type Finding struct {
	Capability string
	Message    string
	// Advisory findings do not keep Clusters from working (a fallback exists); they are said,
	// but the cloud still counts as capable.
	Advisory bool
}

// Capable reports whether no finding is more than advisory.
func Capable(findings []Finding) bool {
	return !slices.ContainsFunc(findings, func(f Finding) bool { return !f.Advisory })
}

// Check compares what the class needs with what the cloud answered. Findings come in a fixed
// order (catalog, flavors, network, images, quota), so that the same cloud gives the same
// message.
func Check(n Needs, a Answers) []Finding {
	var out []Finding
	add := func(capability string, advisory bool, format string, args ...any) {
		out = append(out, Finding{Capability: capability, Advisory: advisory, Message: fmt.Sprintf(format, args...)})
	}
	has := func(svc string) bool { return slices.Contains(a.Services, svc) }

	if n.LoadBalancer != "" && !has(ServiceLoadBalancer) {
		add(CapLoadBalancer, false, "no load-balancer service (Octavia) in the catalog, but the class enables the API server load balancer (%s)", n.LoadBalancer)
	}
	if len(n.Flavors) > 0 && !has(ServiceCompute) {
		add(CapService, false, "no compute service (Nova) in the catalog")
	}
	if n.ExternalNetwork != nil && !has(ServiceNetwork) {
		add(CapService, false, "no network service (Neutron) in the catalog")
	}

	if has(ServiceCompute) {
		for _, f := range n.Flavors {
			flavor, ok := findFlavor(a.Flavors, f.Name)
			switch {
			case !ok:
				add(CapFlavor, false, "flavor %s (%s default, %s) not found", f.Name, f.Role, f.Source)
			case flavor.DiskGiB == 0 && !f.RootVolume:
				add(CapFlavor, false, "flavor %s (%s default, %s) has no local disk and the class gives the %s no root volume", f.Name, f.Role, f.Source, f.Role)
			}
		}
	}

	if nw := n.ExternalNetwork; nw != nil && has(ServiceNetwork) {
		names := make([]string, 0, len(a.ExternalNetworks))
		for _, e := range a.ExternalNetworks {
			names = append(names, e.Name)
		}
		switch {
		case nw.ID != "" || nw.Name != "":
			found := slices.ContainsFunc(a.ExternalNetworks, func(e Network) bool {
				return (nw.ID == "" || e.ID == nw.ID) && (nw.Name == "" || e.Name == nw.Name)
			})
			if !found {
				add(CapExternalNetwork, false, "external network %s (%s) not found among the project's external networks (router:external): %s",
					coalesce(nw.Name, nw.ID), nw.Source, listOrNone(names))
			}
		case len(a.ExternalNetworks) == 0:
			add(CapExternalNetwork, false, "no external network (router:external) visible to the project: Clusters of the class get no router to the outside and no floating IP")
		case len(a.ExternalNetworks) > 1:
			add(CapExternalNetwork, false, "the class names no external network and the project sees %d (%s): the OpenStack provider does not pick one; name one in the class or the Cluster",
				len(a.ExternalNetworks), strings.Join(names, ", "))
		}
	}

	if has(ServiceImage) {
		for _, img := range n.Images {
			if img.DiskFormat != "" && a.DiskFormats != nil && !slices.Contains(a.DiskFormats, img.DiskFormat) {
				add(CapImageFormat, false, "image %s (%s) has disk format %s, which Glance does not accept (it accepts %s)",
					img.Name, img.Source, img.DiskFormat, strings.Join(a.DiskFormats, ", "))
			}
			if img.WebDownload && !img.Stored && !slices.Contains(a.ImportMethods, "web-download") {
				add(CapImageImport, true, "Glance offers no web-download import (it offers %s): image %s (%s) is downloaded by the management cluster and uploaded instead",
					listOrNone(a.ImportMethods), img.Name, img.Source)
			}
		}
	} else if len(n.Images) > 0 {
		add(CapService, false, "no image service (Glance) in the catalog")
	}

	out = append(out, quota(n, a)...)
	return out
}

// quota checks the headroom for one control-plane and one worker machine of the default
// flavors and root volumes, and for the images not yet stored.
func quota(n Needs, a Answers) []Finding {
	var out []Finding
	short := func(capability, what string, q Quota, need int64, unit, why string) {
		if left := q.Left(); left >= 0 && left < need {
			out = append(out, Finding{Capability: capability, Message: fmt.Sprintf("%s quota exhausted: %d%s left (%d of %d used), one Cluster of the class needs %d%s (%s)",
				what, left, unit, q.Used, q.Limit, need, unit, why)})
		}
	}
	if c := a.Compute; c != nil && len(n.Flavors) > 0 {
		var cores, ram int64
		var parts []string
		for _, f := range n.Flavors {
			if flavor, ok := findFlavor(a.Flavors, f.Name); ok {
				cores += int64(flavor.VCPUs)
				ram += int64(flavor.RAM)
			}
			parts = append(parts, fmt.Sprintf("%s for the %s", f.Name, f.Role))
		}
		why := "one machine of " + strings.Join(parts, " and one of ")
		short(CapComputeQuota, "instance", c.Instances, int64(len(n.Flavors)), "", why)
		short(CapComputeQuota, "core", c.Cores, cores, "", why)
		short(CapComputeQuota, "RAM", c.RAM, ram, " MiB", why)
	}
	if v := a.Volume; v != nil && len(n.RootVolumes) > 0 {
		var gib int64
		var parts []string
		for _, rv := range n.RootVolumes {
			gib += int64(rv.SizeGiB)
			parts = append(parts, fmt.Sprintf("%d GiB root volume for the %s", rv.SizeGiB, rv.Role))
		}
		why := strings.Join(parts, ", ")
		short(CapVolumeQuota, "volume", v.Volumes, int64(len(n.RootVolumes)), "", why)
		short(CapVolumeQuota, "volume gigabyte", v.Gigabytes, gib, " GiB", why)
	}
	if q := a.Image; q != nil {
		var missing []string
		for _, img := range n.Images {
			if img.Tracked && !img.Stored {
				missing = append(missing, img.Name)
			}
		}
		if len(missing) > 0 {
			why := "images " + strings.Join(missing, ", ")
			short(CapImageQuota, "image", q.Count, int64(len(missing)), "", why)
			// Sizes are unknown before the download: any room at all is enough to try.
			short(CapImageQuota, "image storage", q.SizeMiB, 1, " MiB", why)
		}
	}
	return out
}

func findFlavor(flavors []Flavor, name string) (Flavor, bool) {
	i := slices.IndexFunc(flavors, func(f Flavor) bool { return f.Name == name })
	if i < 0 {
		return Flavor{}, false
	}
	return flavors[i], true
}

// Summary says in one line what Check looked at, for the message of a capable cloud.
func Summary(n Needs) string {
	var parts []string
	if n.LoadBalancer != "" {
		parts = append(parts, "the load-balancer service")
	}
	for _, f := range n.Flavors {
		parts = append(parts, fmt.Sprintf("flavor %s (%s)", f.Name, f.Role))
	}
	if nw := n.ExternalNetwork; nw != nil {
		if name := coalesce(nw.Name, nw.ID); name != "" {
			parts = append(parts, "external network "+name)
		} else {
			parts = append(parts, "an external network")
		}
	}
	formats := map[string]bool{}
	for _, img := range n.Images {
		if img.DiskFormat != "" && !formats[img.DiskFormat] {
			formats[img.DiskFormat] = true
			parts = append(parts, "disk format "+img.DiskFormat)
		}
	}
	parts = append(parts, "quota for one control-plane and one worker machine")
	return strings.Join(parts, ", ")
}

func coalesce(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
