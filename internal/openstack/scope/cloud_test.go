package scope

import (
	"net/http"
	"slices"
	"testing"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

// TestCloudReader reads every answer of the capability check from the double through the
// factory's login, which it shares with ImageClient, and checks that a service missing from the
// catalog is reported as such and that a fault is classified with the service's name.
func TestCloudReader(t *testing.T) {
	srv, err := openstackdouble.New(openstackdouble.WithoutService(openstackdouble.ServiceLoadBalancer),
		openstackdouble.WithNetworks(openstackdouble.Network{Name: "public", External: true}, openstackdouble.Network{Name: "private"}),
		openstackdouble.WithDiskFormats("raw", "qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := t.Context()
	cloudsYAML, _ := srv.CloudsYAML(openstackdouble.CloudsYAMLOptions{})
	sec := secretWith(map[string]string{CloudsYAMLKey: cloudsYAML})
	sec.UID, sec.ResourceVersion = "uid-1", "1"
	f := NewFactory(secrets{"ns/creds": sec})
	ref := &infrav1.OpenStackIdentityReference{Kind: "Secret", Name: "creds"}
	if _, err := f.ImageClient(ctx, "ns", ref); err != nil {
		t.Fatal(err)
	}
	c, err := f.CloudReader(ctx, "ns", ref)
	if err != nil {
		t.Fatal(err)
	}
	if n := srv.Calls(openstackdouble.CallAuthTokens); n != 1 {
		t.Errorf("logins = %d, want 1 shared by both clients", n)
	}
	want := []string{clients.TypeBlockStorage, clients.TypeCompute, clients.TypeImage, clients.TypeNetwork}
	if got := c.Services(); !slices.Equal(got, want) {
		t.Errorf("Services() = %v, want %v", got, want)
	}

	flavors, err := c.ListFlavors(ctx)
	if err != nil || len(flavors) != len(openstackdouble.DefaultFlavors) || flavors[0].Name != "SCS-2V-4" {
		t.Errorf("ListFlavors() = %+v, %v", flavors, err)
	}
	cl, err := c.ComputeLimits(ctx)
	if err != nil || cl.MaxTotalInstances != 10 || cl.MaxTotalCores != 20 {
		t.Errorf("ComputeLimits() = %+v, %v", cl, err)
	}
	nets, err := c.ListExternalNetworks(ctx)
	if err != nil || len(nets) != 1 || nets[0].Name != "public" {
		t.Errorf("ListExternalNetworks() = %+v, %v", nets, err)
	}
	vl, err := c.VolumeLimits(ctx)
	if err != nil || vl.MaxTotalVolumeGigabytes != 1000 {
		t.Errorf("VolumeLimits() = %+v, %v", vl, err)
	}
	methods, err := c.ImportMethods(ctx)
	if err != nil || !slices.Contains(methods, "web-download") {
		t.Errorf("ImportMethods() = %v, %v", methods, err)
	}
	formats, err := c.DiskFormats(ctx)
	if err != nil || !slices.Equal(formats, []string{"raw", "qcow2"}) {
		t.Errorf("DiskFormats() = %v, %v", formats, err)
	}
	usage, err := c.ImageUsage(ctx)
	if err != nil || usage.CountLimit != -1 {
		t.Errorf("ImageUsage() = %+v, %v", usage, err)
	}

	srv.SetImageUsage(nil)
	if _, err := c.ImageUsage(ctx); !clients.IsNotFound(err) {
		t.Errorf("ImageUsage() of a Glance without unified limits = %v, want not found", err)
	}
	srv.InjectFault(openstackdouble.Fault{Path: "/v3/{project_id}/limits", Status: http.StatusServiceUnavailable, Times: 1})
	_, err = c.VolumeLimits(ctx)
	if class := clients.Classify(err); class.Kind != clients.KindRetryable || class.Service != clients.NameCinder {
		t.Errorf("Classify(%v) = %+v, want a retryable Cinder error", err, class)
	}
	srv.InjectFault(openstackdouble.Fault{Path: "/v2.0/networks", Status: http.StatusForbidden, Times: 1})
	_, err = c.ListExternalNetworks(ctx)
	if class := clients.Classify(err); class.Kind != clients.KindTerminal || class.Service != clients.NameNeutron || class.StatusCode != 403 {
		t.Errorf("Classify(%v) = %+v, want a terminal Neutron 403", err, class)
	}
	srv.InjectFault(openstackdouble.Fault{Path: "/v2.1/flavors/detail", Status: http.StatusTooManyRequests, Times: 1})
	_, err = c.ListFlavors(ctx)
	if class := clients.Classify(err); class.Kind != clients.KindRetryable || class.Service != clients.NameNova {
		t.Errorf("Classify(%v) = %+v, want a retryable Nova error", err, class)
	}
}
