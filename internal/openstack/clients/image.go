package clients

import (
	"context"
	"io"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imageimport"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

// ImageClient is the part of Glance v2 the operator uses.
type ImageClient interface {
	// GetImage returns one image by ID.
	GetImage(ctx context.Context, id string) (*images.Image, error)
	// ListImages returns every image matching opts, following pagination. Glance hides
	// os_hidden and community images unless opts asks for them.
	ListImages(ctx context.Context, opts images.ListOpts) ([]images.Image, error)
	// CreateImage creates an image record (status queued).
	CreateImage(ctx context.Context, opts images.CreateOptsBuilder) (*images.Image, error)
	// UploadData streams the image bytes (PUT /file). Its requests have no total deadline (see
	// WithTransfer): the caller bounds the transfer, e.g. by cancelling ctx when no bytes move.
	UploadData(ctx context.Context, id string, data io.Reader) error
	// ImportImage starts an interoperable import, e.g. web-download.
	ImportImage(ctx context.Context, id string, opts imageimport.CreateOptsBuilder) error
	// GetImportInfo returns the import methods the cloud offers.
	GetImportInfo(ctx context.Context) (*imageimport.ImportInfo, error)
	// DeleteImage deletes an image.
	DeleteImage(ctx context.Context, id string) error
}

type imageClient struct {
	client *gophercloud.ServiceClient
}

// NewImageClient wraps a Glance service client.
func NewImageClient(client *gophercloud.ServiceClient) ImageClient {
	return imageClient{client: client}
}

func (c imageClient) GetImage(ctx context.Context, id string) (img *images.Image, err error) {
	defer func(start time.Time) { observeImage("GetImage", start, err) }(time.Now())
	return images.Get(ctx, c.client, id).Extract()
}

func (c imageClient) ListImages(ctx context.Context, opts images.ListOpts) (list []images.Image, err error) {
	defer func(start time.Time) { observeImage("ListImages", start, err) }(time.Now())
	pages, err := images.List(c.client, opts).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	return images.ExtractImages(pages)
}

func (c imageClient) CreateImage(ctx context.Context, opts images.CreateOptsBuilder) (img *images.Image, err error) {
	defer func(start time.Time) { observeImage("CreateImage", start, err) }(time.Now())
	return images.Create(ctx, c.client, opts).Extract()
}

func (c imageClient) UploadData(ctx context.Context, id string, data io.Reader) (err error) {
	defer func(start time.Time) { observeImage("UploadData", start, err) }(time.Now())
	return imagedata.Upload(WithTransfer(ctx), c.client, id, data).ExtractErr()
}

func (c imageClient) ImportImage(ctx context.Context, id string, opts imageimport.CreateOptsBuilder) (err error) {
	defer func(start time.Time) { observeImage("ImportImage", start, err) }(time.Now())
	return imageimport.Create(ctx, c.client, id, opts).ExtractErr()
}

func (c imageClient) GetImportInfo(ctx context.Context) (info *imageimport.ImportInfo, err error) {
	defer func(start time.Time) { observeImage("GetImportInfo", start, err) }(time.Now())
	return imageimport.Get(ctx, c.client).Extract()
}

func (c imageClient) DeleteImage(ctx context.Context, id string) (err error) {
	defer func(start time.Time) { observeImage("DeleteImage", start, err) }(time.Now())
	return images.Delete(ctx, c.client, id).ExtractErr()
}
