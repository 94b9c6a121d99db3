package clients

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	volumelimits "github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/limits"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	computelimits "github.com/gophercloud/gophercloud/v2/openstack/compute/v2/limits"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imageimport"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/external"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
)

// Service types of the catalog, as the service-types authority names them (gophercloud also
// finds their aliases, e.g. volumev3 for block-storage).
const (
	TypeCompute      = "compute"
	TypeNetwork      = "network"
	TypeBlockStorage = "block-storage"
	TypeLoadBalancer = "load-balancer"
	TypeImage        = "image"
)

// ErrNotInCatalog says the token's catalog has no endpoint of a service for the region and
// interface of the credentials; CloudReader's calls of that service return it.
var ErrNotInCatalog = errors.New("not in the service catalog")

// ImageUsage is Glance's usage report (unified limits): limits of -1 are unlimited.
type ImageUsage struct {
	// SizeLimitMiB and SizeUsedMiB are image_size_total.
	SizeLimitMiB, SizeUsedMiB int64
	// CountLimit and CountUsed are image_count_total.
	CountLimit, CountUsed int64
}

// CloudReader is the read-only part of the cloud the capability check asks: the token's
// catalog and one cheap listing per service. None of its calls changes anything.
type CloudReader interface {
	// Services returns the service types the catalog has an endpoint of (for the region and
	// interface of the credentials), from the token: no call.
	Services() []string
	// ListFlavors returns the flavors the project may use (Nova GET /flavors/detail).
	ListFlavors(ctx context.Context) ([]flavors.Flavor, error)
	// ComputeLimits returns the project's compute quota and usage (Nova GET /limits).
	ComputeLimits(ctx context.Context) (*computelimits.Absolute, error)
	// ListExternalNetworks returns the networks with router:external (Neutron GET /networks).
	ListExternalNetworks(ctx context.Context) ([]networks.Network, error)
	// VolumeLimits returns the project's block storage quota and usage (Cinder GET /limits).
	VolumeLimits(ctx context.Context) (*volumelimits.Absolute, error)
	// ImportMethods returns the import methods Glance offers (GET /v2/info/import).
	ImportMethods(ctx context.Context) ([]string, error)
	// DiskFormats returns the disk formats Glance accepts (the disk_format enum of GET
	// /v2/schemas/image).
	DiskFormats(ctx context.Context) ([]string, error)
	// ImageUsage returns Glance's quota usage (GET /v2/info/usage); a Glance without unified
	// limits answers 404 (see IsNotFound).
	ImageUsage(ctx context.Context) (*ImageUsage, error)
}

type cloudReader struct {
	services map[string]*gophercloud.ServiceClient
}

// NewCloudReader returns a CloudReader on a logged-in provider client. Services the catalog
// lacks are remembered as missing, not an error: saying which are missing is the point.
func NewCloudReader(provider *gophercloud.ProviderClient, eo gophercloud.EndpointOpts) CloudReader {
	c := cloudReader{services: map[string]*gophercloud.ServiceClient{}}
	for typ, newClient := range map[string]func(*gophercloud.ProviderClient, gophercloud.EndpointOpts) (*gophercloud.ServiceClient, error){
		TypeCompute:      openstack.NewComputeV2,
		TypeNetwork:      openstack.NewNetworkV2,
		TypeBlockStorage: openstack.NewBlockStorageV3,
		TypeLoadBalancer: openstack.NewLoadBalancerV2,
		TypeImage:        openstack.NewImageV2,
	} {
		if sc, err := newClient(provider, eo); err == nil {
			c.services[typ] = sc
		}
	}
	return c
}

func (c cloudReader) Services() []string {
	out := make([]string, 0, len(c.services))
	for typ := range c.services {
		out = append(out, typ)
	}
	slices.Sort(out)
	return out
}

func (c cloudReader) client(typ string) (*gophercloud.ServiceClient, error) {
	if sc := c.services[typ]; sc != nil {
		return sc, nil
	}
	return nil, fmt.Errorf("service %s: %w", typ, ErrNotInCatalog)
}

func (c cloudReader) ListFlavors(ctx context.Context) (list []flavors.Flavor, err error) {
	sc, err := c.client(TypeCompute)
	if err != nil {
		return nil, err
	}
	defer func(start time.Time) { observe(TypeCompute, "ListFlavors", start, err) }(time.Now())
	pages, err := flavors.ListDetail(sc, flavors.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	return flavors.ExtractFlavors(pages)
}

func (c cloudReader) ComputeLimits(ctx context.Context) (abs *computelimits.Absolute, err error) {
	sc, err := c.client(TypeCompute)
	if err != nil {
		return nil, err
	}
	defer func(start time.Time) { observe(TypeCompute, "GetLimits", start, err) }(time.Now())
	l, err := computelimits.Get(ctx, sc, computelimits.GetOpts{}).Extract()
	if err != nil {
		return nil, err
	}
	return &l.Absolute, nil
}

func (c cloudReader) ListExternalNetworks(ctx context.Context) (list []networks.Network, err error) {
	sc, err := c.client(TypeNetwork)
	if err != nil {
		return nil, err
	}
	defer func(start time.Time) { observe(TypeNetwork, "ListNetworks", start, err) }(time.Now())
	pages, err := networks.List(sc, external.ListOptsExt{ListOptsBuilder: networks.ListOpts{}, External: new(true)}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	return networks.ExtractNetworks(pages)
}

func (c cloudReader) VolumeLimits(ctx context.Context) (abs *volumelimits.Absolute, err error) {
	sc, err := c.client(TypeBlockStorage)
	if err != nil {
		return nil, err
	}
	defer func(start time.Time) { observe(TypeBlockStorage, "GetLimits", start, err) }(time.Now())
	l, err := volumelimits.Get(ctx, sc).Extract()
	if err != nil {
		return nil, err
	}
	return &l.Absolute, nil
}

func (c cloudReader) ImportMethods(ctx context.Context) (methods []string, err error) {
	sc, err := c.client(TypeImage)
	if err != nil {
		return nil, err
	}
	defer func(start time.Time) { observe(TypeImage, "GetImportInfo", start, err) }(time.Now())
	info, err := imageimport.Get(ctx, sc).Extract()
	if err != nil {
		return nil, err
	}
	return info.ImportMethods.Value, nil
}

func (c cloudReader) DiskFormats(ctx context.Context) (formats []string, err error) {
	sc, err := c.client(TypeImage)
	if err != nil {
		return nil, err
	}
	defer func(start time.Time) { observe(TypeImage, "GetImageSchema", start, err) }(time.Now())
	// gophercloud has no schema call; the schema is a plain JSON document.
	var schema struct {
		Properties struct {
			DiskFormat struct {
				Enum []*string `json:"enum"`
			} `json:"disk_format"`
		} `json:"properties"`
	}
	if _, err := sc.Get(ctx, sc.ServiceURL("schemas", "image"), &schema, &gophercloud.RequestOpts{OkCodes: []int{200}}); err != nil {
		return nil, err
	}
	for _, f := range schema.Properties.DiskFormat.Enum {
		if f != nil {
			formats = append(formats, *f)
		}
	}
	return formats, nil
}

func (c cloudReader) ImageUsage(ctx context.Context) (u *ImageUsage, err error) {
	sc, err := c.client(TypeImage)
	if err != nil {
		return nil, err
	}
	defer func(start time.Time) { observe(TypeImage, "GetUsage", start, err) }(time.Now())
	type entry struct {
		Limit int64 `json:"limit"`
		Usage int64 `json:"usage"`
	}
	var body struct {
		Usage struct {
			Size  entry `json:"image_size_total"`
			Count entry `json:"image_count_total"`
		} `json:"usage"`
	}
	// gophercloud has no usage call (Glance's unified limits, since Yoga).
	if _, err := sc.Get(ctx, sc.ServiceURL("info", "usage"), &body, &gophercloud.RequestOpts{OkCodes: []int{200}}); err != nil {
		return nil, err
	}
	return &ImageUsage{SizeLimitMiB: body.Usage.Size.Limit, SizeUsedMiB: body.Usage.Size.Usage,
		CountLimit: body.Usage.Count.Limit, CountUsed: body.Usage.Count.Usage}, nil
}

// observe records one call of the capability check, like observeImage does for Glance.
func observe(service, operation string, start time.Time, err error) {
	requestsTotal.WithLabelValues(service, operation).Inc()
	requestDuration.WithLabelValues(service, operation).Observe(time.Since(start).Seconds())
	if err != nil {
		requestErrorsTotal.WithLabelValues(service, operation, Classify(err).Kind.String()).Inc()
	}
}
