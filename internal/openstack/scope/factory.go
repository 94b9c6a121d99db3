package scope

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/lru"
	"sigs.k8s.io/controller-runtime/pkg/client"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
)

// userAgent is prepended to gophercloud's, so that cloud operators can tell our calls apart.
const userAgent = "clusterstack-operator"

// DefaultRequestTimeout bounds every OpenStack request (not transfers, which have a progress
// deadline instead): Keystone and Glance answer API calls in well under a second, so a minute
// means the cloud hangs.
const DefaultRequestTimeout = time.Minute

// maxClients bounds the logged-in clients a Factory keeps: one per credentials Secret in
// use, so far more than a management cluster's projects, while a cluster cycling through many
// Secrets cannot grow the cache (and the tokens and connections it holds) without bound.
const maxClients = 256

// Factory hands out service clients for identityRefs. It is safe for concurrent use and meant to
// live as long as the manager.
type Factory struct {
	// reader reads Secrets; it should go to the API server (the manager's API reader), because the
	// operator does not cache Secrets.
	reader client.Reader
	// requestTimeout bounds each HTTP request to OpenStack (see clients.TimeoutTransport).
	requestTimeout time.Duration

	// mu makes looking an entry up and adding it one step.
	mu sync.Mutex
	// clients maps a Secret's namespace/name to the *entry of the version last read; the least
	// recently used Secret goes first when there are more than maxClients.
	clients *lru.Cache
}

// version identifies one set of credentials. A changed Secret has a new resourceVersion, so the
// next reconcile logs in with the new content; a Secret deleted and re-created has a new UID.
type version struct {
	uid             types.UID
	resourceVersion string
	cloud           string
}

type entry struct {
	version version
	// mu serialises the login so that concurrent reconciles with the same credentials log in once.
	mu sync.Mutex
	// provider is the logged-in provider client all service clients of the entry share (one
	// token), creds what it logged in with, caPEM the Secret's cacert.
	provider *gophercloud.ProviderClient
	creds    *Credentials
	caPEM    []byte
	image    clients.ImageClient
	cloud    clients.CloudReader
	appCreds *ApplicationCredentials
	// scope is who the token logged in as (see tokenScope).
	scope tokenScope
}

// FactoryOption configures a Factory.
type FactoryOption func(*Factory)

// WithRequestTimeout sets the deadline of each OpenStack request (DefaultRequestTimeout when not
// positive).
func WithRequestTimeout(d time.Duration) FactoryOption {
	return func(f *Factory) {
		if d > 0 {
			f.requestTimeout = d
		}
	}
}

// NewFactory returns a Factory reading Secrets with reader.
func NewFactory(reader client.Reader, opts ...FactoryOption) *Factory {
	f := &Factory{reader: reader, requestTimeout: DefaultRequestTimeout, clients: lru.New(maxClients)}
	for _, o := range opts {
		o(f)
	}
	return f
}

// ImageClient returns a Glance client logged in with the credentials of ref in namespace.
// Problems with the Secret or the login are *CredentialsError.
func (f *Factory) ImageClient(ctx context.Context, namespace string, ref *infrav1.OpenStackIdentityReference) (clients.ImageClient, error) {
	e, secretRef, creds, err := f.login(ctx, namespace, ref)
	if err != nil {
		return nil, err
	}
	defer e.mu.Unlock()
	if e.image != nil {
		return e.image, nil
	}
	svc, err := openstack.NewImageV2(e.provider, creds.EndpointOpts)
	if err != nil {
		return nil, credErr(secretRef, ErrNoEndpoint, "the service catalog of cloud %q has no image endpoint for region %q and interface %q",
			creds.CloudName, creds.EndpointOpts.Region, creds.EndpointOpts.Availability)
	}
	e.image = clients.NewImageClient(svc)
	return e.image, nil
}

// login returns the locked cache entry of ref's Secret, logged in once per version of the
// Secret, with the Secret's name and credentials. The caller unlocks e.mu.
func (f *Factory) login(ctx context.Context, namespace string, ref *infrav1.OpenStackIdentityReference) (e *entry, secretRef types.NamespacedName, creds *Credentials, err error) {
	secretRef = types.NamespacedName{Namespace: namespace, Name: DefaultCloudName}
	if ref != nil && ref.Name != "" {
		secretRef.Name = ref.Name
	}
	if ref != nil && ref.Kind != "" && ref.Kind != "Secret" {
		return nil, secretRef, nil, credErr(secretRef, ErrInvalidCloud, "identityRef kind %q is not supported; use Secret", ref.Kind)
	}
	secret := &corev1.Secret{}
	if err := f.reader.Get(ctx, secretRef, secret); err != nil {
		if apierrors.IsNotFound(err) {
			// A Secret that is gone takes its login with it.
			f.clients.Remove(secretRef)
			return nil, secretRef, nil, credErr(secretRef, ErrSecretNotFound, "not found in namespace %s", namespace)
		}
		return nil, secretRef, nil, fmt.Errorf("reading credentials Secret %s: %w", secretRef, err)
	}
	e = f.entry(secretRef, version{uid: secret.UID, resourceVersion: secret.ResourceVersion, cloud: CloudName(secret)})

	e.mu.Lock()
	if e.provider != nil {
		return e, secretRef, e.creds, nil
	}
	creds, err = ParseSecret(secret)
	if err != nil {
		e.mu.Unlock()
		return nil, secretRef, nil, err
	}
	provider, scope, err := authenticate(ctx, creds, f.requestTimeout)
	if err != nil {
		e.mu.Unlock()
		return nil, secretRef, nil, loginError(secretRef, creds, err)
	}
	e.provider, e.creds, e.caPEM, e.scope = provider, creds, secret.Data[CACertKey], scope
	return e, secretRef, creds, nil
}

// entry returns the cache entry of the Secret's version v: a version other than the cached one
// replaces it, since an older version of a Secret is never asked for again.
func (f *Factory) entry(secret types.NamespacedName, v version) *entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cached, ok := f.clients.Get(secret); ok && cached.(*entry).version == v {
		return cached.(*entry)
	}
	e := &entry{version: v}
	f.clients.Add(secret, e)
	return e
}

func authenticate(ctx context.Context, creds *Credentials, requestTimeout time.Duration) (*gophercloud.ProviderClient, tokenScope, error) {
	provider, err := openstack.NewClient(creds.AuthOptions.IdentityEndpoint)
	if err != nil {
		return nil, tokenScope{}, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = creds.TLSConfig
	// No http.Client.Timeout: it would bound uploads as a whole. Each request gets its own
	// deadline instead, and uploads a progress deadline (see clients.TimeoutTransport).
	provider.HTTPClient = http.Client{Transport: clients.InstrumentedTransport(clients.TimeoutTransport(transport, requestTimeout))}
	provider.UserAgent.Prepend(userAgent)
	if err := openstack.Authenticate(ctx, provider, creds.AuthOptions); err != nil {
		return nil, tokenScope{}, err
	}
	scope := scopeOf(provider.GetAuthResult())
	if err := keepTokenIDOnly(provider); err != nil {
		return nil, tokenScope{}, err
	}
	if reauth := provider.ReauthFunc; reauth != nil {
		// A new token (the old one expired) comes with a whole answer again.
		provider.ReauthFunc = func(ctx context.Context) error {
			if err := reauth(ctx); err != nil {
				return err
			}
			return keepTokenIDOnly(provider)
		}
	}
	return provider, scope, nil
}

// tokenScope is what the application credentials need of a login: the user and the project of
// its token. A token that is not a Keystone v3 one leaves v3 false.
type tokenScope struct {
	v3                bool
	userID, projectID string
}

func scopeOf(res gophercloud.AuthResult) tokenScope {
	created, ok := res.(tokens.CreateResult)
	if !ok {
		return tokenScope{}
	}
	s := tokenScope{v3: true}
	if user, err := created.ExtractUser(); err == nil && user != nil {
		s.userID = user.ID
	}
	if project, err := created.ExtractProject(); err == nil && project != nil {
		s.projectID = project.ID
	}
	return s
}

// tokenID is a logged-in provider's auth result once the login is done: its token's ID.
// gophercloud keeps the whole decoded answer of the token request (the service catalog, roles,
// user and project as generic maps) for GetAuthResult, which nothing reads after the login: the
// endpoints were located from the catalog then. Per logged-in Secret that answer was the larger
// part of what the Factory holds (about 28 KiB against the OpenStack double, more against a
// cloud with a large catalog).
type tokenID string

func (t tokenID) ExtractTokenID() (string, error) { return string(t), nil }

func keepTokenIDOnly(provider *gophercloud.ProviderClient) error {
	return provider.SetTokenAndAuthResult(tokenID(provider.Token()))
}

// loginError turns a failed login into a message that says what to fix, without echoing the
// response body (Keystone may repeat the user name) or any credential.
func loginError(secret types.NamespacedName, creds *Credentials, err error) error {
	authURL := creds.AuthOptions.IdentityEndpoint
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknownAuthority), errors.As(err, &hostname), errors.As(err, &invalid):
		return credErr(secret, ErrTLS, "the TLS certificate of %s cannot be verified; add the CA as key %s or set verify in clouds.yaml", authURL, CACertKey)
	}
	withCause := func(e *CredentialsError) *CredentialsError { e.Cause = err; return e }
	class := clients.Classify(err)
	if code := class.StatusCode; code != 0 {
		switch {
		case class.Kind == clients.KindAuth:
			return withCause(credErr(secret, ErrAuthenticationFailed, "Keystone at %s rejected the credentials of cloud %q (HTTP 401); check user, password or application credential, project and domain", authURL, creds.CloudName))
		case code == http.StatusForbidden, code == http.StatusNotFound, code == http.StatusBadRequest:
			return withCause(credErr(secret, ErrAuthenticationFailed, "Keystone at %s refused the login for cloud %q (HTTP %d); check project, domain and auth_url", authURL, creds.CloudName, code))
		case class.Kind == clients.KindRetryable:
			// 503, 429, 5xx: the cloud is down or busy, the credentials may be fine.
			return withCause(credErr(secret, ErrUnreachable, "Keystone at %s is unavailable (HTTP %d)", authURL, code))
		}
		return withCause(credErr(secret, ErrAuthenticationFailed, "Keystone at %s answered the login with HTTP %d", authURL, code))
	}
	var gcErr gophercloud.BaseError
	if errors.As(err, &gcErr) || class.Kind != clients.KindRetryable {
		// gophercloud's own validation (e.g. a user name without a domain) or an unknown failure.
		return credErr(secret, ErrInvalidCloud, "logging in to %s with cloud %q failed: the auth section is incomplete or inconsistent (e.g. missing user or project domain)", authURL, creds.CloudName)
	}
	return withCause(credErr(secret, ErrUnreachable, "cannot reach Keystone at %s: %s", authURL, class.Problem))
}
