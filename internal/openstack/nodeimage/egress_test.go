package nodeimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

// glance starts the OpenStack double and returns a Glance client for it. The double listens on
// loopback: the OpenStack API endpoints come from the administrator's clouds.yaml, not from
// release content, so the egress policy does not apply to them.
func glance(t *testing.T, webDownload bool) (*openstackdouble.Server, clients.ImageClient) {
	t.Helper()
	s, err := openstackdouble.New(openstackdouble.WithWebDownload(webDownload))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	content, cloud := s.CloudsYAML(openstackdouble.CloudsYAMLOptions{})
	ao, eo, tlsConfig, err := clouds.Parse(clouds.WithCloudsYAML(strings.NewReader(content)), clouds.WithCloudName(cloud))
	if err != nil {
		t.Fatal(err)
	}
	pc, err := config.NewProviderClient(context.Background(), ao, config.WithTLSConfig(tlsConfig))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := gopenstack.NewImageV2(pc, eo)
	if err != nil {
		t.Fatal(err)
	}
	return s, clients.NewImageClient(sc)
}

func imageObject(url string, hash *infrav1.ImageHash) *infrav1.OpenStackNodeImageRelease {
	return &infrav1.OpenStackNodeImageRelease{Spec: infrav1.OpenStackNodeImageReleaseSpec{Image: &infrav1.NodeImage{
		URL:        url,
		CreateOpts: &infrav1.ImageCreateOpts{Name: "ubuntu-capi-image-v1.32.5", DiskFormat: "qcow2", ContainerFormat: "bare"},
		Hash:       hash,
	}}}
}

func listen(t *testing.T, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	s := &httptest.Server{Listener: l, Config: &http.Server{Handler: h, ReadHeaderTimeout: time.Minute}}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// TestImageURLRefused: URLs naming loopback, link-local or metadata addresses are refused before
// anything is created in Glance, for the web-download path (Glance would fetch them from inside
// the cloud) and the upload path, with a terminal URLRefused naming the URL and the flag.
func TestImageURLRefused(t *testing.T) {
	data := []byte("image bytes from a loopback-only server")
	sum := sha256.Sum256(data)
	hash := &infrav1.ImageHash{Algorithm: infrav1.HashAlgorithmSHA256, Value: hex.EncodeToString(sum[:])}
	files := listen(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(data) }))
	_, port, _ := net.SplitHostPort(files.Listener.Addr().String())

	urls := []string{
		files.URL + "/ubuntu.qcow2",
		"http://localhost:" + port + "/ubuntu.qcow2",
		"http://169.254.169.254/latest/meta-data/iam/",
		"http://[::1]:10250/pods",
		"http://[fd00:ec2::254]/latest/",
		"http://10.0.0.1/ubuntu.qcow2",
	}
	for _, webDownload := range []bool{true, false} {
		for _, u := range urls {
			name := "upload"
			if webDownload {
				name = "web-download"
			}
			t.Run(name+" "+u, func(t *testing.T) {
				cloud, images := glance(t, webDownload)
				var h *infrav1.ImageHash
				if !webDownload {
					h = hash
				}
				svc := NewService(images, Options{})
				_, err := svc.Ensure(context.Background(), imageObject(u, h), noPersist)
				var te *TerminalError
				if !errors.As(err, &te) || te.Reason != infrav1.URLRefusedReason {
					t.Fatalf("got %v, want a terminal %s", err, infrav1.URLRefusedReason)
				}
				for _, want := range []string{u, egress.FlagAllowCIDRs} {
					if !strings.Contains(te.Message, want) {
						t.Errorf("message %q does not name %q", te.Message, want)
					}
				}
				if n := len(cloud.Images()); n != 0 {
					t.Errorf("%d images created in Glance for a refused URL", n)
				}
			})
		}
	}

	t.Run("allowed for tests", func(t *testing.T) {
		_, images := glance(t, false)
		svc := NewService(images, Options{Egress: egress.AllowLoopbackForTests()})
		out, err := svc.Ensure(context.Background(), imageObject(files.URL+"/ubuntu.qcow2", hash), noPersist)
		if err != nil || !out.Ready {
			t.Fatalf("Ensure: %+v, %v", out, err)
		}
	})

	t.Run("redirect to a refused address", func(t *testing.T) {
		inner := listen(t, "127.0.0.2:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(data) }))
		outer := listen(t, "127.0.0.1:0", http.RedirectHandler(inner.URL+"/ubuntu.qcow2", http.StatusFound))
		_, images := glance(t, false)
		only1 := &egress.Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
		svc := NewService(images, Options{Egress: only1})
		_, err := svc.Ensure(context.Background(), imageObject(outer.URL+"/ubuntu.qcow2", hash), noPersist)
		var te *TerminalError
		if !errors.As(err, &te) || te.Reason != infrav1.URLRefusedReason || !strings.Contains(te.Message, "127.0.0.2") {
			t.Fatalf("got %v, want a terminal %s naming 127.0.0.2", err, infrav1.URLRefusedReason)
		}
	})
}
