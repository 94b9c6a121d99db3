package chartdeps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"helm.sh/helm/v4/pkg/registry"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// maxManifestBytes bounds an OCI manifest; a Helm chart's has two or three descriptors.
const maxManifestBytes = 4 << 20

// fetchOCI resolves a dependency from an OCI registry, where the chart is
// `<repository>/<name>:<version>` (a `+` in the version is `_` in the tag), as Helm pushes it.
func (r *Resolver) fetchOCI(ctx context.Context, name, repository, version string) (fetched, error) {
	repository = normalizeURL(repository)
	if isExact(version) {
		if f, ok := r.cached(refKey{Repository: repository, Name: name, Version: version}); ok {
			return f, nil
		}
	}
	ref := strings.TrimPrefix(repository, "oci://") + "/" + name
	repo, err := remote.NewRepository(ref)
	if err != nil {
		return fetched{}, unresolvable(ErrUnsupportedRepository, "OCI reference %s: %v", ref, err)
	}
	cred, err := r.credential(ctx, repository)
	if err != nil {
		return fetched{}, err
	}
	client := &auth.Client{Client: r.opts.HTTPClient, Cache: auth.NewCache()}
	if !cred.empty() {
		client.Credential = auth.StaticCredential(repo.Reference.Registry, auth.Credential{
			Username: cred.Username, Password: cred.Password, AccessToken: cred.Token,
		})
	}
	repo.Client = client

	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	resolved := version
	if !isExact(version) {
		if resolved, err = r.newestTag(ctx, repo, name, version); err != nil {
			return fetched{}, err
		}
	}
	k := refKey{Repository: repository, Name: name, Version: resolved}
	if f, ok := r.cached(k); ok {
		return f, nil
	}
	v, err, _ := r.group.Do("oci\x00"+ref+":"+resolved, func() (any, error) {
		return r.pullChart(ctx, repo, name, resolved)
	})
	if err != nil {
		return fetched{}, err
	}
	data := v.([]byte)
	return r.accept(data, k)
}

// newestTag returns the highest version among the repository's tags that satisfies the
// constraint, as Helm's resolver picks it.
func (r *Resolver) newestTag(ctx context.Context, repo *remote.Repository, name, constraint string) (string, error) {
	c, err := semver.NewConstraint(constraint)
	if constraint == "" {
		c, err = semver.NewConstraint("*")
	}
	if err != nil {
		return "", unresolvable(ErrInvalidChart, "version constraint %q: %v", constraint, err)
	}
	var versions []*semver.Version
	// Tags are listed page by page; a repository of one chart has a few hundred at most, and the
	// page callback keeps only those that parse.
	const maxTags = 100000
	seen := 0
	err = repo.Tags(ctx, "", func(tags []string) error {
		for _, t := range tags {
			seen++
			if seen > maxTags {
				return unresolvable(ErrTooLarge, "more than %d tags", maxTags)
			}
			if v, err := semver.NewVersion(strings.ReplaceAll(t, "_", "+")); err == nil && c.Check(v) {
				versions = append(versions, v)
			}
		}
		return nil
	})
	if err != nil {
		return "", classifyOCI(fmt.Errorf("listing the tags of %s: %w", name, err))
	}
	if len(versions) == 0 {
		return "", unresolvable(ErrNoMatchingVersion, "no tag of %s matches %q", name, constraint)
	}
	sort.Sort(sort.Reverse(semver.Collection(versions)))
	return versions[0].Original(), nil
}

// pullChart fetches the chart layer of `<name>:<version>`: the manifest, bounded, then the layer,
// verified against the digest and size in the manifest while it is read.
func (r *Resolver) pullChart(ctx context.Context, repo *remote.Repository, name, version string) ([]byte, error) {
	tag := strings.ReplaceAll(version, "+", "_")
	desc, rc, err := repo.FetchReference(ctx, tag)
	if err != nil {
		return nil, classifyOCI(fmt.Errorf("fetching the manifest of %s:%s: %w", name, tag, err))
	}
	if desc.Size > maxManifestBytes {
		rc.Close()
		return nil, unresolvable(ErrTooLarge, "the manifest of %s:%s has %d bytes", name, tag, desc.Size)
	}
	data, err := content.ReadAll(rc, desc)
	rc.Close()
	if err != nil {
		return nil, classifyOCI(fmt.Errorf("reading the manifest of %s:%s: %w", name, tag, err))
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, unresolvable(ErrInvalidChart, "the manifest of %s:%s: %v", name, tag, err)
	}
	var layer *ocispec.Descriptor
	for i := range m.Layers {
		if mt := m.Layers[i].MediaType; mt == registry.ChartLayerMediaType || mt == registry.LegacyChartLayerMediaType {
			layer = &m.Layers[i]
			break
		}
	}
	if layer == nil {
		return nil, unresolvable(ErrInvalidChart, "%s:%s is not a Helm chart (no layer of type %s)", name, tag, registry.ChartLayerMediaType)
	}
	if layer.Size > r.opts.MaxChartBytes {
		return nil, unresolvable(ErrTooLarge, "the chart %s:%s has %d bytes, the limit is %d", name, tag, layer.Size, r.opts.MaxChartBytes)
	}
	if err := layer.Digest.Validate(); err != nil {
		return nil, unresolvable(ErrInvalidChart, "the chart layer of %s:%s: %v", name, tag, err)
	}
	if data, ok := r.store.readBlob(layer.Digest.String()); ok {
		return data, nil
	}
	lrc, err := repo.Fetch(ctx, *layer)
	if err != nil {
		return nil, classifyOCI(fmt.Errorf("fetching the chart layer of %s:%s: %w", name, tag, err))
	}
	defer lrc.Close()
	data, err = content.ReadAll(io.LimitReader(lrc, r.opts.MaxChartBytes+1), *layer)
	if err != nil {
		return nil, classifyOCI(fmt.Errorf("reading the chart layer of %s:%s: %w", name, tag, err))
	}
	return data, nil
}

// classifyOCI sorts oras errors into retryable and terminal ones.
func classifyOCI(err error) error {
	var ec *errcode.ErrorResponse
	var ne net.Error
	switch {
	case errors.Is(err, ErrUnresolvable), errors.Is(err, ErrUnavailable):
		return err
	case errors.Is(err, content.ErrMismatchedDigest), errors.Is(err, content.ErrTrailingData):
		return unresolvable(ErrDigestMismatch, "%v", err)
	case errors.Is(err, errdef.ErrNotFound):
		return unresolvable(ErrChartNotFound, "%v", err)
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
		return unresolvable(ErrUnauthorized, "%v", err)
	case errors.As(err, &ec) && (ec.StatusCode == http.StatusUnauthorized || ec.StatusCode == http.StatusForbidden):
		return unresolvable(ErrUnauthorized, "%v (check the registry's credentials)", err)
	case errors.As(err, &ec) && ec.StatusCode == http.StatusNotFound:
		return unresolvable(ErrChartNotFound, "%v", err)
	case errors.As(err, &ec) && ec.StatusCode < 500 && ec.StatusCode != http.StatusTooManyRequests:
		return unresolvable(ErrChartNotFound, "%v", err)
	case errors.As(err, &ne):
		return unavailable(err)
	}
	return unavailable(err)
}
