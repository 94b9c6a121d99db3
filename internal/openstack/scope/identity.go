package scope

import (
	"context"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
)

// Cloud is where a login went, for writing a clouds.yaml that reaches the same cloud with other
// credentials. It holds no credential.
type Cloud struct {
	// AuthURL is the Keystone endpoint of the Secret's clouds.yaml entry.
	AuthURL string
	// Region and Interface select endpoints in the service catalog ("" and "public" by default).
	Region, Interface string
	// CACert is the PEM of the Secret's cacert key, nil when it has none.
	CACert []byte
	// Insecure is clouds.yaml's verify: false.
	Insecure bool
}

// ApplicationCredentials is a Keystone client for the logged-in user's application credentials,
// with the cloud it reaches.
type ApplicationCredentials struct {
	Client clients.ApplicationCredentialClient
	Cloud  Cloud
}

// ApplicationCredentials returns a client for the application credentials of the user that the
// credentials of ref in namespace log in as. Problems with the Secret or the login are
// *CredentialsError; a login that is not scoped to a project is one too, since a credential is
// always bound to the project of the token that creates it.
func (f *Factory) ApplicationCredentials(ctx context.Context, namespace string, ref *infrav1.OpenStackIdentityReference) (*ApplicationCredentials, error) {
	e, secretRef, _, err := f.login(ctx, namespace, ref)
	if err != nil {
		return nil, err
	}
	defer e.mu.Unlock()
	if e.appCreds != nil {
		return e.appCreds, nil
	}
	svc, err := openstack.NewIdentityV3(e.provider, gophercloud.EndpointOpts{Region: e.creds.EndpointOpts.Region, Availability: e.creds.EndpointOpts.Availability})
	if err != nil {
		return nil, credErr(secretRef, ErrNoEndpoint, "the service catalog of cloud %q has no identity endpoint for region %q and interface %q",
			e.creds.CloudName, e.creds.EndpointOpts.Region, e.creds.EndpointOpts.Availability)
	}
	if !e.scope.v3 {
		return nil, credErr(secretRef, ErrInvalidCloud, "cloud %q does not log in with a Keystone v3 token", e.creds.CloudName)
	}
	if e.scope.userID == "" {
		return nil, credErr(secretRef, ErrInvalidCloud, "the Keystone token of cloud %q names no user", e.creds.CloudName)
	}
	if e.scope.projectID == "" {
		return nil, credErr(secretRef, ErrInvalidCloud, "cloud %q logs in without a project scope; set project_id or project_name in its auth section", e.creds.CloudName)
	}
	iface := string(e.creds.EndpointOpts.Availability)
	if iface == "" {
		iface = string(gophercloud.AvailabilityPublic)
	}
	e.appCreds = &ApplicationCredentials{
		Client: clients.NewApplicationCredentialClient(svc, e.scope.userID, e.scope.projectID),
		Cloud: Cloud{
			AuthURL: e.creds.AuthOptions.IdentityEndpoint, Region: e.creds.EndpointOpts.Region, Interface: iface,
			CACert: e.caPEM, Insecure: e.creds.TLSConfig != nil && e.creds.TLSConfig.InsecureSkipVerify,
		},
	}
	return e.appCreds, nil
}
