// Package resolver answers the controllers' questions about the releases of Kubernetes objects:
// where do the releases of this ClusterStack come from (its spec.source with its credentials
// Secret, or the operator-wide default), which ClusterStack provides a ClusterStackRelease, and
// give me release X of it, verified. Releases are materialised once into the on-disk cache of
// internal/release/cache and then served from it, so every controller that needs a release
// (ClusterStackRelease, OpenStack node images, ClusterAddon) shares one download. The rules
// that tie Kubernetes objects to releases (rules.go) live here too, so that controllers and
// webhooks apply the same ones.
package resolver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/lru"
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

// maxSources bounds the sources kept built. A source only saves work (a registry login, open
// connections), so evicting one costs a little time, never correctness.
const maxSources = 64

// Resolver resolves release sources and materialises verified releases. It is safe for
// concurrent use; construct one per manager.
type Resolver struct {
	reader     client.Reader
	defaultCfg source.Config
	cache      *cache.Cache
	cacheMax   int64
	httpClient *http.Client
	// egress and localRoots confine every source (see WithConfinement).
	egress     *egress.Policy
	localRoots []string

	// mu serialises building sources, so that concurrent reconciles of one ClusterStack build
	// (and log in with) one.
	mu sync.Mutex
	// sources keeps, per source location (never credentials), the Source last built and the
	// version of the Secret it was built with, so that registry tokens and HTTP connections are
	// reused and the Secret's data is read once per version.
	sources *lru.Cache
}

// sourceEntry is one built Source and the Secret version ("" without a Secret) it was built with.
type sourceEntry struct {
	secretVersion string
	src           source.Source
}

// Option changes how a Resolver is built.
type Option func(*Resolver)

// WithHTTPClient makes OCI and GitHub sources use c (tests use a client without retries, or a
// counting transport). Unset means each source's default client.
func WithHTTPClient(c *http.Client) Option {
	return func(r *Resolver) { r.httpClient = c }
}

// WithCacheMaxBytes bounds the release cache on disk (cache.Options.MaxBytes; Pruner enforces
// it). Unset means no bound.
func WithCacheMaxBytes(n int64) Option {
	return func(r *Resolver) { r.cacheMax = n }
}

// WithConfinement applies the operator's outbound policy (nil: egress.Default()) to the default
// HTTP clients of OCI and GitHub sources, and lets local sources read only below localRoots
// (none: local sources are refused).
func WithConfinement(p *egress.Policy, localRoots []string) Option {
	return func(r *Resolver) { r.egress, r.localRoots = p, localRoots }
}

// New returns a Resolver. c should read Secrets from the API server (the manager's client does,
// since Secrets are not cached). defaultSource is the operator-wide source (source.FromEnv); its
// zero value means there is none and every ClusterStack must name its own. cacheDir is the root
// of the release cache.
func New(c client.Reader, defaultSource source.Config, cacheDir string, opts ...Option) (*Resolver, error) {
	r := &Resolver{
		reader:     c,
		defaultCfg: defaultSource,
		sources:    lru.New(maxSources),
	}
	for _, o := range opts {
		o(r)
	}
	ch, err := cache.New(cacheDir, cache.Options{MaxBytes: r.cacheMax})
	if err != nil {
		return nil, fmt.Errorf("opening the release cache: %w", err)
	}
	r.cache = ch
	return r, nil
}

// Cache returns the release cache.
func (r *Resolver) Cache() *cache.Cache { return r.cache }

// location is where a ClusterStack's releases come from, without credentials: the key of the
// source map.
type location struct {
	key    string
	spec   *clusterstackv1alpha1.ReleaseSource // nil: the operator default
	secret *types.NamespacedName               // the credentials Secret, nil for none
}

func (r *Resolver) locate(cs *clusterstackv1alpha1.ClusterStack) (location, error) {
	spec := cs.Spec.Source
	if spec == nil {
		if r.defaultCfg.Type == "" {
			return location{}, fmt.Errorf("ClusterStack %s/%s has no spec.source and the operator has no default source (set OCI_REGISTRY/OCI_REPOSITORY): %w", cs.Namespace, cs.Name, source.ErrNoSource)
		}
		return location{key: "default"}, nil
	}
	loc := location{spec: spec}
	if spec.SecretRef != nil {
		loc.secret = &types.NamespacedName{Namespace: cs.Namespace, Name: spec.SecretRef.Name}
	}
	// The key holds no secret values: only where the source is and which Secret authenticates.
	k, _ := json.Marshal(struct {
		OCI    *clusterstackv1alpha1.OCISource    `json:"oci,omitempty"`
		GitHub *clusterstackv1alpha1.GitHubSource `json:"github,omitempty"`
		Local  *clusterstackv1alpha1.LocalSource  `json:"local,omitempty"`
		Secret *types.NamespacedName              `json:"secret,omitempty"`
	}{spec.OCI, spec.GitHub, spec.Local, loc.secret})
	loc.key = string(k)
	return loc, nil
}

// SourceFor returns the source of a ClusterStack: its spec.source with the credentials Secret
// of its namespace, or the operator default. It returns an error wrapping source.ErrNoSource when
// neither is configured, and one wrapping source.ErrInvalidConfig for an unusable spec. The
// Secret's metadata is read on every call, to notice a rotation; its data only when its version
// changed.
func (r *Resolver) SourceFor(ctx context.Context, cs *clusterstackv1alpha1.ClusterStack) (source.Source, error) {
	loc, err := r.locate(cs)
	if err != nil {
		return nil, err
	}
	return r.sourceAt(ctx, cs, loc)
}

func (r *Resolver) sourceAt(ctx context.Context, cs *clusterstackv1alpha1.ClusterStack, loc location) (source.Source, error) {
	version := ""
	if loc.secret != nil {
		meta := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}}
		if err := r.reader.Get(ctx, *loc.secret, meta); err != nil {
			return nil, secretError(*loc.secret, err)
		}
		version = string(meta.UID) + "/" + meta.ResourceVersion
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.sources.Get(loc.key); ok && e.(*sourceEntry).secretVersion == version {
		return e.(*sourceEntry).src, nil
	}
	cfg := r.defaultCfg
	if loc.spec != nil {
		var data map[string][]byte
		if loc.secret != nil {
			var secret corev1.Secret
			if err := r.reader.Get(ctx, *loc.secret, &secret); err != nil {
				return nil, secretError(*loc.secret, err)
			}
			// A version between the two reads is simply the newer one: the next call sees
			// that it matches.
			data, version = secret.Data, string(secret.UID)+"/"+secret.ResourceVersion
		}
		var err error
		if cfg, err = configOf(loc.spec, data); err != nil {
			return nil, fmt.Errorf("configuring the release source of ClusterStack %s/%s: %w", cs.Namespace, cs.Name, err)
		}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = r.httpClient
	}
	cfg.Egress, cfg.LocalRoots = r.egress, r.localRoots
	src, err := source.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the release source of ClusterStack %s/%s: %w", cs.Namespace, cs.Name, err)
	}
	r.sources.Add(loc.key, &sourceEntry{secretVersion: version, src: src})
	return src, nil
}

func secretError(key types.NamespacedName, err error) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("reading the source credentials: Secret %s not found: %w", key, source.ErrInvalidConfig)
	}
	return fmt.Errorf("reading the source credentials Secret %s: %w", key, err)
}

// configOf maps a ClusterStack's spec.source and the data of its Secret (nil for none) to the
// source configuration.
func configOf(spec *clusterstackv1alpha1.ReleaseSource, secret map[string][]byte) (source.Config, error) {
	creds := source.CredentialsFromSecret(secret)
	var cfgs []source.Config
	if o := spec.OCI; o != nil {
		cfgs = append(cfgs, source.Config{Type: source.TypeOCI, OCI: source.OCIConfig{
			Registry: o.Registry, Repository: o.Repository, PlainHTTP: o.Insecure, Credentials: creds,
		}})
	}
	if g := spec.GitHub; g != nil {
		cfgs = append(cfgs, source.Config{Type: source.TypeGitHub, GitHub: source.GitHubConfig{
			Owner: g.Owner, Repository: g.Repository, APIURL: g.APIURL, Token: creds.Token,
		}})
	}
	if l := spec.Local; l != nil {
		cfgs = append(cfgs, source.Config{Type: source.TypeLocal, Local: source.LocalConfig{Path: l.Path}})
	}
	switch len(cfgs) {
	case 0:
		return source.Config{}, fmt.Errorf("spec.source sets none of oci, github and local: %w", source.ErrNoSource)
	case 1:
		return cfgs[0], cfgs[0].Validate()
	}
	return source.Config{}, fmt.Errorf("more than one of oci, github and local is set: %w", source.ErrInvalidConfig)
}

// Release returns the verified release n of cs, fetched on first use and then served from the
// cache. n must belong to cs's provider, stack and Kubernetes minor (ErrWrongStack otherwise).
// A release already in the cache is served without reading the credentials Secret: it is
// verified content, and credentials only authorise downloads.
func (r *Resolver) Release(ctx context.Context, cs *clusterstackv1alpha1.ClusterStack, n name.Release) (*release.Release, error) {
	if !OfStack(cs, n) {
		return nil, fmt.Errorf("release %s, ClusterStack %s/%s (%s-%s-%s): %w", n, cs.Namespace, cs.Name, cs.Spec.Provider, cs.Spec.Name, cs.Spec.KubernetesVersion, ErrWrongStack)
	}
	loc, err := r.locate(cs)
	if err != nil {
		return nil, err
	}
	if e, ok := r.sources.Get(loc.key); ok && !volatile(e.(*sourceEntry).src) {
		if rel, ok := r.cache.Lookup(cache.Key{Source: e.(*sourceEntry).src.ID(), Release: n}); ok {
			return rel, nil
		}
	}
	src, err := r.sourceAt(ctx, cs, loc)
	if err != nil {
		return nil, err
	}
	rel, err := r.cache.Get(ctx, src, n)
	if err != nil {
		return nil, fmt.Errorf("materialising release %s from %s: %w", n, src.ID(), err)
	}
	return rel, nil
}

func volatile(src source.Source) bool {
	v, ok := src.(interface{ Volatile() bool })
	return ok && v.Volatile()
}

// ReleaseFor returns release n of the ClusterStackRelease of that name in namespace: through the
// ClusterStack that owns it, or, for a release without an owner (created by hand or by the
// reference operator), the ClusterStack of the namespace that provides it (see ClusterStackFor).
func (r *Resolver) ReleaseFor(ctx context.Context, namespace string, n name.Release) (*release.Release, error) {
	cs, err := r.ClusterStackFor(ctx, namespace, n)
	if err != nil {
		return nil, err
	}
	return r.Release(ctx, cs, n)
}

// ClusterStackFor finds the ClusterStack release n of namespace belongs to: the owner of its
// ClusterStackRelease, or else the ClusterStack of the namespace whose provider, stack name and
// Kubernetes minor match n, one in n's channel first.
func (r *Resolver) ClusterStackFor(ctx context.Context, namespace string, n name.Release) (*clusterstackv1alpha1.ClusterStack, error) {
	var csr clusterstackv1alpha1.ClusterStackRelease
	err := r.reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: n.String()}, &csr)
	switch {
	case err == nil:
		for _, ref := range csr.OwnerReferences {
			if ref.Kind != "ClusterStack" || ref.APIVersion != clusterstackv1alpha1.GroupVersion.String() {
				continue
			}
			var cs clusterstackv1alpha1.ClusterStack
			if err := r.reader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, &cs); err != nil {
				if apierrors.IsNotFound(err) {
					break
				}
				return nil, fmt.Errorf("reading the ClusterStack %s/%s of release %s: %w", namespace, ref.Name, n, err)
			}
			return &cs, nil
		}
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("reading ClusterStackRelease %s/%s: %w", namespace, n, err)
	}
	var list clusterstackv1alpha1.ClusterStackList
	if err := r.reader.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing the ClusterStacks of namespace %s: %w", namespace, err)
	}
	var fallback *clusterstackv1alpha1.ClusterStack
	for i := range list.Items {
		cs := &list.Items[i]
		if !OfStack(cs, n) {
			continue
		}
		if InChannel(cs, n) {
			return cs, nil
		}
		if fallback == nil {
			fallback = cs
		}
	}
	if fallback != nil {
		return fallback, nil
	}
	return nil, fmt.Errorf("release %s in namespace %s: %w", n, namespace, ErrNoClusterStack)
}
