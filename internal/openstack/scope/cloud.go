package scope

import (
	"context"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
)

// CloudReader returns the read-only client of the capability check, logged in with the
// credentials of ref in namespace; it shares the login (one token) with ImageClient. Problems with
// the Secret or the login are *CredentialsError.
func (f *Factory) CloudReader(ctx context.Context, namespace string, ref *infrav1.OpenStackIdentityReference) (clients.CloudReader, error) {
	e, _, creds, err := f.login(ctx, namespace, ref)
	if err != nil {
		return nil, err
	}
	defer e.mu.Unlock()
	if e.cloud == nil {
		e.cloud = clients.NewCloudReader(e.provider, creds.EndpointOpts)
	}
	return e.cloud, nil
}
