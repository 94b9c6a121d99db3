package openstackdouble

import (
	"net/http"
	"slices"
)

// DefaultDiskFormats are Glance's default disk_formats.
var DefaultDiskFormats = []string{"ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"}

// WithDiskFormats sets the disk formats Glance accepts (its disk_formats option), which the image
// schema lists; DefaultDiskFormats otherwise. Some clouds accept raw only.
func WithDiskFormats(formats ...string) Option {
	return func(c *config) { c.cloud.diskFormats = slices.Clone(formats) }
}

// cloudConfig is the configuration (and the state tests change at run time) of the services
// beside Keystone and Glance's images: the catalog, Nova, Neutron, Cinder and Glance's info.
type cloudConfig struct {
	without     map[string]bool
	flavors     []Flavor
	flavorsSet  bool
	networks    []Network
	networksSet bool
	compute     ComputeLimits
	computeSet  bool
	volume      VolumeLimits
	volumeSet   bool
	usage       *ImageUsage
	usageSet    bool
	diskFormats []string
}

// imageSchema answers GET /v2/schemas/image with the part clients read: the disk_format enum.
func (s *Server) imageSchema(w http.ResponseWriter) {
	formats := s.cfg.cloud.diskFormats
	if formats == nil {
		formats = DefaultDiskFormats
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name": "image",
		"properties": map[string]any{
			"disk_format":      map[string]any{"type": []any{"null", "string"}, "enum": append([]any{nil}, toAny(formats)...)},
			"container_format": map[string]any{"type": []any{"null", "string"}, "enum": []any{nil, "ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"}},
		},
	})
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
