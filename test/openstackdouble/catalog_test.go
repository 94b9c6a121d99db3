package openstackdouble

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestCatalogAndServices checks the catalog with and without a service, the read calls of Nova,
// Neutron and Cinder with raw HTTP (the gophercloud side is tested in internal/openstack/scope),
// faults on them, and Cinder refusing another project's limits.
func TestCatalogAndServices(t *testing.T) {
	s, err := New(WithoutService(ServiceLoadBalancer), WithNetworks(Network{Name: "public", External: true}, Network{Name: "private"}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	token, body := passwordLogin(t, s)
	var catalog struct {
		Token struct {
			Catalog []struct {
				Type      string `json:"type"`
				Endpoints []struct {
					URL       string `json:"url"`
					Interface string `json:"interface"`
				} `json:"endpoints"`
			} `json:"catalog"`
			Project struct {
				ID string `json:"id"`
			} `json:"project"`
		} `json:"token"`
	}
	if err := json.Unmarshal(body, &catalog); err != nil {
		t.Fatal(err)
	}
	urls := map[string]string{}
	for _, e := range catalog.Token.Catalog {
		for _, ep := range e.Endpoints {
			if ep.Interface == "public" {
				urls[e.Type] = ep.URL
			}
		}
	}
	if _, ok := urls[ServiceLoadBalancer]; ok {
		t.Errorf("catalog has %s although it was left out", ServiceLoadBalancer)
	}
	for _, typ := range []string{ServiceIdentity, ServiceImage, ServiceCompute, ServiceNetwork, ServiceBlockStorage} {
		if urls[typ] == "" {
			t.Errorf("catalog lacks %s: %v", typ, urls)
		}
	}
	if !strings.HasSuffix(urls[ServiceBlockStorage], "/v3/"+catalog.Token.Project.ID+"/") {
		t.Errorf("Cinder URL %s does not end in the project ID", urls[ServiceBlockStorage])
	}

	get := func(url string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("X-Auth-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get(urls[ServiceCompute] + "flavors/detail"); code != http.StatusOK {
		t.Errorf("flavors: HTTP %d", code)
	}
	if code, body := get(urls[ServiceNetwork] + "v2.0/networks?router:external=true"); code != http.StatusOK || !strings.Contains(body, `"public"`) || strings.Contains(body, `"private"`) {
		t.Errorf("external networks: HTTP %d %s", code, body)
	}
	if code, _ := get(urls[ServiceBlockStorage] + "limits"); code != http.StatusOK {
		t.Errorf("volume limits: HTTP %d", code)
	}
	other := strings.Replace(urls[ServiceBlockStorage], catalog.Token.Project.ID, "someone-else", 1)
	if code, _ := get(other + "limits"); code != http.StatusForbidden {
		t.Errorf("another project's volume limits: HTTP %d, want 403", code)
	}
	f := s.InjectFault(Fault{Path: "/v2.1/limits", Status: http.StatusServiceUnavailable, Times: 1})
	if code, _ := get(urls[ServiceCompute] + "limits"); code != http.StatusServiceUnavailable || f.Hits() != 1 {
		t.Errorf("faulted compute limits: HTTP %d, hits %d", code, f.Hits())
	}
	for _, c := range []string{CallListFlavors, CallListNetworks, CallVolumeLimits, CallComputeLimits} {
		if s.Calls(c) == 0 {
			t.Errorf("%s not counted: %s", c, s)
		}
	}
}

// passwordLogin logs in as the default user with a raw token request and returns the token and
// the response body.
func passwordLogin(t *testing.T, s *Server) (string, []byte) {
	t.Helper()
	req := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"` + DefaultUser + `","domain":{"name":"` + DefaultDomain +
		`"},"password":"` + DefaultPassword + `"}}},"scope":{"project":{"name":"` + DefaultProject + `","domain":{"name":"` + DefaultDomain + `"}}}}}`
	resp, err := http.Post(s.AuthURL()+"/auth/tokens", "application/json", strings.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("login: HTTP %d %s", resp.StatusCode, body)
	}
	return resp.Header.Get("X-Subject-Token"), body
}
