package capability

import (
	"context"
	"fmt"
	"slices"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
)

// Read asks the cloud everything Check may need, with read-only calls, so that the answers serve
// every release with the same credentials. A service missing from the catalog is an answer (Check
// reports it), not an error; a Glance without the import or usage API (404) is one too. Any
// other failure stops the read: the caller classifies it with clients.Classify.
func Read(ctx context.Context, c clients.CloudReader) (Answers, error) {
	a := Answers{Services: c.Services()}
	has := func(svc string) bool { return slices.Contains(a.Services, svc) }
	if has(ServiceCompute) {
		list, err := c.ListFlavors(ctx)
		if err != nil {
			return a, fmt.Errorf("listing flavors: %w", err)
		}
		for _, f := range list {
			a.Flavors = append(a.Flavors, Flavor{Name: f.Name, VCPUs: f.VCPUs, RAM: f.RAM, DiskGiB: f.Disk})
		}
		l, err := c.ComputeLimits(ctx)
		if err != nil {
			return a, fmt.Errorf("getting the compute limits: %w", err)
		}
		a.Compute = &ComputeQuota{
			Instances: Quota{Limit: int64(l.MaxTotalInstances), Used: int64(l.TotalInstancesUsed)},
			Cores:     Quota{Limit: int64(l.MaxTotalCores), Used: int64(l.TotalCoresUsed)},
			RAM:       Quota{Limit: int64(l.MaxTotalRAMSize), Used: int64(l.TotalRAMUsed)},
		}
	}
	if has(ServiceNetwork) {
		list, err := c.ListExternalNetworks(ctx)
		if err != nil {
			return a, fmt.Errorf("listing external networks: %w", err)
		}
		a.ExternalNetworks = []Network{}
		for _, nw := range list {
			a.ExternalNetworks = append(a.ExternalNetworks, Network{ID: nw.ID, Name: nw.Name})
		}
	}
	if has(ServiceBlockStorage) {
		l, err := c.VolumeLimits(ctx)
		if err != nil {
			return a, fmt.Errorf("getting the volume limits: %w", err)
		}
		a.Volume = &VolumeQuota{
			Volumes:   Quota{Limit: int64(l.MaxTotalVolumes), Used: int64(l.TotalVolumesUsed)},
			Gigabytes: Quota{Limit: int64(l.MaxTotalVolumeGigabytes), Used: int64(l.TotalGigabytesUsed)},
		}
	}
	if has(ServiceImage) {
		methods, err := c.ImportMethods(ctx)
		switch {
		case clients.IsNotFound(err):
			// A Glance without the interoperable import API: uploads only.
		case err != nil:
			return a, fmt.Errorf("getting the image import methods: %w", err)
		default:
			a.ImportMethods = methods
		}
		formats, err := c.DiskFormats(ctx)
		if err != nil {
			return a, fmt.Errorf("getting the image schema: %w", err)
		}
		a.DiskFormats = formats
		u, err := c.ImageUsage(ctx)
		switch {
		case clients.IsNotFound(err):
			// No unified limits (Glance before Yoga): nothing to say about image quota.
		case err != nil:
			return a, fmt.Errorf("getting the image usage: %w", err)
		default:
			a.Image = &ImageQuota{Count: Quota{Limit: u.CountLimit, Used: u.CountUsed}, SizeMiB: Quota{Limit: u.SizeLimitMiB, Used: u.SizeUsedMiB}}
		}
	}
	return a, nil
}
