package release

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"sigs.k8s.io/yaml"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
)

// ErrInvalidNodeImages is wrapped by every error of ParseNodeImages.
var ErrInvalidNodeImages = errors.New("invalid node-images.yaml")

// maxNodeImagesBytes bounds node-images.yaml; real ones are a few hundred bytes.
const maxNodeImagesBytes = 1 << 20

// nodeImagesFile is the legacy format of the reference OpenStack provider.
type nodeImagesFile struct {
	APIVersion string              `json:"apiVersion,omitempty"`
	Images     []infrav1.NodeImage `json:"openStackNodeImages"`
}

// maxNodeImages bounds a release's list; real releases carry one or two.
const maxNodeImages = 64

// ParseNodeImages parses node-images.yaml. Unknown keys are ignored, as the reference did, so
// that newer files still load; what the operator needs is checked.
func ParseNodeImages(data []byte) ([]infrav1.NodeImage, error) {
	var f nodeImagesFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidNodeImages, err)
	}
	if len(f.Images) > maxNodeImages {
		return nil, fmt.Errorf("%w: %d images, at most %d", ErrInvalidNodeImages, len(f.Images), maxNodeImages)
	}
	seen := map[string]bool{}
	for i, img := range f.Images {
		if err := validate(img); err != nil {
			return nil, fmt.Errorf("%w: openStackNodeImages[%d]: %v", ErrInvalidNodeImages, i, err)
		}
		if seen[img.CreateOpts.Name] {
			return nil, fmt.Errorf("%w: openStackNodeImages[%d]: duplicate image name %q", ErrInvalidNodeImages, i, img.CreateOpts.Name)
		}
		seen[img.CreateOpts.Name] = true
	}
	return f.Images, nil
}

func validate(img infrav1.NodeImage) error {
	u, err := url.Parse(img.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(img.URL) > 2048 {
		return fmt.Errorf("url %q is not an http(s) URL", img.URL)
	}
	if img.CreateOpts == nil || strings.TrimSpace(img.CreateOpts.Name) == "" {
		return errors.New("createOpts.name is required")
	}
	if len(img.CreateOpts.Name) > 255 {
		return errors.New("createOpts.name is longer than 255 characters")
	}
	if h := img.Hash; h != nil {
		want := map[infrav1.HashAlgorithm]int{infrav1.HashAlgorithmSHA256: 64, infrav1.HashAlgorithmSHA512: 128}[h.Algorithm]
		if want == 0 || len(h.Value) != want || strings.Trim(h.Value, "0123456789abcdef") != "" {
			return fmt.Errorf("hash is not a lowercase hex %s digest", h.Algorithm)
		}
	}
	return nil
}
