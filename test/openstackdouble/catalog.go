package openstackdouble

import (
	"net/http"
	"slices"
	"strings"
)

// Service types the catalog publishes, as Keystone names them (the service-types authority's
// names, which gophercloud looks up).
const (
	ServiceIdentity     = "identity"
	ServiceImage        = "image"
	ServiceCompute      = "compute"
	ServiceNetwork      = "network"
	ServiceBlockStorage = "block-storage"
	ServiceLoadBalancer = "load-balancer"
)

// catalogServices are the services of the default catalog, in catalog order.
var catalogServices = []struct{ typ, name string }{
	{ServiceImage, "glance"},
	{ServiceIdentity, "keystone"},
	{ServiceCompute, "nova"},
	{ServiceNetwork, "neutron"},
	{ServiceBlockStorage, "cinderv3"},
	{ServiceLoadBalancer, "octavia"},
}

// WithoutService leaves a service out of the catalog, like a cloud that does not run it (e.g.
// ServiceLoadBalancer: no Octavia). Its endpoints still answer, but a client that reads the
// catalog never finds them.
func WithoutService(serviceType string) Option {
	return func(c *config) {
		if c.cloud.without == nil {
			c.cloud.without = map[string]bool{}
		}
		c.cloud.without[serviceType] = true
	}
}

// serviceURL is the catalog URL of a service for a region, interface and project. Cinder's
// URL carries the project ID, as real clouds publish it.
func (s *Server) serviceURL(serviceType, region, iface, projectID string) string {
	switch serviceType {
	case ServiceImage:
		return s.ImageEndpoint(region, iface)
	case ServiceIdentity:
		return s.base + "/"
	case ServiceCompute:
		return s.base + "/compute/" + region + "/" + iface + "/v2.1/"
	case ServiceBlockStorage:
		return s.base + "/volume/" + region + "/" + iface + "/v3/" + projectID + "/"
	}
	return s.base + "/" + serviceType + "/" + region + "/" + iface + "/"
}

// catalog is the service catalog of a token scoped to project.
func (s *Server) catalog(p *project) []map[string]any {
	var out []map[string]any
	for _, svc := range catalogServices {
		if s.cfg.cloud.without[svc.typ] {
			continue
		}
		var eps []map[string]string
		for _, region := range s.cfg.regions {
			for _, iface := range catalogInterfaces {
				eps = append(eps, map[string]string{
					"id": region + "-" + svc.typ + "-" + iface, "interface": iface, "region": region, "region_id": region,
					"url": s.serviceURL(svc.typ, region, iface, p.id),
				})
			}
		}
		out = append(out, map[string]any{"id": svc.typ + "-service", "type": svc.typ, "name": svc.name, "endpoints": eps})
	}
	return out
}

// servicePrefixes are the URL prefixes of the services beside Keystone and Glance.
var servicePrefixes = map[string]string{
	"/compute/":       ServiceCompute,
	"/network/":       ServiceNetwork,
	"/volume/":        ServiceBlockStorage,
	"/load-balancer/": ServiceLoadBalancer,
}

// serviceRoute routes a request to Nova, Neutron, Cinder or Octavia: the template is the path
// below the catalog URL, with the project ID of Cinder's URLs written {project_id}.
func serviceRoute(p string) (route, bool) {
	for prefix, svc := range servicePrefixes {
		if !strings.HasPrefix(p, prefix) {
			continue
		}
		parts := strings.SplitN(strings.TrimPrefix(p, prefix), "/", 3)
		rt := route{service: svc, template: p, path: p}
		if len(parts) < 2 {
			return rt, true
		}
		rt.region, rt.iface = parts[0], parts[1]
		rest := "/"
		if len(parts) == 3 {
			rest = "/" + strings.TrimSuffix(parts[2], "/")
		}
		rt.path, rt.template = rest, rest
		if rest == "/" {
			// The service root: version discovery, keyed apart from Keystone's "GET /".
			rt.template = prefix
		}
		if seg := strings.Split(strings.Trim(rest, "/"), "/"); svc == ServiceBlockStorage && len(seg) >= 2 && seg[0] == "v3" {
			rt.projectID = seg[1]
			seg[1] = "{project_id}"
			rt.template = "/" + strings.Join(seg, "/")
		}
		return rt, true
	}
	return route{}, false
}

// serveService answers the read calls of Nova, Neutron and Cinder the capability check makes.
func (s *Server) serveService(w http.ResponseWriter, r *http.Request, rt route) {
	if !slices.Contains(s.cfg.regions, rt.region) || !slices.Contains(catalogInterfaces, rt.iface) {
		writeError(w, http.StatusNotFound, "The resource could not be found.")
		return
	}
	if rt.path == "/" && r.Method == http.MethodGet {
		// Unauthenticated version discovery, which gophercloud does for catalog URLs without a
		// version (Neutron's and Octavia's).
		s.serviceVersions(w, r, rt)
		return
	}
	t, ok := s.projectToken(w, r, "this service")
	if !ok {
		return
	}
	switch r.Method + " " + rt.template {
	case CallListFlavors:
		s.listFlavors(w)
	case CallComputeLimits:
		s.computeLimits(w)
	case CallListNetworks:
		s.listNetworks(w, r)
	case CallVolumeLimits:
		if rt.projectID != t.project.id {
			// Cinder refuses another project's limits to a member.
			writeError(w, http.StatusForbidden, "Policy doesn't allow this operation.")
			return
		}
		s.volumeLimits(w)
	default:
		writeError(w, http.StatusNotFound, "The resource could not be found.")
	}
}

// serviceVersions answers GET on a service root with its API versions, as Neutron and Octavia do.
func (s *Server) serviceVersions(w http.ResponseWriter, r *http.Request, rt route) {
	href := s.base + r.URL.Path
	if !strings.HasSuffix(href, "/") {
		href += "/"
	}
	var versions []map[string]any
	switch rt.service {
	case ServiceNetwork, ServiceLoadBalancer:
		versions = []map[string]any{{"id": "v2.0", "status": "CURRENT", "links": []map[string]string{{"rel": "self", "href": href + "v2.0/"}}}}
	default:
		writeError(w, http.StatusNotFound, "The resource could not be found.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"versions": versions})
}
