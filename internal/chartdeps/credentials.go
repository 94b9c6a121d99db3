package chartdeps

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// Credential authenticates against one repository. Empty fields are not sent.
type Credential struct {
	// Username and Password are sent as HTTP basic authentication (Helm repositories) or as the
	// registry login (OCI).
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// Token is sent as a bearer token (HTTP `Authorization: Bearer`, OCI access token).
	Token string `json:"token,omitempty"`
}

func (c Credential) empty() bool { return c == Credential{} }

// Credentials gives the credential of a repository; the zero Credential means anonymous.
type Credentials interface {
	For(ctx context.Context, repository string) (Credential, error)
}

// RepositoriesKey is the key of the credentials Secret that holds the repository list.
const RepositoriesKey = "repositories.yaml"

// RepositoryCredential is one entry of the credentials Secret.
type RepositoryCredential struct {
	// URL is the repository URL as dependencies name it (`https://charts.example.com/stable`,
	// `oci://registry.example.com/charts`). It also covers every repository below it.
	URL string `json:"url"`
	Credential
}

// repositoriesFile is the content of RepositoriesKey. Its shape is a subset of Helm's
// repositories.yaml (entries with url, username, password; other fields such as name are
// ignored), so a file written by `helm repo add` can be used as is.
type repositoriesFile struct {
	Repositories []RepositoryCredential `json:"repositories"`
}

// maxCredentialsBytes bounds the credentials file; it lists a handful of repositories.
const maxCredentialsBytes = 1 << 20

// ParseRepositories reads the repository list of a credentials Secret.
func ParseRepositories(data []byte) ([]RepositoryCredential, error) {
	if len(data) > maxCredentialsBytes {
		return nil, fmt.Errorf("parsing %s: %d bytes: %w", RepositoriesKey, len(data), ErrTooLarge)
	}
	var f repositoriesFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", RepositoriesKey, err)
	}
	for i, r := range f.Repositories {
		if _, err := url.Parse(r.URL); err != nil || r.URL == "" {
			return nil, fmt.Errorf("parsing %s: repositories[%d].url %q is not a URL", RepositoriesKey, i, r.URL)
		}
	}
	return f.Repositories, nil
}

// Match returns the credential of the longest entry URL that is repository or a parent of it.
func Match(entries []RepositoryCredential, repository string) Credential {
	repository = normalizeURL(repository)
	best, bestLen := Credential{}, -1
	for _, e := range entries {
		u := normalizeURL(e.URL)
		if (repository == u || strings.HasPrefix(repository, u+"/")) && len(u) > bestLen {
			best, bestLen = e.Credential, len(u)
		}
	}
	return best
}

// normalizeURL makes `https://x/y/` and `https://x/y` the same repository.
func normalizeURL(u string) string { return strings.TrimRight(strings.TrimSpace(u), "/") }

// SecretCredentials reads the credentials of every repository from one Secret, key
// repositories.yaml:
//
//	repositories:
//	  - url: https://charts.example.com/private
//	    username: robot
//	    password: s3cret
//	  - url: oci://registry.example.com/charts
//	    token: eyJhbGciOi...
//
// The Secret is read when a chart must be fetched, never when everything is cached, so it costs
// nothing once the charts of the releases in use are cached. A missing Secret means anonymous
// access everywhere.
type SecretCredentials struct {
	Reader client.Reader
	Secret types.NamespacedName
}

// For returns the credential of repository.
func (s *SecretCredentials) For(ctx context.Context, repository string) (Credential, error) {
	sec := &corev1.Secret{}
	if err := s.Reader.Get(ctx, s.Secret, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return Credential{}, nil
		}
		return Credential{}, unavailable(fmt.Errorf("reading the chart repository credentials Secret %s: %w", s.Secret, err))
	}
	entries, err := ParseRepositories(sec.Data[RepositoriesKey])
	if err != nil {
		return Credential{}, unresolvable(ErrUnauthorized, "the chart repository credentials Secret %s: %v", s.Secret, err)
	}
	return Match(entries, repository), nil
}

// StaticCredentials is a fixed repository list (tests, and callers that read it themselves).
type StaticCredentials []RepositoryCredential

// For returns the credential of repository.
func (s StaticCredentials) For(_ context.Context, repository string) (Credential, error) {
	return Match(s, repository), nil
}
