package openstackdouble

import (
	"net/http"
	"slices"
	"strconv"
)

// Network is a Neutron network the double lists.
type Network struct {
	// ID is derived from Name when empty.
	ID   string
	Name string
	// External is router:external: a network routers (and so floating IPs) can attach to.
	External bool
}

// DefaultNetworks are the networks of a new double: one external network named public, as
// DevStack and most clouds have.
var DefaultNetworks = []Network{{Name: "public", External: true}}

// WithNetworks replaces DefaultNetworks.
func WithNetworks(networks ...Network) Option {
	return func(c *config) { c.cloud.networks = slices.Clone(networks); c.cloud.networksSet = true }
}

// SetNetworks replaces the networks of a running double.
func (s *Server) SetNetworks(networks ...Network) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.cloud.networks, s.cfg.cloud.networksSet = slices.Clone(networks), true
}

// listNetworks answers GET /v2.0/networks with Neutron's filters by name, id and router:external.
func (s *Server) listNetworks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	networks := s.cfg.cloud.networks
	if !s.cfg.cloud.networksSet {
		networks = DefaultNetworks
	}
	out := []map[string]any{}
	for _, n := range networks {
		id := n.ID
		if id == "" {
			id = "net-" + n.Name
		}
		if v := q.Get("router:external"); v != "" {
			if want, err := strconv.ParseBool(v); err != nil || want != n.External {
				continue
			}
		}
		if v := q.Get("name"); v != "" && v != n.Name {
			continue
		}
		if v := q.Get("id"); v != "" && v != id {
			continue
		}
		out = append(out, map[string]any{"id": id, "name": n.Name, "router:external": n.External, "status": "ACTIVE", "admin_state_up": true, "shared": n.External})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"networks": out})
}
