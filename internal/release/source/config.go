package source

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"oras.land/oras-go/v2/registry/remote/retry"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
)

// Credentials authenticate against a source. Empty fields are not sent.
type Credentials struct {
	Username string
	Password string
	Token    string
}

// Secret data keys read by CredentialsFromSecret.
const (
	SecretKeyUsername = "username"
	SecretKeyPassword = "password"
	SecretKeyToken    = "token"
)

// CredentialsFromSecret reads the username, password and token keys of a
// Secret's data. Surrounding whitespace is dropped: a trailing newline from
// `kubectl create secret --from-file` is a classic cause of failed logins.
func CredentialsFromSecret(data map[string][]byte) Credentials {
	get := func(k string) string { return strings.TrimSpace(string(data[k])) }
	return Credentials{Username: get(SecretKeyUsername), Password: get(SecretKeyPassword), Token: get(SecretKeyToken)}
}

// Config is everything New needs to build a Source: the one shape of a source configuration,
// built from a ClusterStack's spec.source and its Secret (internal/release/resolver) or from the
// environment (FromEnv).
type Config struct {
	// Type selects which of OCI, GitHub and Local is used.
	Type   Type
	OCI    OCIConfig
	GitHub GitHubConfig
	Local  LocalConfig
	// HTTPClient is used for OCI and GitHub; nil means a default client on
	// Egress's transport (for OCI one that retries transient failures). A
	// client given here is used as it is: its transport decides where it
	// connects.
	HTTPClient *http.Client
	// Egress is the outbound policy of the default clients; nil means
	// egress.Default() (public addresses only).
	Egress *egress.Policy
	// LocalRoots are the directories local sources may read below
	// (--local-source-root); none means local sources are refused.
	LocalRoots []string
	// MaxBytes bounds the total size of a fetched release; 0 means DefaultMaxBytes.
	MaxBytes int64
}

// OCIConfig configures an OCI source.
type OCIConfig struct {
	// Registry is host[:port].
	Registry string
	// Repository is the path in the registry.
	Repository string
	// PlainHTTP talks HTTP instead of HTTPS (test and insecure registries).
	PlainHTTP   bool
	Credentials Credentials
	// TagPageSize asks the registry for pages of this many tags; 0 leaves the
	// page size to the registry. All pages are read either way.
	TagPageSize int
}

// GitHubConfig configures a GitHub releases source.
type GitHubConfig struct {
	Owner      string
	Repository string
	// Token is optional; without it the API allows 60 requests an hour.
	Token string
	// APIURL is the API root; empty means the public GitHub API. Set it for
	// GitHub Enterprise (https://host/api/v3) or tests.
	APIURL string
	// PerPage is the release-list page size; 0 means 100, the API maximum.
	PerPage int
}

// LocalConfig configures a local directory source.
type LocalConfig struct {
	Path string
}

// ErrNoSource is returned when neither a spec nor the environment names a source.
var ErrNoSource = errors.New("no release source configured")

// ErrInvalidConfig is wrapped by configuration errors.
var ErrInvalidConfig = errors.New("invalid release source configuration")

// Environment variables of the reference operator, read by FromEnv.
const (
	EnvGitOrgName        = "GIT_ORG_NAME"
	EnvGitRepositoryName = "GIT_REPOSITORY_NAME"
	EnvGitAccessToken    = "GIT_ACCESS_TOKEN"
	EnvOCIRegistry       = "OCI_REGISTRY"
	EnvOCIRepository     = "OCI_REPOSITORY"
	EnvOCIUsername       = "OCI_USERNAME"
	EnvOCIPassword       = "OCI_PASSWORD"
	EnvOCIAccessToken    = "OCI_ACCESS_TOKEN"
)

// FromEnv builds the operator-wide default source from the reference
// operator's environment variables, so existing deployments keep working.
// getenv is os.Getenv in production. It returns ErrNoSource when neither
// OCI_REPOSITORY nor GIT_ORG_NAME/GIT_REPOSITORY_NAME is set.
//
// When both an OCI repository and a GitHub repository are configured, OCI
// wins: SCS moved its releases from GitHub to OCI, and deployments that
// still carry the old GitHub variables next to the new OCI ones mean OCI.
func FromEnv(getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if repo := getenv(EnvOCIRepository); repo != "" {
		registry, repository, plain, err := splitOCI(getenv(EnvOCIRegistry), repo)
		if err != nil {
			return Config{}, err
		}
		cfg := Config{Type: TypeOCI, OCI: OCIConfig{
			Registry:   registry,
			Repository: repository,
			PlainHTTP:  plain,
			Credentials: Credentials{
				Username: getenv(EnvOCIUsername),
				Password: getenv(EnvOCIPassword),
				Token:    getenv(EnvOCIAccessToken),
			},
		}}
		return cfg, cfg.Validate()
	}
	org, repo := getenv(EnvGitOrgName), getenv(EnvGitRepositoryName)
	if org == "" && repo == "" {
		return Config{}, ErrNoSource
	}
	cfg := Config{Type: TypeGitHub, GitHub: GitHubConfig{Owner: org, Repository: repo, Token: getenv(EnvGitAccessToken)}}
	return cfg, cfg.Validate()
}

// splitOCI accepts the forms found in deployments of the reference
// operator: OCI_REPOSITORY either as a path in OCI_REGISTRY or as a full
// reference that repeats the registry, and an optional scheme on either
// (http:// meaning plain HTTP).
func splitOCI(registry, repository string) (string, string, bool, error) {
	plain := false
	strip := func(s string) string {
		if rest, ok := strings.CutPrefix(s, "http://"); ok {
			plain = true
			return rest
		}
		s = strings.TrimPrefix(s, "https://")
		return strings.TrimPrefix(s, "oci://")
	}
	registry = strings.TrimSuffix(strip(registry), "/")
	repository = strip(repository)
	if registry == "" {
		// A full reference: the registry is its first path element.
		host, path, ok := strings.Cut(repository, "/")
		if !ok || (!strings.ContainsAny(host, ".:") && host != "localhost") {
			return "", "", false, fmt.Errorf("%s %q has no registry host and %s is unset: %w", EnvOCIRepository, repository, EnvOCIRegistry, ErrInvalidConfig)
		}
		return host, path, plain, nil
	}
	repository = strings.TrimPrefix(repository, registry+"/")
	return registry, repository, plain, nil
}

// Validate checks that the fields of c's type are set.
func (c Config) Validate() error {
	missing := func(what string) error {
		return fmt.Errorf("%s source: %s is empty: %w", c.Type, what, ErrInvalidConfig)
	}
	switch c.Type {
	case TypeOCI:
		if c.OCI.Registry == "" {
			return missing("registry")
		}
		if c.OCI.Repository == "" {
			return missing("repository")
		}
	case TypeGitHub:
		if c.GitHub.Owner == "" {
			return missing("owner")
		}
		if c.GitHub.Repository == "" {
			return missing("repository")
		}
	case TypeLocal:
		if c.Local.Path == "" {
			return missing("path")
		}
	default:
		return fmt.Errorf("unknown source type %q: %w", c.Type, ErrInvalidConfig)
	}
	return nil
}

// New returns the Source that cfg describes, instrumented with metrics.
func New(cfg Config) (Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var (
		s   Source
		err error
	)
	switch cfg.Type {
	case TypeOCI:
		c := cfg.HTTPClient
		if c == nil {
			c = &http.Client{Transport: retry.NewTransport(cfg.Egress.Transport())}
		}
		s, err = NewOCI(cfg.OCI, c, cfg.MaxBytes)
	case TypeGitHub:
		c := cfg.HTTPClient
		if c == nil {
			c = cfg.Egress.Client(githubTimeout)
		}
		s, err = NewGitHub(cfg.GitHub, c, cfg.MaxBytes)
	case TypeLocal:
		s, err = NewLocal(cfg.Local.Path, cfg.MaxBytes, cfg.LocalRoots...)
	}
	if err != nil {
		return nil, err
	}
	return Instrument(s), nil
}

// refusedIsConfig marks a refusal by the egress policy as a configuration error: the source
// names an address the operator may not reach, and retrying cannot change that.
func refusedIsConfig(err error) error {
	if errors.Is(err, egress.ErrRefused) && !errors.Is(err, ErrInvalidConfig) {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return err
}
