package openstackdouble_test

import (
	"crypto/tls"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

func authenticatedProject(t *testing.T, pc *gophercloud.ProviderClient) string {
	t.Helper()
	res, ok := pc.GetAuthResult().(tokens.CreateResult)
	if !ok {
		t.Fatalf("auth result is %T", pc.GetAuthResult())
	}
	p, err := res.ExtractProject()
	if err != nil || p == nil {
		t.Fatalf("extracting project: %v", err)
	}
	return p.ID
}

func TestPasswordAndApplicationCredentialAuth(t *testing.T) {
	s := newServer(t,
		openstackdouble.WithUser(openstackdouble.User{Name: "alice", Password: "wonderland", Projects: []string{"p1", "p2"}}),
		openstackdouble.WithUser(openstackdouble.User{Name: "bob", Password: "builder", Domain: "Other", Projects: []string{"p3"}}),
		openstackdouble.WithApplicationCredential(openstackdouble.ApplicationCredential{Name: "ci", Secret: "s3cret", User: "alice", Project: "p2"}),
	)
	acID := s.ApplicationCredentialID("ci")

	tests := []struct {
		name        string
		opts        openstackdouble.CloudsYAMLOptions
		wantProject string // empty: login must fail with 401
	}{
		{name: "password, first project", opts: openstackdouble.CloudsYAMLOptions{User: "alice"}, wantProject: "p1"},
		{name: "password, second project", opts: openstackdouble.CloudsYAMLOptions{User: "alice", Project: "p2"}, wantProject: "p2"},
		{name: "password, other domain", opts: openstackdouble.CloudsYAMLOptions{User: "bob"}, wantProject: "p3"},
		{name: "wrong password", opts: openstackdouble.CloudsYAMLOptions{User: "alice", Password: "nope"}},
		{name: "unknown user", opts: openstackdouble.CloudsYAMLOptions{User: "mallory", Password: "x", Project: "p1"}},
		{name: "wrong user domain", opts: openstackdouble.CloudsYAMLOptions{User: "bob", Domain: "Default"}},
		{name: "project without role", opts: openstackdouble.CloudsYAMLOptions{User: "alice", Project: "p3"}},
		{name: "application credential", opts: openstackdouble.CloudsYAMLOptions{ApplicationCredentialID: acID, ApplicationCredentialSecret: "s3cret"}, wantProject: "p2"},
		{name: "application credential, wrong secret", opts: openstackdouble.CloudsYAMLOptions{ApplicationCredentialID: acID, ApplicationCredentialSecret: "nope"}},
		{name: "application credential, unknown id", opts: openstackdouble.CloudsYAMLOptions{ApplicationCredentialID: "0000", ApplicationCredentialSecret: "s3cret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc, _, err := login(t, s, tt.opts)
			if tt.wantProject == "" {
				if !gophercloud.ResponseCodeIs(err, http.StatusUnauthorized) {
					t.Fatalf("login error = %v, want 401", err)
				}
				var ue gophercloud.ErrUnexpectedResponseCode
				if errors.As(err, &ue) && !strings.Contains(string(ue.Body), `"title":"Unauthorized"`) {
					t.Errorf("401 body %s is not Keystone-style", ue.Body)
				}
				return
			}
			if err != nil {
				t.Fatalf("logging in: %v", err)
			}
			if got, want := authenticatedProject(t, pc), s.ProjectID(tt.wantProject); got != want {
				t.Errorf("token project = %s, want %s (%s)", got, want, tt.wantProject)
			}
		})
	}
}

func TestApplicationCredentialByNameAndUser(t *testing.T) {
	s := newServer(t,
		openstackdouble.WithApplicationCredential(openstackdouble.ApplicationCredential{Name: "ci", Secret: "s3cret", User: openstackdouble.DefaultUser}),
	)
	ao := gophercloud.AuthOptions{
		IdentityEndpoint:            s.AuthURL(),
		ApplicationCredentialName:   "ci",
		ApplicationCredentialSecret: "s3cret",
		Username:                    openstackdouble.DefaultUser,
		DomainName:                  openstackdouble.DefaultDomain,
	}
	pc, err := config.NewProviderClient(t.Context(), ao)
	if err != nil {
		t.Fatalf("logging in: %v", err)
	}
	if got, want := authenticatedProject(t, pc), s.ProjectID(openstackdouble.DefaultProject); got != want {
		t.Errorf("token project = %s, want %s", got, want)
	}

	ao.Username = "someone-else"
	if _, err := config.NewProviderClient(t.Context(), ao); !gophercloud.ResponseCodeIs(err, http.StatusUnauthorized) {
		t.Errorf("login with another user's credential name: error = %v, want 401", err)
	}
}

func TestProjectScopeByID(t *testing.T) {
	s := newServer(t, openstackdouble.WithProject(openstackdouble.Project{Name: openstackdouble.DefaultProject, ID: "fixed-id"}))
	ao := gophercloud.AuthOptions{
		IdentityEndpoint: s.AuthURL(), Username: openstackdouble.DefaultUser, Password: openstackdouble.DefaultPassword,
		DomainName: openstackdouble.DefaultDomain, Scope: &gophercloud.AuthScope{ProjectID: "fixed-id"},
	}
	pc, err := config.NewProviderClient(t.Context(), ao)
	if err != nil {
		t.Fatalf("logging in: %v", err)
	}
	if got := authenticatedProject(t, pc); got != "fixed-id" {
		t.Errorf("token project = %s, want fixed-id", got)
	}
}

// An auth_url without a version makes gophercloud read Keystone's version document first.
func TestUnversionedAuthURLDiscovery(t *testing.T) {
	s := newServer(t)
	_, err := gopenstack.AuthenticatedClient(t.Context(), gophercloud.AuthOptions{
		IdentityEndpoint: s.URL() + "/", Username: openstackdouble.DefaultUser, Password: openstackdouble.DefaultPassword,
		DomainName: openstackdouble.DefaultDomain, TenantName: openstackdouble.DefaultProject,
	})
	if err != nil {
		t.Fatalf("logging in: %v", err)
	}
	if got := s.Calls(openstackdouble.CallIdentityVersions); got != 1 {
		t.Errorf("version discovery calls = %d, want 1\n%s", got, s)
	}
	if got := s.Calls(openstackdouble.CallAuthTokens); got != 1 {
		t.Errorf("token calls = %d, want 1", got)
	}
}

func TestCatalogRegionAndInterface(t *testing.T) {
	s := newServer(t, openstackdouble.WithRegion("RegionOne"), openstackdouble.WithRegion("RegionTwo"))
	tests := []struct {
		region, iface string
		wantFound     bool
	}{
		{region: "RegionOne", iface: "public", wantFound: true},
		{region: "RegionTwo", iface: "internal", wantFound: true},
		{region: "RegionTwo", iface: "admin", wantFound: true},
		{region: "RegionThree", iface: "public"},
	}
	for _, tt := range tests {
		t.Run(tt.region+"/"+tt.iface, func(t *testing.T) {
			pc, eo, err := login(t, s, openstackdouble.CloudsYAMLOptions{Region: tt.region, Interface: tt.iface})
			if err != nil {
				t.Fatalf("logging in: %v", err)
			}
			c, err := gopenstack.NewImageV2(pc, eo)
			if !tt.wantFound {
				var nf *gophercloud.ErrEndpointNotFound
				if !errors.As(err, &nf) {
					t.Fatalf("NewImageV2 error = %v, want endpoint not found", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewImageV2: %v", err)
			}
			if want := s.ImageEndpoint(tt.region, tt.iface); c.Endpoint != want {
				t.Errorf("endpoint = %s, want %s", c.Endpoint, want)
			}
			// The endpoint really serves Glance.
			if _, err := images.List(c, nil).AllPages(t.Context()); err != nil {
				t.Errorf("listing through %s: %v", c.Endpoint, err)
			}
		})
	}
}

func TestTokenExpiryReauthenticates(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newServer(t, openstackdouble.WithTokenLifetime(time.Hour), openstackdouble.WithClock(clock.Now))
	c := imageClient(t, s, openstackdouble.CloudsYAMLOptions{})
	img := createImage(t, c, images.CreateOpts{Name: "a"})

	clock.Advance(61 * time.Minute)
	if _, err := images.Get(t.Context(), c, img.ID).Extract(); err != nil {
		t.Fatalf("getting image after token expiry: %v", err)
	}
	if got := s.Calls(openstackdouble.CallAuthTokens); got != 2 {
		t.Errorf("token calls = %d, want 2 (login and re-login)", got)
	}
	if got := s.Calls(openstackdouble.CallGetImage); got != 2 {
		t.Errorf("get calls = %d, want 2 (401 and retry)", got)
	}

	// A token that is still valid is reused.
	clock.Advance(30 * time.Minute)
	if _, err := images.Get(t.Context(), c, img.ID).Extract(); err != nil {
		t.Fatalf("getting image: %v", err)
	}
	if got := s.Calls(openstackdouble.CallAuthTokens); got != 2 {
		t.Errorf("token calls = %d, want still 2", got)
	}

	s.ExpireTokens()
	if _, err := images.Get(t.Context(), c, img.ID).Extract(); err != nil {
		t.Fatalf("getting image after revocation: %v", err)
	}
	if got := s.Calls(openstackdouble.CallAuthTokens); got != 3 {
		t.Errorf("token calls = %d, want 3", got)
	}
}

func TestGlanceRejectsMissingToken(t *testing.T) {
	s := newServer(t)
	resp, err := http.Get(s.ImageEndpoint(openstackdouble.DefaultRegion, "public") + "v2/images")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status = %d, want 401", resp.StatusCode)
	}
}

func TestTLS(t *testing.T) {
	s := newServer(t, openstackdouble.WithTLS())
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, s.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("URL %s is not https", s.URL())
	}
	tests := []struct {
		name    string
		opts    openstackdouble.CloudsYAMLOptions
		wantErr bool
	}{
		{name: "cacert", opts: openstackdouble.CloudsYAMLOptions{CACertFile: caFile}},
		{name: "verify false", opts: openstackdouble.CloudsYAMLOptions{Verify: ptr(false)}},
		{name: "no cacert", opts: openstackdouble.CloudsYAMLOptions{}, wantErr: true},
		{name: "cacert but verify true", opts: openstackdouble.CloudsYAMLOptions{CACertFile: caFile, Verify: ptr(true)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := login(t, s, tt.opts)
			if (err != nil) != tt.wantErr {
				t.Fatalf("login error = %v, want error: %t", err, tt.wantErr)
			}
			var cv *tls.CertificateVerificationError
			if err != nil && !errors.As(err, &cv) {
				t.Errorf("error %v is not a certificate verification error", err)
			}
		})
	}
}
