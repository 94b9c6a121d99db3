package openstackdouble_test

import (
	"context"
	"crypto/md5" //nolint:gosec // comparing with Glance's MD5 checksum
	"crypto/sha512"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

func newServer(t *testing.T, opts ...openstackdouble.Option) *openstackdouble.Server {
	t.Helper()
	s, err := openstackdouble.New(opts...)
	if err != nil {
		t.Fatalf("starting double: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// login parses a clouds.yaml written by the double and logs in the way the operator does.
func login(t *testing.T, s *openstackdouble.Server, o openstackdouble.CloudsYAMLOptions) (*gophercloud.ProviderClient, gophercloud.EndpointOpts, error) {
	t.Helper()
	content, name := s.CloudsYAML(o)
	ao, eo, tlsConfig, err := clouds.Parse(clouds.WithCloudsYAML(strings.NewReader(content)), clouds.WithCloudName(name))
	if err != nil {
		t.Fatalf("parsing clouds.yaml: %v\n%s", err, content)
	}
	ao.AllowReauth = true
	pc, err := config.NewProviderClient(t.Context(), ao, config.WithTLSConfig(tlsConfig))
	return pc, eo, err
}

// imageClient logs in with the default credentials and returns a Glance client.
func imageClient(t *testing.T, s *openstackdouble.Server, o openstackdouble.CloudsYAMLOptions) *gophercloud.ServiceClient {
	t.Helper()
	pc, eo, err := login(t, s, o)
	if err != nil {
		t.Fatalf("logging in: %v", err)
	}
	c, err := gopenstack.NewImageV2(pc, eo)
	if err != nil {
		t.Fatalf("creating image client: %v", err)
	}
	return c
}

// createImage creates a queued image with the formats set, as the operator will.
func createImage(t *testing.T, c *gophercloud.ServiceClient, opts images.CreateOpts) *images.Image {
	t.Helper()
	if opts.DiskFormat == "" {
		opts.DiskFormat = "qcow2"
	}
	if opts.ContainerFormat == "" {
		opts.ContainerFormat = "bare"
	}
	img, err := images.Create(t.Context(), c, opts).Extract()
	if err != nil {
		t.Fatalf("creating image %q: %v", opts.Name, err)
	}
	return img
}

func hashes(data []byte) (md5hex, sha512hex string) {
	m := md5.Sum(data) //nolint:gosec // see import
	s := sha512.Sum512(data)
	return hex.EncodeToString(m[:]), hex.EncodeToString(s[:])
}

// fileServer serves data at /image.qcow2 and 404 elsewhere, as the web-download source.
func fileServer(t *testing.T, data []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/image.qcow2" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(data)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// waitForImport polls the double until the image leaves status importing, which imports do
// asynchronously. The deadline only bounds a broken run; no assertion depends on timing.
func waitForImport(t *testing.T, s *openstackdouble.Server, id string) openstackdouble.Image {
	const from = openstackdouble.StatusImporting
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		img, ok := s.Image(id)
		if !ok {
			t.Fatalf("image %s vanished", id)
		}
		if img.Status != from {
			return img
		}
		select {
		case <-ctx.Done():
			t.Fatalf("image %s still %s", id, from)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func listAll(t *testing.T, c *gophercloud.ServiceClient, opts images.ListOpts) []images.Image {
	t.Helper()
	pages, err := images.List(c, opts).AllPages(t.Context())
	if err != nil {
		t.Fatalf("listing images: %v", err)
	}
	list, err := images.ExtractImages(pages)
	if err != nil {
		t.Fatalf("extracting images: %v", err)
	}
	return list
}

func names(list []images.Image) []string {
	out := make([]string, len(list))
	for i, img := range list {
		out[i] = img.Name
	}
	return out
}

func ptr[T any](v T) *T { return &v }

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
