package openstackdouble

import (
	"net/http"
	"slices"
)

// Flavor is a Nova flavor the double lists.
type Flavor struct {
	// ID is derived from Name when empty.
	ID string
	// Name is what ClusterClasses and machine templates refer to.
	Name string
	// VCPUs, RAM (MiB) and Disk (GiB, 0 for diskless flavors that need a root volume).
	VCPUs int
	RAM   int
	Disk  int
}

// DefaultFlavors are the flavors of a new double: the SCS standard flavors the published stacks
// default to (SCS-2V-4 and SCS-4V-8 diskless, SCS-2V-4-20s with a local disk).
var DefaultFlavors = []Flavor{
	{Name: "SCS-2V-4", VCPUs: 2, RAM: 4096},
	{Name: "SCS-2V-4-20s", VCPUs: 2, RAM: 4096, Disk: 20},
	{Name: "SCS-4V-8", VCPUs: 4, RAM: 8192},
	{Name: "SCS-2V-4-20", VCPUs: 2, RAM: 4096, Disk: 20},
}

// ComputeLimits are the absolute limits Nova reports for the project (GET /limits); -1 means
// unlimited, as in Nova.
type ComputeLimits struct {
	MaxInstances, InstancesUsed int
	MaxCores, CoresUsed         int
	MaxRAM, RAMUsed             int
}

// DefaultComputeLimits are Nova's default quotas with nothing in use.
var DefaultComputeLimits = ComputeLimits{MaxInstances: 10, MaxCores: 20, MaxRAM: 51200}

// WithFlavors replaces DefaultFlavors.
func WithFlavors(flavors ...Flavor) Option {
	return func(c *config) { c.cloud.flavors = slices.Clone(flavors); c.cloud.flavorsSet = true }
}

// SetFlavors replaces the flavors of a running double.
func (s *Server) SetFlavors(flavors ...Flavor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.cloud.flavors, s.cfg.cloud.flavorsSet = slices.Clone(flavors), true
}

// SetComputeLimits sets what Nova's limits call answers.
func (s *Server) SetComputeLimits(l ComputeLimits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.cloud.compute, s.cfg.cloud.computeSet = l, true
}

func (s *Server) listFlavors(w http.ResponseWriter) {
	s.mu.Lock()
	flavors := s.cfg.cloud.flavors
	if !s.cfg.cloud.flavorsSet {
		flavors = DefaultFlavors
	}
	out := make([]map[string]any, 0, len(flavors))
	for _, f := range flavors {
		id := f.ID
		if id == "" {
			id = "flavor-" + f.Name
		}
		out = append(out, map[string]any{
			"id": id, "name": f.Name, "vcpus": f.VCPUs, "ram": f.RAM, "disk": f.Disk, "swap": "",
			"OS-FLV-EXT-DATA:ephemeral": 0, "os-flavor-access:is_public": true, "rxtx_factor": 1.0,
		})
	}
	s.mu.Unlock()
	// One page: Nova's default page size (1000) holds every flavor a cloud has.
	writeJSON(w, http.StatusOK, map[string]any{"flavors": out})
}

func (s *Server) computeLimits(w http.ResponseWriter) {
	s.mu.Lock()
	l := s.cfg.cloud.compute
	if !s.cfg.cloud.computeSet {
		l = DefaultComputeLimits
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"limits": map[string]any{"rate": []any{}, "absolute": map[string]int{
		"maxTotalInstances": l.MaxInstances, "totalInstancesUsed": l.InstancesUsed,
		"maxTotalCores": l.MaxCores, "totalCoresUsed": l.CoresUsed,
		"maxTotalRAMSize": l.MaxRAM, "totalRAMUsed": l.RAMUsed,
		"maxServerMeta": 128, "maxTotalKeypairs": 100, "maxServerGroups": 10, "maxServerGroupMembers": 10,
	}}})
}
