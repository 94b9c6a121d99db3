package scope

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"gopkg.in/yaml.v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Keys of the credentials Secret, shared with the OpenStack Cluster API provider and ORC.
const (
	CloudsYAMLKey    = "clouds.yaml"
	CloudNameKey     = "cloudName"
	CACertKey        = "cacert"
	DefaultCloudName = "openstack"
)

// Sentinel errors wrapped by *CredentialsError; match them with errors.Is.
var (
	// ErrSecretNotFound: the Secret named by identityRef does not exist.
	ErrSecretNotFound = errors.New("credentials secret not found")
	// ErrMissingKey: the Secret has no clouds.yaml.
	ErrMissingKey = errors.New("credentials secret key missing")
	// ErrMalformed: clouds.yaml is not a clouds.yaml document.
	ErrMalformed = errors.New("malformed clouds.yaml")
	// ErrCloudNotFound: clouds.yaml has no entry with the cloud name.
	ErrCloudNotFound = errors.New("cloud not found in clouds.yaml")
	// ErrInvalidCloud: the entry cannot be used to log in (no auth_url, no credentials, ...).
	ErrInvalidCloud = errors.New("unusable clouds.yaml entry")
	// ErrInvalidCACert: the CA certificate cannot be read.
	ErrInvalidCACert = errors.New("invalid CA certificate")
	// ErrAuthenticationFailed: Keystone refused the credentials.
	ErrAuthenticationFailed = errors.New("authentication failed")
	// ErrTLS: the TLS handshake with the cloud failed (unknown authority, wrong host name).
	ErrTLS = errors.New("TLS verification failed")
	// ErrUnreachable: the cloud could not be reached; transient.
	ErrUnreachable = errors.New("cloud unreachable")
	// ErrNoEndpoint: the service catalog has no endpoint for the service, region and interface.
	ErrNoEndpoint = errors.New("no endpoint in the service catalog")
)

// CredentialsError is a problem with the credentials Secret or with logging in with it. Its
// message is safe for conditions, events and logs: it names the Secret and says what is wrong
// but never quotes a value from the Secret (parser messages that might are left out).
type CredentialsError struct {
	// Secret is the namespace and name of the Secret.
	Secret types.NamespacedName
	// Problem says what is wrong, in words a user can act on.
	Problem string
	// Err is one of the sentinel errors of this package.
	Err error
	// Cause is the cloud's error behind a failed login, nil otherwise; it is not part of the
	// message (it may quote a response body) but lets clients.Classify read its status and
	// Retry-After.
	Cause error
}

func (e *CredentialsError) Error() string {
	return fmt.Sprintf("OpenStack credentials Secret %s: %s", e.Secret, e.Problem)
}

func (e *CredentialsError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Cause}
}

// Retryable reports whether the problem may go away without a change to the Secret.
func (e *CredentialsError) Retryable() bool { return errors.Is(e.Err, ErrUnreachable) }

func credErr(secret types.NamespacedName, sentinel error, format string, args ...any) *CredentialsError {
	return &CredentialsError{Secret: secret, Problem: fmt.Sprintf(format, args...), Err: sentinel}
}

// Credentials is what a Secret says about how to reach one cloud.
type Credentials struct {
	// CloudName is the clouds.yaml entry used.
	CloudName string
	// AuthOptions log in to Keystone; AllowReauth is on so that an expired token is renewed once.
	AuthOptions gophercloud.AuthOptions
	// EndpointOpts select region and interface in the service catalog.
	EndpointOpts gophercloud.EndpointOpts
	// TLSConfig honours verify, cacert in clouds.yaml and the Secret's cacert key.
	TLSConfig *tls.Config
}

// CloudName returns the cloud name a Secret selects.
func CloudName(secret *corev1.Secret) string {
	if n := strings.TrimSpace(string(secret.Data[CloudNameKey])); n != "" {
		return n
	}
	return DefaultCloudName
}

// ParseSecret reads the credentials of a Secret. It reads no environment variables that change
// the result except gophercloud's OS_CACERT fallback, and no files except a cacert path named by
// clouds.yaml when the Secret has no cacert key.
func ParseSecret(secret *corev1.Secret) (*Credentials, error) {
	ref := types.NamespacedName{Namespace: secret.Namespace, Name: secret.Name}
	raw := secret.Data[CloudsYAMLKey]
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, credErr(ref, ErrMissingKey, "key %s is missing or empty", CloudsYAMLKey)
	}
	cloudName := CloudName(secret)

	// Decoded here as well as by gophercloud, to select the entry, to list known names in
	// errors and to take region and interface from the file instead of OS_* variables of the
	// operator's own environment, which clouds.Parse would prefer.
	var doc clouds.Clouds
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		// The parser's message may quote a value of the file: leave it out.
		return nil, credErr(ref, ErrMalformed, "key %s is not a valid clouds.yaml document (YAML syntax or field types)", CloudsYAMLKey)
	}
	if len(doc.Clouds) == 0 {
		return nil, credErr(ref, ErrMalformed, "key %s has no clouds: section", CloudsYAMLKey)
	}
	cloud, ok := doc.Clouds[cloudName]
	if !ok {
		names := make([]string, 0, len(doc.Clouds))
		for n := range doc.Clouds {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, credErr(ref, ErrCloudNotFound, "key %s has no cloud %q (it has %s); set key %s to one of them",
			CloudsYAMLKey, cloudName, strings.Join(quoteAll(names), ", "), CloudNameKey)
	}
	if cloud.AuthInfo == nil || cloud.AuthInfo.AuthURL == "" {
		return nil, credErr(ref, ErrInvalidCloud, "cloud %q in key %s has no auth.auth_url", cloudName, CloudsYAMLKey)
	}
	if cloud.Profile != "" || cloud.Cloud != "" {
		return nil, credErr(ref, ErrInvalidCloud, "cloud %q in key %s uses a public cloud profile, which the operator cannot read; write the entry out in full", cloudName, CloudsYAMLKey)
	}
	a := cloud.AuthInfo
	hasPassword := a.Password != "" && (a.Username != "" || a.UserID != "")
	hasAppCred := a.ApplicationCredentialSecret != "" && (a.ApplicationCredentialID != "" || a.ApplicationCredentialName != "")
	if !hasPassword && !hasAppCred && a.Token == "" {
		return nil, credErr(ref, ErrInvalidCloud, "cloud %q in key %s has neither username/password nor application_credential_id/secret", cloudName, CloudsYAMLKey)
	}

	caPEM, hasCA := secret.Data[CACertKey]
	if hasCA {
		// The Secret's PEM wins over a cacert path, which usually names a file that exists only
		// where the Secret was written (CAPO behaves the same).
		cloud.CACertFile = ""
	}
	one, err := yaml.Marshal(clouds.Clouds{Clouds: map[string]clouds.Cloud{cloudName: cloud}})
	if err != nil {
		return nil, credErr(ref, ErrMalformed, "key %s cannot be re-encoded", CloudsYAMLKey)
	}
	opts := []clouds.ParseOption{clouds.WithCloudsYAML(bytes.NewReader(one)), clouds.WithCloudName(cloudName)}
	if cloud.RegionName != "" {
		opts = append(opts, clouds.WithRegion(cloud.RegionName))
	}
	if iface := coalesce(cloud.EndpointType, cloud.Interface); iface != "" {
		opts = append(opts, clouds.WithEndpointType(iface))
	}
	ao, eo, tlsConfig, err := clouds.Parse(opts...)
	if err != nil {
		if cloud.CACertFile != "" {
			return nil, credErr(ref, ErrInvalidCACert, "cloud %q names cacert file %q, which the operator cannot read; put the PEM certificate into key %s instead",
				cloudName, cloud.CACertFile, CACertKey)
		}
		return nil, credErr(ref, ErrInvalidCloud, "cloud %q in key %s cannot be used", cloudName, CloudsYAMLKey)
	}
	if tlsConfig == nil {
		tlsConfig = &tls.Config{}
	}
	tlsConfig.MinVersion = tls.VersionTLS12
	if hasCA {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(bytes.TrimSpace(caPEM)) {
			return nil, credErr(ref, ErrInvalidCACert, "key %s holds no PEM certificate", CACertKey)
		}
		tlsConfig.RootCAs = pool
	}
	ao.AllowReauth = true
	return &Credentials{CloudName: cloudName, AuthOptions: ao, EndpointOpts: eo, TLSConfig: tlsConfig}, nil
}

func coalesce(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}
