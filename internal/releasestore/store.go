// Package releasestore answers the controllers' two questions about cluster-stack releases: where
// do the releases of this ClusterStack come from (its own spec.source with its credentials
// Secret, or the operator-wide default), and give me release X of it, verified. Releases are
// materialised once into the on-disk cache of internal/release/cache and then served from it, so
// every controller that needs a release (ClusterStackRelease, OpenStack node images, ClusterAddon)
// shares one download.
package releasestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/cache"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
)

var (
	// ErrNoClusterStack means no ClusterStack owns or matches a release name.
	ErrNoClusterStack = errors.New("no ClusterStack for release")
	// ErrWrongStack means a release name does not belong to the ClusterStack it was asked of.
	ErrWrongStack = errors.New("release does not belong to the ClusterStack")
)

// Store resolves release sources and materialises verified releases. It is safe for concurrent
// use; construct one per manager.
type Store struct {
	reader     client.Reader
	defaultCfg source.Config
	cache      *cache.Cache
	httpClient *http.Client
	// egress and localRoots confine every source (see WithConfinement).
	egress     *egress.Policy
	localRoots []string

	mu sync.Mutex
	// sources keeps one Source per configuration (and credentials Secret version), so that
	// registry tokens and HTTP connections are reused across reconciles.
	sources map[string]source.Source
	// releases keeps loaded releases of non-volatile sources: cache entries are
	// content-addressed and never change, so re-verifying them on every reconcile would only
	// cost disk reads.
	releases map[cache.Key]*release.Release
}

// Option changes how a Store is built.
type Option func(*Store)

// WithHTTPClient makes OCI and GitHub sources use c (tests use a client without retries, or a
// counting transport). Unset means each source's default client.
func WithHTTPClient(c *http.Client) Option {
	return func(s *Store) { s.httpClient = c }
}

// WithConfinement applies the operator's outbound policy (nil: egress.Default()) to the default
// HTTP clients of OCI and GitHub sources, and lets local sources read only below localRoots
// (none: local sources are refused).
func WithConfinement(p *egress.Policy, localRoots []string) Option {
	return func(s *Store) { s.egress, s.localRoots = p, localRoots }
}

// New returns a Store. c should read Secrets from the API server (the manager's client does,
// since Secrets are not cached). defaultSource is the operator-wide source (source.FromEnv); its
// zero value means there is none and every ClusterStack must name its own. cacheDir is the root
// of the release cache.
func New(c client.Reader, defaultSource source.Config, cacheDir string, opts ...Option) (*Store, error) {
	ch, err := cache.New(cacheDir, release.Options{})
	if err != nil {
		return nil, fmt.Errorf("opening the release cache: %w", err)
	}
	s := &Store{
		reader:     c,
		defaultCfg: defaultSource,
		cache:      ch,
		sources:    map[string]source.Source{},
		releases:   map[cache.Key]*release.Release{},
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Cache returns the underlying release cache.
func (s *Store) Cache() *cache.Cache { return s.cache }

// SourceFor returns the source of a ClusterStack: its spec.source with the credentials Secret
// of its namespace, or the operator default. It returns an error wrapping source.ErrNoSource when
// neither is configured, and one wrapping source.ErrInvalidConfig for an unusable spec.
func (s *Store) SourceFor(ctx context.Context, cs *clusterstackv1alpha1.ClusterStack) (source.Source, error) {
	cfg, key, err := s.configFor(ctx, cs)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if src, ok := s.sources[key]; ok {
		return src, nil
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = s.httpClient
	}
	cfg.Egress, cfg.LocalRoots = s.egress, s.localRoots
	src, err := source.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the release source of ClusterStack %s/%s: %w", cs.Namespace, cs.Name, err)
	}
	s.sources[key] = src
	return src, nil
}

// configFor builds the source configuration of cs and a key that changes whenever the
// configuration or its credentials change.
func (s *Store) configFor(ctx context.Context, cs *clusterstackv1alpha1.ClusterStack) (source.Config, string, error) {
	spec := cs.Spec.Source
	if spec == nil {
		if s.defaultCfg.Type == "" {
			return source.Config{}, "", fmt.Errorf("ClusterStack %s/%s has no spec.source and the operator has no default source (set OCI_REGISTRY/OCI_REPOSITORY): %w", cs.Namespace, cs.Name, source.ErrNoSource)
		}
		return s.defaultCfg, "default", nil
	}
	var (
		secretData map[string][]byte
		secretVer  string
	)
	if spec.SecretRef != nil {
		var secret corev1.Secret
		key := types.NamespacedName{Namespace: cs.Namespace, Name: spec.SecretRef.Name}
		if err := s.reader.Get(ctx, key, &secret); err != nil {
			if apierrors.IsNotFound(err) {
				return source.Config{}, "", fmt.Errorf("reading the source credentials: Secret %s not found: %w", key, source.ErrInvalidConfig)
			}
			return source.Config{}, "", fmt.Errorf("reading the source credentials Secret %s: %w", key, err)
		}
		secretData = secret.Data
		secretVer = string(secret.UID) + "/" + secret.ResourceVersion
	}
	var sp source.Spec
	switch {
	case spec.OCI != nil:
		sp.OCI = &source.OCISpec{Registry: spec.OCI.Registry, Repository: spec.OCI.Repository, Insecure: spec.OCI.Insecure}
	case spec.GitHub != nil:
		sp.GitHub = &source.GitHubSpec{Owner: spec.GitHub.Owner, Repository: spec.GitHub.Repository}
	case spec.Local != nil:
		sp.Local = &source.LocalSpec{Path: spec.Local.Path}
	}
	cfg, err := source.FromSpec(sp, secretData)
	if err != nil {
		return source.Config{}, "", fmt.Errorf("configuring the release source of ClusterStack %s/%s: %w", cs.Namespace, cs.Name, err)
	}
	// source.GitHubSpec has no API URL (owned by the release package); the API field is copied
	// here so that GitHub Enterprise works.
	if spec.GitHub != nil && spec.GitHub.APIURL != "" {
		cfg.GitHub.APIURL = spec.GitHub.APIURL
	}
	// The key holds no secret values: only where the source is and which version of the
	// Secret was read.
	k, _ := json.Marshal(struct {
		OCI    *clusterstackv1alpha1.OCISource    `json:"oci,omitempty"`
		GitHub *clusterstackv1alpha1.GitHubSource `json:"github,omitempty"`
		Local  *clusterstackv1alpha1.LocalSource  `json:"local,omitempty"`
		Secret string                             `json:"secret,omitempty"`
	}{spec.OCI, spec.GitHub, spec.Local, secretVer})
	return cfg, string(k), nil
}

// Release returns the verified release releaseName (dashed form) of cs, fetched on first use
// and then served from the cache. The name must belong to cs's provider, stack and Kubernetes
// minor (ErrWrongStack otherwise).
func (s *Store) Release(ctx context.Context, cs *clusterstackv1alpha1.ClusterStack, releaseName string) (*release.Release, error) {
	n, err := name.Parse(releaseName)
	if err != nil {
		return nil, err
	}
	if !matches(cs, n) {
		return nil, fmt.Errorf("release %s, ClusterStack %s/%s (%s-%s-%s): %w", releaseName, cs.Namespace, cs.Name, cs.Spec.Provider, cs.Spec.Name, cs.Spec.KubernetesVersion, ErrWrongStack)
	}
	src, err := s.SourceFor(ctx, cs)
	if err != nil {
		return nil, err
	}
	key := cache.Key{Source: src.ID(), Release: releaseName}
	volatile := false
	if v, ok := src.(interface{ Volatile() bool }); ok {
		volatile = v.Volatile()
	}
	if !volatile {
		s.mu.Lock()
		r, ok := s.releases[key]
		s.mu.Unlock()
		if ok {
			c := *r
			return &c, nil
		}
	}
	r, err := s.cache.Get(ctx, src, releaseName)
	if err != nil {
		return nil, fmt.Errorf("materialising release %s from %s: %w", releaseName, src.ID(), err)
	}
	if !volatile {
		c := *r
		s.mu.Lock()
		s.releases[key] = &c
		s.mu.Unlock()
	}
	return r, nil
}

// ReleaseFor returns the release releaseName of the ClusterStackRelease of that name in
// namespace: through the ClusterStack that owns it, or, for a release without an owner (created
// by hand or by the reference operator), the ClusterStack of the namespace whose provider,
// stack name and Kubernetes minor match the parsed name (one in the release's channel first).
func (s *Store) ReleaseFor(ctx context.Context, namespace, releaseName string) (*release.Release, error) {
	cs, err := s.ClusterStackFor(ctx, namespace, releaseName)
	if err != nil {
		return nil, err
	}
	return s.Release(ctx, cs, releaseName)
}

// ClusterStackFor finds the ClusterStack a release belongs to, as ReleaseFor does.
func (s *Store) ClusterStackFor(ctx context.Context, namespace, releaseName string) (*clusterstackv1alpha1.ClusterStack, error) {
	n, err := name.Parse(releaseName)
	if err != nil {
		return nil, err
	}
	var csr clusterstackv1alpha1.ClusterStackRelease
	err = s.reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: releaseName}, &csr)
	switch {
	case err == nil:
		for _, ref := range csr.OwnerReferences {
			if ref.Kind != "ClusterStack" || ref.APIVersion != clusterstackv1alpha1.GroupVersion.String() {
				continue
			}
			var cs clusterstackv1alpha1.ClusterStack
			if err := s.reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, &cs); err != nil {
				if apierrors.IsNotFound(err) {
					break
				}
				return nil, fmt.Errorf("reading the ClusterStack %s/%s of release %s: %w", namespace, ref.Name, releaseName, err)
			}
			return &cs, nil
		}
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("reading ClusterStackRelease %s/%s: %w", namespace, releaseName, err)
	}
	var list clusterstackv1alpha1.ClusterStackList
	if err := s.reader.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing the ClusterStacks of namespace %s: %w", namespace, err)
	}
	var fallback *clusterstackv1alpha1.ClusterStack
	for i := range list.Items {
		cs := &list.Items[i]
		if !matches(cs, n) {
			continue
		}
		if channelOf(cs) == string(n.Version.Channel()) {
			return cs, nil
		}
		if fallback == nil {
			fallback = cs
		}
	}
	if fallback != nil {
		return fallback, nil
	}
	return nil, fmt.Errorf("release %s in namespace %s: %w", releaseName, namespace, ErrNoClusterStack)
}

// matches reports whether the parsed release n is of cs's provider, stack and Kubernetes minor.
func matches(cs *clusterstackv1alpha1.ClusterStack, n name.Release) bool {
	k, err := name.ParseKubernetesMinor(cs.Spec.KubernetesVersion)
	if err != nil {
		return false
	}
	return n.Provider == cs.Spec.Provider && n.Stack == cs.Spec.Name && n.Kubernetes.Compare(k) == 0
}

func channelOf(cs *clusterstackv1alpha1.ClusterStack) string {
	if cs.Spec.Channel == "" {
		return clusterstackv1alpha1.ChannelStable
	}
	return cs.Spec.Channel
}
