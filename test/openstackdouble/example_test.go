package openstackdouble_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

// A test starts the double, hands its clouds.yaml to the code under test, injects faults and
// asserts on the calls made and the images stored.
func Example() {
	ctx := context.Background()
	s, err := openstackdouble.New(openstackdouble.WithRegion("RegionOne"))
	if err != nil {
		panic(err)
	}
	defer s.Close()

	content, cloud := s.CloudsYAML(openstackdouble.CloudsYAMLOptions{Interface: "internal"})
	ao, eo, tlsConfig, err := clouds.Parse(clouds.WithCloudsYAML(strings.NewReader(content)), clouds.WithCloudName(cloud))
	if err != nil {
		panic(err)
	}
	ao.AllowReauth = true
	pc, err := config.NewProviderClient(ctx, ao, config.WithTLSConfig(tlsConfig))
	if err != nil {
		panic(err)
	}
	glance, err := gopenstack.NewImageV2(pc, eo)
	if err != nil {
		panic(err)
	}

	// The first create looks like an expired token; gophercloud logs in again and retries.
	s.InjectFault(openstackdouble.Fault{Method: http.MethodPost, Path: "/v2/images", Status: http.StatusUnauthorized, Times: 1})
	img, err := images.Create(ctx, glance, images.CreateOpts{Name: "ubuntu", DiskFormat: "qcow2", ContainerFormat: "bare"}).Extract()
	if err != nil {
		panic(err)
	}

	fmt.Println(img.Status, len(s.Images()))
	fmt.Println(s.Calls(openstackdouble.CallAuthTokens), s.Calls(openstackdouble.CallCreateImage))
	// Output:
	// queued 1
	// 2 2
}
