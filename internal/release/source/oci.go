package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
	"oras.land/oras-go/v2/registry/remote/retry"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
)

// ArtifactType is the OCI artifact type of a cluster-stack release.
const ArtifactType = "application/vnd.scs.cluster-stacks.v1"

// OCI reads releases from an OCI repository: one artifact per release,
// tagged with the release name, one layer per file named by its
// org.opencontainers.image.title annotation.
type OCI struct {
	repo     *remote.Repository
	maxBytes int64
}

// NewOCI returns a source for the repository described by cfg.
func NewOCI(cfg OCIConfig, httpClient *http.Client, maxBytes int64) (*OCI, error) {
	repo, err := remote.NewRepository(cfg.Registry + "/" + cfg.Repository)
	if err != nil {
		return nil, fmt.Errorf("configuring OCI repository: %w", err)
	}
	repo.PlainHTTP = cfg.PlainHTTP
	repo.TagListPageSize = cfg.TagPageSize
	if httpClient == nil {
		httpClient = &http.Client{Transport: retry.NewTransport(egress.Default().Transport())}
	}
	cred := auth.Credential{
		Username: cfg.Credentials.Username,
		Password: cfg.Credentials.Password,
		// A token is sent as the registry bearer token; with a Basic
		// challenge the username and password are used instead.
		AccessToken: cfg.Credentials.Token,
	}
	client := &auth.Client{Client: httpClient, Cache: auth.NewCache()}
	if cred != auth.EmptyCredential {
		client.Credential = auth.StaticCredential(repo.Reference.Registry, cred)
	}
	repo.Client = client
	return &OCI{repo: repo, maxBytes: maxBytes}, nil
}

// Type returns the kind of the source.
func (o *OCI) Type() Type { return TypeOCI }

// ID identifies the source (kind and location) in cache keys and messages.
func (o *OCI) ID() string {
	return "oci://" + o.repo.Reference.Registry + "/" + o.repo.Reference.Repository
}

// List returns the release names among the repository's tags, following the
// registry's pagination to the end.
func (o *OCI) List(ctx context.Context) ([]name.Release, error) {
	var tags []string
	err := o.repo.Tags(ctx, "", func(page []string) error {
		tags = append(tags, page...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing tags of %s: %w", o.ID(), classifyOCI(err))
	}
	return releaseNames(tags), nil
}

// Fetch pulls the release artifact. Every byte is checked against the digest
// in its descriptor while it streams to disk: manifest and layers alike.
func (o *OCI) Fetch(ctx context.Context, n name.Release, destDir string) error {
	releaseName, err := checkReleaseName(n)
	if err != nil {
		return err
	}
	fail := func(err error) error { return fmt.Errorf("pulling %q from %s: %w", releaseName, o.ID(), err) }

	desc, rc, err := o.repo.FetchReference(ctx, releaseName)
	if err != nil {
		return fail(classifyOCI(err))
	}
	if desc.Size > 4<<20 {
		rc.Close()
		return fail(fmt.Errorf("manifest of %d bytes: %w", desc.Size, ErrTooLarge))
	}
	data, err := content.ReadAll(rc, desc)
	rc.Close()
	if err != nil {
		return fail(classifyOCI(err))
	}
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		return fail(fmt.Errorf("media type %q is not an OCI image manifest: %w", desc.MediaType, ErrInvalidArtifact))
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return fail(fmt.Errorf("parsing manifest: %v: %w", err, ErrInvalidArtifact))
	}
	// Manifests packed before OCI 1.1 carry the artifact type as the config
	// media type; both are found in the wild.
	if m.ArtifactType != ArtifactType && m.Config.MediaType != ArtifactType {
		return fail(fmt.Errorf("artifact type %q is not %s: %w", m.ArtifactType, ArtifactType, ErrInvalidArtifact))
	}
	b := newBudget(o.maxBytes)
	for _, layer := range m.Layers {
		file := layer.Annotations[ocispec.AnnotationTitle]
		if err := checkFileName(file); err != nil {
			return fail(fmt.Errorf("layer %s: %w", layer.Digest, err))
		}
		if err := b.take(file, layer.Size); err != nil {
			return fail(err)
		}
		if err := o.fetchLayer(ctx, layer, destDir, file); err != nil {
			return fail(err)
		}
	}
	return nil
}

func (o *OCI) fetchLayer(ctx context.Context, layer ocispec.Descriptor, destDir, file string) error {
	if err := layer.Digest.Validate(); err != nil {
		return fmt.Errorf("layer %q: digest: %v: %w", file, err, ErrInvalidArtifact)
	}
	rc, err := o.repo.Fetch(ctx, layer)
	if err != nil {
		return fmt.Errorf("fetching layer %q: %w", file, classifyOCI(err))
	}
	defer rc.Close()
	vr := content.NewVerifyReader(rc, layer)
	if err := writeFile(destDir, file, vr, layer.Size); err != nil {
		return err
	}
	if err := vr.Verify(); err != nil {
		return fmt.Errorf("verifying layer %q: %w", file, classifyOCI(err))
	}
	return nil
}

// classifyOCI adds this package's sentinel errors to oras errors, keeping
// the original in the chain.
func classifyOCI(err error) error {
	var ec *errcode.ErrorResponse
	switch {
	case errors.Is(err, egress.ErrRefused):
		return refusedIsConfig(err)
	case errors.Is(err, errdef.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, content.ErrMismatchedDigest), errors.Is(err, content.ErrTrailingData), errors.Is(err, errdef.ErrInvalidDigest):
		return fmt.Errorf("%w: %w", ErrIntegrity, err)
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
		return fmt.Errorf("%w: %w", ErrUnauthorized, err)
	case errors.As(err, &ec) && (ec.StatusCode == http.StatusUnauthorized || ec.StatusCode == http.StatusForbidden):
		return fmt.Errorf("%w: %w", ErrUnauthorized, err)
	case errors.As(err, &ec) && ec.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}
