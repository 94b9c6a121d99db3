package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imageimport"
)

// The written clouds.yaml must be all a client needs to reach Glance, over HTTP and HTTPS.
func TestStartWritesUsableCloudsYAML(t *testing.T) {
	for _, tt := range []struct {
		name        string
		args        []string
		wantMethods int
	}{
		{name: "http with web-download", args: nil, wantMethods: 3},
		{name: "https without web-download", args: []string{"-tls", "-web-download=false", "-region", "Lab", "-interface", "internal"}, wantMethods: 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "clouds.yaml")
			var out bytes.Buffer
			args := append([]string{"-listen", "127.0.0.1:0", "-clouds-yaml", path, "-cloud-name", "double", "-user", "u", "-password", "p", "-project", "pr"}, tt.args...)
			s, err := start(args, &out)
			if err != nil {
				t.Fatalf("starting: %v", err)
			}
			defer s.Close()
			if !strings.Contains(out.String(), s.AuthURL()) {
				t.Errorf("output %q does not print the auth URL", out.String())
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = f.Close() }()
			ao, eo, tlsConfig, err := clouds.Parse(clouds.WithCloudsYAML(f), clouds.WithCloudName("double"))
			if err != nil {
				t.Fatalf("parsing clouds.yaml: %v", err)
			}
			pc, err := config.NewProviderClient(t.Context(), ao, config.WithTLSConfig(tlsConfig))
			if err != nil {
				t.Fatalf("logging in: %v", err)
			}
			c, err := gopenstack.NewImageV2(pc, eo)
			if err != nil {
				t.Fatalf("finding Glance: %v", err)
			}
			info, err := imageimport.Get(t.Context(), c).Extract()
			if err != nil {
				t.Fatalf("getting import info: %v", err)
			}
			if len(info.ImportMethods.Value) != tt.wantMethods {
				t.Errorf("import methods = %v", info.ImportMethods.Value)
			}
		})
	}
}

func TestStartRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-token-lifetime", "0s", "-listen", "127.0.0.1:0"}, {"-no-such-flag"}, {"extra"}} {
		if s, err := start(args, &bytes.Buffer{}); err == nil {
			s.Close()
			t.Errorf("start(%q) succeeded", args)
		}
	}
}
