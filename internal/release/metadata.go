package release

import (
	"errors"
	"fmt"

	"sigs.k8s.io/yaml"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
)

// MetadataFile is the name of the versions file every release carries.
const MetadataFile = "metadata.yaml"

// Metadata is the content of metadata.yaml.
type Metadata struct {
	// APIVersion is metadata.clusterstack.x-k8s.io/v1alpha1 in current
	// releases. It is not checked: older releases omit it.
	APIVersion string   `json:"apiVersion,omitempty"`
	Versions   Versions `json:"versions"`
}

// Versions holds the versions a release was built from.
type Versions struct {
	// ClusterStack is the stack version in the dotted form (v3, v0-sha.abc1234).
	ClusterStack string `json:"clusterStack"`
	// Kubernetes is the exact Kubernetes version the stack ships (v1.32.5).
	Kubernetes string     `json:"kubernetes"`
	Components Components `json:"components"`
}

// Components holds the versions of the release's parts.
type Components struct {
	// ClusterAddon is the version of the addon archive.
	ClusterAddon string `json:"clusterAddon"`
	// NodeImage is the version of the node images; optional.
	NodeImage string `json:"nodeImage,omitempty"`
}

// ErrMalformedMetadata is wrapped when metadata.yaml cannot be used.
var ErrMalformedMetadata = errors.New("malformed metadata")

// ParseMetadata parses metadata.yaml and checks that the required versions
// are present and well-formed. Versions may be written in the dotted or the
// dashed form; they are kept as written.
func ParseMetadata(data []byte) (Metadata, error) {
	var m Metadata
	if err := yaml.Unmarshal(data, &m); err != nil {
		return Metadata{}, fmt.Errorf("parsing YAML: %w: %w", err, ErrMalformedMetadata)
	}
	if _, err := m.StackVersion(); err != nil {
		return Metadata{}, err
	}
	if _, err := m.KubernetesMinor(); err != nil {
		return Metadata{}, err
	}
	if _, err := m.AddonVersion(); err != nil {
		return Metadata{}, err
	}
	if m.Versions.Components.NodeImage != "" {
		if _, err := name.ParseAnyVersion(m.Versions.Components.NodeImage); err != nil {
			return Metadata{}, fmt.Errorf("versions.components.nodeImage: %w: %w", err, ErrMalformedMetadata)
		}
	}
	return m, nil
}

// StackVersion returns versions.clusterStack.
func (m Metadata) StackVersion() (name.Version, error) {
	return requiredVersion("versions.clusterStack", m.Versions.ClusterStack)
}

// AddonVersion returns versions.components.clusterAddon.
func (m Metadata) AddonVersion() (name.Version, error) {
	return requiredVersion("versions.components.clusterAddon", m.Versions.Components.ClusterAddon)
}

// KubernetesMinor returns the minor version of versions.kubernetes.
func (m Metadata) KubernetesMinor() (name.KubernetesMinor, error) {
	if m.Versions.Kubernetes == "" {
		return name.KubernetesMinor{}, fmt.Errorf("versions.kubernetes is missing: %w", ErrMalformedMetadata)
	}
	k, err := name.KubernetesMinorOf(m.Versions.Kubernetes)
	if err != nil {
		return name.KubernetesMinor{}, fmt.Errorf("versions.kubernetes: %w: %w", err, ErrMalformedMetadata)
	}
	return k, nil
}

func requiredVersion(field, s string) (name.Version, error) {
	if s == "" {
		return name.Version{}, fmt.Errorf("%s is missing: %w", field, ErrMalformedMetadata)
	}
	v, err := name.ParseAnyVersion(s)
	if err != nil {
		return name.Version{}, fmt.Errorf("%s: %v: %w", field, err, ErrMalformedMetadata)
	}
	return v, nil
}
