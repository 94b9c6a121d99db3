package clients

import (
	"context"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/applicationcredentials"
)

// ApplicationCredentialClient is the part of Keystone v3 the operator uses for per-cluster
// application credentials: those of the one user it is logged in as.
type ApplicationCredentialClient interface {
	// UserID is the ID of the user the client is logged in as; credentials belong to it.
	UserID() string
	// ProjectID is the ID of the project the login is scoped to; new credentials are bound to it.
	ProjectID() string
	// ListApplicationCredentials returns the user's credentials (without secrets).
	ListApplicationCredentials(ctx context.Context) ([]applicationcredentials.ApplicationCredential, error)
	// CreateApplicationCredential creates a credential; the result holds its secret, which
	// Keystone never shows again.
	CreateApplicationCredential(ctx context.Context, opts applicationcredentials.CreateOpts) (*applicationcredentials.ApplicationCredential, error)
	// DeleteApplicationCredential revokes a credential (and the tokens issued for it).
	DeleteApplicationCredential(ctx context.Context, id string) error
}

type appCredClient struct {
	client            *gophercloud.ServiceClient
	userID, projectID string
}

// NewApplicationCredentialClient wraps a Keystone v3 service client logged in as userID, scoped
// to projectID.
func NewApplicationCredentialClient(client *gophercloud.ServiceClient, userID, projectID string) ApplicationCredentialClient {
	return appCredClient{client: client, userID: userID, projectID: projectID}
}

func (c appCredClient) UserID() string    { return c.userID }
func (c appCredClient) ProjectID() string { return c.projectID }

func (c appCredClient) ListApplicationCredentials(ctx context.Context) (list []applicationcredentials.ApplicationCredential, err error) {
	defer func(start time.Time) { observeIdentity("ListApplicationCredentials", start, err) }(time.Now())
	pages, err := applicationcredentials.List(c.client, c.userID, applicationcredentials.ListOpts{}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	return applicationcredentials.ExtractApplicationCredentials(pages)
}

func (c appCredClient) CreateApplicationCredential(ctx context.Context, opts applicationcredentials.CreateOpts) (ac *applicationcredentials.ApplicationCredential, err error) {
	defer func(start time.Time) { observeIdentity("CreateApplicationCredential", start, err) }(time.Now())
	return applicationcredentials.Create(ctx, c.client, c.userID, opts).Extract()
}

func (c appCredClient) DeleteApplicationCredential(ctx context.Context, id string) (err error) {
	defer func(start time.Time) { observeIdentity("DeleteApplicationCredential", start, err) }(time.Now())
	return applicationcredentials.Delete(ctx, c.client, c.userID, id).ExtractErr()
}

// observeIdentity records one Keystone call other than a login (those are recorded by
// InstrumentedTransport).
func observeIdentity(operation string, start time.Time, err error) {
	const service = ServiceIdentity
	requestsTotal.WithLabelValues(service, operation).Inc()
	requestDuration.WithLabelValues(service, operation).Observe(time.Since(start).Seconds())
	if err != nil {
		requestErrorsTotal.WithLabelValues(service, operation, Classify(err).Kind.String()).Inc()
	}
}
