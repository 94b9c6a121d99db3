package openstackdouble_test

import (
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/applicationcredentials"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"

	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

func identityClient(t *testing.T, pc *gophercloud.ProviderClient) (*gophercloud.ServiceClient, string) {
	t.Helper()
	c, err := gopenstack.NewIdentityV3(pc, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatalf("identity client: %v", err)
	}
	u, err := pc.GetAuthResult().(tokens.CreateResult).ExtractUser()
	if err != nil {
		t.Fatalf("extracting user: %v", err)
	}
	return c, u.ID
}

func TestApplicationCredentialLifecycle(t *testing.T) {
	var mu sync.Mutex
	now := time.Now().UTC()
	s := newServer(t, openstackdouble.WithClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now }))
	pc, _, err := login(t, s, openstackdouble.CloudsYAMLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ic, userID := identityClient(t, pc)
	// Trailing zeros: gophercloud sends ".12", not ".120000".
	expires := now.Add(time.Hour).Truncate(time.Second).Add(120 * time.Millisecond)
	ac, err := applicationcredentials.Create(t.Context(), ic, userID, applicationcredentials.CreateOpts{
		Name: "c1", Roles: []applicationcredentials.Role{{Name: "member"}}, ExpiresAt: &expires,
	}).Extract()
	if err != nil {
		t.Fatalf("creating: %v", err)
	}
	if ac.Secret == "" || ac.Unrestricted || !ac.ExpiresAt.Equal(expires) || len(ac.Roles) != 1 || ac.Roles[0].Name != "member" {
		t.Fatalf("created %+v", ac)
	}
	if _, err := applicationcredentials.Create(t.Context(), ic, userID, applicationcredentials.CreateOpts{Name: "c1"}).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
		t.Errorf("duplicate name: %v, want 409", err)
	}
	if _, err := applicationcredentials.Create(t.Context(), ic, userID, applicationcredentials.CreateOpts{Name: "c2", Roles: []applicationcredentials.Role{{Name: "admin"}}}).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
		t.Errorf("unassigned role: %v, want 403", err)
	}

	// The credential logs in, carries only its role and cannot mint further credentials.
	acPC, _, err := login(t, s, openstackdouble.CloudsYAMLOptions{ApplicationCredentialID: ac.ID, ApplicationCredentialSecret: ac.Secret})
	if err != nil {
		t.Fatalf("logging in with the credential: %v", err)
	}
	roles, err := acPC.GetAuthResult().(tokens.CreateResult).ExtractRoles()
	if err != nil || len(roles) != 1 || roles[0].Name != "member" {
		t.Errorf("roles %+v, %v", roles, err)
	}
	acIC, _ := identityClient(t, acPC)
	if _, err := applicationcredentials.Create(t.Context(), acIC, userID, applicationcredentials.CreateOpts{Name: "escalate"}).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
		t.Errorf("restricted credential creating another: %v, want 403", err)
	}

	pages, err := applicationcredentials.List(ic, userID, applicationcredentials.ListOpts{Name: "c1"}).AllPages(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	list, _ := applicationcredentials.ExtractApplicationCredentials(pages)
	if len(list) != 1 || list[0].ID != ac.ID || list[0].Secret != "" {
		t.Errorf("list %+v", list)
	}

	// Expired: no login.
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	if _, _, err := login(t, s, openstackdouble.CloudsYAMLOptions{ApplicationCredentialID: ac.ID, ApplicationCredentialSecret: ac.Secret}); err == nil {
		t.Error("an expired credential logged in")
	}
	mu.Lock()
	now = now.Add(-2 * time.Hour)
	mu.Unlock()

	// Deleted: gone, and its tokens with it.
	if err := applicationcredentials.Delete(t.Context(), ic, userID, ac.ID).ExtractErr(); err != nil {
		t.Fatalf("deleting: %v", err)
	}
	if err := applicationcredentials.Delete(t.Context(), ic, userID, ac.ID).ExtractErr(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("second delete: %v, want 404", err)
	}
	if got := s.ApplicationCredentials(); len(got) != 0 {
		t.Errorf("left %+v", got)
	}
	if _, _, err := login(t, s, openstackdouble.CloudsYAMLOptions{ApplicationCredentialID: ac.ID, ApplicationCredentialSecret: ac.Secret}); err == nil {
		t.Error("a deleted credential logged in")
	}
}

func TestApplicationCredentialFaults(t *testing.T) {
	s := newServer(t)
	pc, _, err := login(t, s, openstackdouble.CloudsYAMLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ic, userID := identityClient(t, pc)
	s.InjectFault(openstackdouble.Fault{Method: http.MethodPost, Path: "/v3/users/{user_id}/application_credentials", Status: http.StatusServiceUnavailable, Times: 1})
	_, err = applicationcredentials.Create(t.Context(), ic, userID, applicationcredentials.CreateOpts{Name: "x"}).Extract()
	var unexpected gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &unexpected) || unexpected.Actual != http.StatusServiceUnavailable {
		t.Fatalf("faulted create: %v", err)
	}
	if _, err := applicationcredentials.Create(t.Context(), ic, userID, applicationcredentials.CreateOpts{Name: "x"}).Extract(); err != nil {
		t.Fatalf("create after the fault: %v", err)
	}
	if n := s.Calls(openstackdouble.CallCreateApplicationCredential); n != 2 {
		t.Errorf("%d create calls, want 2", n)
	}
	if got := s.ApplicationCredentials(); len(got) != 1 || !slices.Equal(got[0].Roles, openstackdouble.ProjectRoles) {
		t.Errorf("credentials %+v", got)
	}
}
