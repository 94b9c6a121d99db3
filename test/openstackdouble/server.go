package openstackdouble

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults used when New is called without users, projects or a region.
const (
	DefaultRegion   = "RegionOne"
	DefaultDomain   = "Default"
	DefaultUser     = "demo"
	DefaultPassword = "demo-password"
	DefaultProject  = "demo"
	// DefaultCloudName is the clouds.yaml entry CloudsYAML writes unless told otherwise.
	DefaultCloudName = "openstack"
	// DefaultTokenLifetime matches Keystone's default token expiration of one hour.
	DefaultTokenLifetime = time.Hour
	// DefaultPageSize is Glance's limit_param_default.
	DefaultPageSize = 25
	// MaxPageSize is Glance's api_limit_max.
	MaxPageSize = 1000
)

// Interfaces published for every region in the service catalog.
var catalogInterfaces = []string{"public", "internal", "admin"}

// User is a Keystone user that can log in with a password.
type User struct {
	// ID is generated when empty.
	ID string
	// Name is the login name.
	Name string
	// Password is the login password.
	Password string
	// Domain is the user's domain name; DefaultDomain when empty.
	Domain string
	// Projects names the projects the user has a role on; they are created when unknown.
	// The first one is also the user's default project, used for unscoped logins.
	Projects []string
}

// Project is a Keystone project. Projects named by users or application credentials are created
// implicitly; WithProject is only needed to pin an ID or a domain.
type Project struct {
	// ID is generated when empty.
	ID string
	// Name is the project name, unique per domain.
	Name string
	// Domain is the project's domain name; DefaultDomain when empty.
	Domain string
}

// ApplicationCredential is a Keystone application credential. Like in Keystone it is bound to one
// user and one project, and a token issued for it is always scoped to that project.
type ApplicationCredential struct {
	// ID is generated when empty.
	ID string
	// Name identifies the credential together with its user.
	Name string
	// Secret is the credential secret.
	Secret string
	// User is the name of the owning user (in DefaultDomain unless the user says otherwise).
	User string
	// Project is the name of the project the tokens are scoped to; the user's first project when
	// empty.
	Project string
}

// Option configures a Server.
type Option func(*config)

type config struct {
	regions       []string
	users         []User
	projects      []Project
	appCreds      []ApplicationCredential
	tokenLifetime time.Duration
	webDownload   bool
	tls           bool
	listener      net.Listener
	publicURL     string
	clock         func() time.Time
	importClient  *http.Client
	keepData      bool
	convertTo     string
	cloud         cloudConfig
}

// WithRegion adds a region to the service catalog. The first region is the default of
// CloudsYAML. Without it the catalog has DefaultRegion only.
func WithRegion(name string) Option {
	return func(c *config) { c.regions = append(c.regions, name) }
}

// WithUser adds a user. Without any user the server has DefaultUser with DefaultPassword in
// DefaultProject.
func WithUser(u User) Option {
	return func(c *config) { c.users = append(c.users, u) }
}

// WithProject adds a project, e.g. to pin its ID.
func WithProject(p Project) Option {
	return func(c *config) { c.projects = append(c.projects, p) }
}

// WithApplicationCredential adds an application credential of an existing user.
func WithApplicationCredential(ac ApplicationCredential) Option {
	return func(c *config) { c.appCreds = append(c.appCreds, ac) }
}

// WithTokenLifetime sets how long issued tokens are valid; DefaultTokenLifetime otherwise.
func WithTokenLifetime(d time.Duration) Option {
	return func(c *config) { c.tokenLifetime = d }
}

// WithWebDownload sets whether Glance offers the web-download import method (default true).
// Not every cloud enables it, and the operator must fall back to uploading.
func WithWebDownload(enabled bool) Option {
	return func(c *config) { c.webDownload = enabled }
}

// WithTLS serves HTTPS with a self-signed certificate; see CACertPEM.
func WithTLS() Option {
	return func(c *config) { c.tls = true }
}

// WithListener serves on l instead of a fresh loopback listener.
func WithListener(l net.Listener) Option {
	return func(c *config) { c.listener = l }
}

// WithPublicURL sets the base URL the server advertises (catalog, auth URL, links), for when it
// listens on a wildcard address that clients cannot dial as is.
func WithPublicURL(u string) Option {
	return func(c *config) { c.publicURL = strings.TrimSuffix(u, "/") }
}

// WithClock replaces time.Now, so tests can expire tokens without sleeping.
func WithClock(now func() time.Time) Option {
	return func(c *config) { c.clock = now }
}

// WithImportHTTPClient sets the client the web-download import fetches with, e.g. one that
// trusts a test TLS server.
func WithImportHTTPClient(hc *http.Client) Option {
	return func(c *config) { c.importClient = hc }
}

// WithKeepImageData keeps uploaded and imported bytes in memory so GET /v2/images/{id}/file can
// return them. Off by default because node images are large and tests only need their hashes.
func WithKeepImageData(keep bool) Option {
	return func(c *config) { c.keepData = keep }
}

// WithFormatConversion makes Glance convert every image it receives to diskFormat (e.g. "raw"),
// like Glance's image_conversion import plugin: disk_format changes and the stored bytes, hence
// checksum and os_hash_value, no longer match what the client sent. Code that compares Glance's
// hash with the source file's is wrong on such clouds, and this option lets tests prove it.
func WithFormatConversion(diskFormat string) Option {
	return func(c *config) { c.convertTo = diskFormat }
}

// Server is a running OpenStack double. All methods are safe for concurrent use.
type Server struct {
	cfg  config
	srv  *httptest.Server
	base string

	// ctx is cancelled by Close so that slow faults and hanging imports end.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	users    []*user
	projects []*project
	appCreds []*appCred
	tokens   map[string]*token
	images   map[string]*image
	// deleted remembers deleted image IDs: Glance never lets a client reuse one.
	deleted map[string]bool
	seq     int64
	calls   map[string]int
	faults  []*faultEntry
}

type user struct {
	id, name, password, domain string
	projects                   []*project
}

type project struct {
	id, name, domain string
}

type appCred struct {
	id, name, secret, description string
	user                          *user
	project                       *project
	// roles nil means all the user's roles on the project (credentials given by options).
	roles        []string
	expiresAt    *time.Time
	unrestricted bool
}

type token struct {
	id        string
	method    string
	user      *user
	project   *project
	appCred   *appCred
	issuedAt  time.Time
	expiresAt time.Time
	revoked   bool
}

// New starts a server configured by opts. Close it when done.
func New(opts ...Option) (*Server, error) {
	cfg := config{tokenLifetime: DefaultTokenLifetime, webDownload: true, clock: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	if len(cfg.regions) == 0 {
		cfg.regions = []string{DefaultRegion}
	}
	if len(cfg.users) == 0 {
		cfg.users = []User{{Name: DefaultUser, Password: DefaultPassword, Projects: []string{DefaultProject}}}
	}
	if cfg.importClient == nil {
		cfg.importClient = &http.Client{}
	}
	if cfg.tokenLifetime <= 0 {
		return nil, fmt.Errorf("validating options: token lifetime %s is not positive", cfg.tokenLifetime)
	}

	s := &Server{
		cfg:     cfg,
		tokens:  map[string]*token{},
		images:  map[string]*image{},
		deleted: map[string]bool{},
		calls:   map[string]int{},
	}
	if err := s.buildIdentities(); err != nil {
		return nil, err
	}

	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.srv = httptest.NewUnstartedServer(s)
	// Handshake failures are expected in TLS tests and resets are injected on purpose; logging
	// them would only bury test output.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if cfg.listener != nil {
		_ = s.srv.Listener.Close()
		s.srv.Listener = cfg.listener
	}
	if cfg.tls {
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	s.base = s.srv.URL
	if cfg.publicURL != "" {
		s.base = cfg.publicURL
	}
	return s, nil
}

func (s *Server) buildIdentities() error {
	findProject := func(name, domain string) *project {
		if domain == "" {
			domain = DefaultDomain
		}
		for _, p := range s.projects {
			if p.name == name && p.domain == domain {
				return p
			}
		}
		p := &project{id: newID(), name: name, domain: domain}
		s.projects = append(s.projects, p)
		return p
	}
	for _, p := range s.cfg.projects {
		if p.Name == "" {
			return errors.New("validating options: project without a name")
		}
		np := findProject(p.Name, p.Domain)
		if p.ID != "" {
			np.id = p.ID
		}
	}
	for _, u := range s.cfg.users {
		if u.Name == "" || u.Password == "" {
			return errors.New("validating options: user without a name or password")
		}
		nu := &user{id: u.ID, name: u.Name, password: u.Password, domain: u.Domain}
		if nu.id == "" {
			nu.id = newID()
		}
		if nu.domain == "" {
			nu.domain = DefaultDomain
		}
		for _, pn := range u.Projects {
			nu.projects = append(nu.projects, findProject(pn, nu.domain))
		}
		s.users = append(s.users, nu)
	}
	for _, ac := range s.cfg.appCreds {
		var owner *user
		for _, u := range s.users {
			if u.name == ac.User {
				owner = u
				break
			}
		}
		if owner == nil {
			return fmt.Errorf("validating options: application credential %q names unknown user %q", ac.Name, ac.User)
		}
		if ac.Secret == "" {
			return fmt.Errorf("validating options: application credential %q has no secret", ac.Name)
		}
		var p *project
		if ac.Project == "" {
			if len(owner.projects) == 0 {
				return fmt.Errorf("validating options: application credential %q: user %q has no project", ac.Name, ac.User)
			}
			p = owner.projects[0]
		} else {
			p = findProject(ac.Project, owner.domain)
		}
		n := &appCred{id: ac.ID, name: ac.Name, secret: ac.Secret, user: owner, project: p}
		if n.id == "" {
			n.id = newID()
		}
		s.appCreds = append(s.appCreds, n)
	}
	return nil
}

// URL is the server's base URL. Keystone is served at its root.
func (s *Server) URL() string { return s.base }

// AuthURL is the versioned Keystone endpoint, as clouds.yaml auth_url usually names it.
func (s *Server) AuthURL() string { return s.base + "/v3" }

// ImageEndpoint is the Glance catalog URL for a region and interface.
func (s *Server) ImageEndpoint(region, iface string) string {
	return s.base + "/image/" + region + "/" + iface + "/"
}

// Close stops the server, including imports that are still running.
func (s *Server) Close() {
	s.cancel()
	s.srv.Close()
	s.wg.Wait()
}

// CACertPEM is the PEM-encoded certificate of the TLS server (nil without WithTLS). It is
// self-signed, so it is also the CA to trust.
func (s *Server) CACertPEM() []byte {
	c := s.srv.Certificate()
	if c == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// ProjectID returns the ID of the project with this name (any domain), or "".
func (s *Server) ProjectID(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.projects {
		if p.name == name {
			return p.id
		}
	}
	return ""
}

// ApplicationCredentialID returns the ID of the application credential with this name, or "".
func (s *Server) ApplicationCredentialID(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ac := range s.appCreds {
		if ac.name == name {
			return ac.id
		}
	}
	return ""
}

// ExpireTokens makes every token issued so far invalid, as when they all reach expires_at. The
// next service call of a client gets 401 and must log in again.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		t.revoked = true
	}
}

// Calls returns how many requests an endpoint received, keyed like "PUT /v2/images/{id}/file";
// see the Call constants. Requests answered by an injected fault count too.
func (s *Server) Calls(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[endpoint]
}

// CallCounts returns a copy of all counters.
func (s *Server) CallCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// TotalCalls returns the number of requests received by all endpoints.
func (s *Server) TotalCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range s.calls {
		n += v
	}
	return n
}

// ResetCalls sets all counters to zero.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[string]int{}
}

// String lists the counters, for failure messages.
func (s *Server) String() string {
	counts := s.CallCounts()
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %d\n", k, counts[k])
	}
	return b.String()
}

// Endpoint keys for Calls and for matching faults (Fault.Path takes the part after the method).
const (
	CallIdentityVersions = "GET /"
	CallIdentityV3       = "GET /v3"
	CallAuthTokens       = "POST /v3/auth/tokens"
	CallImageVersions    = "GET /image/"
	CallCreateImage      = "POST /v2/images"
	CallListImages       = "GET /v2/images"
	CallGetImage         = "GET /v2/images/{id}"
	CallUpdateImage      = "PATCH /v2/images/{id}"
	CallDeleteImage      = "DELETE /v2/images/{id}"
	CallUploadImage      = "PUT /v2/images/{id}/file"
	CallDownloadImage    = "GET /v2/images/{id}/file"
	CallImportInfo       = "GET /v2/info/import"
	CallImportImage      = "POST /v2/images/{id}/import"
	CallImageSchema      = "GET /v2/schemas/image"
	CallImageUsage       = "GET /v2/info/usage"
	CallListFlavors      = "GET /v2.1/flavors/detail"
	CallComputeLimits    = "GET /v2.1/limits"
	CallListNetworks     = "GET /v2.0/networks"
	CallVolumeLimits     = "GET /v3/{project_id}/limits"
	CallNetworkVersions  = "GET /network/"
	CallLBVersions       = "GET /load-balancer/"
)

// route is where a request goes: its endpoint template (the key without the method) and, for
// Glance, the path below the catalog URL plus the image ID.
type route struct {
	template string
	path     string
	glance   bool
	region   string
	iface    string
	imageID  string
	// service is the service of a Nova, Neutron, Cinder or Octavia call (see serviceRoute).
	service   string
	projectID string
}

func (s *Server) route(r *http.Request) route {
	p := r.URL.Path
	switch {
	case p == "" || p == "/":
		return route{template: "/", path: "/"}
	case p == "/v3" || p == "/v3/":
		return route{template: "/v3", path: p}
	case p == "/v3/auth/tokens":
		return route{template: p, path: p}
	case strings.HasPrefix(p, "/v3/users/"):
		if tmpl, _, _, ok := appCredRoute(p); ok {
			return route{template: tmpl, path: p}
		}
		return route{template: p, path: p}
	case strings.HasPrefix(p, "/image/"):
		parts := strings.SplitN(strings.TrimPrefix(p, "/image/"), "/", 3)
		rt := route{glance: true, template: p, path: p}
		if len(parts) < 2 {
			return rt
		}
		rt.region, rt.iface = parts[0], parts[1]
		rest := "/"
		if len(parts) == 3 {
			rest = "/" + parts[2]
		}
		rt.path = rest
		seg := strings.Split(strings.Trim(rest, "/"), "/")
		switch {
		case rest == "/":
			rt.template = "/image/"
		case rest == "/v2/images" || rest == "/v2/images/":
			rt.template = "/v2/images"
		case rest == "/v2/info/import":
			rt.template = rest
		case len(seg) == 3 && seg[0] == "v2" && seg[1] == "images":
			rt.template, rt.imageID = "/v2/images/{id}", seg[2]
		case len(seg) == 4 && seg[0] == "v2" && seg[1] == "images" && (seg[3] == "file" || seg[3] == "import"):
			rt.template, rt.imageID = "/v2/images/{id}/"+seg[3], seg[2]
		default:
			rt.template = rest
		}
		return rt
	default:
		if rt, ok := serviceRoute(p); ok {
			return rt
		}
		return route{template: p, path: p}
	}
}

// ServeHTTP dispatches to Keystone or Glance after counting the call and applying faults.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := s.route(r)
	key := r.Method + " " + rt.template
	s.mu.Lock()
	s.calls[key]++
	s.mu.Unlock()

	f, handled := s.applyFault(w, r, rt)
	if handled {
		return
	}

	switch {
	case rt.template == "/" && r.Method == http.MethodGet:
		s.identityVersions(w)
	case rt.template == "/v3" && r.Method == http.MethodGet:
		s.identityV3Version(w)
	case rt.template == "/v3/auth/tokens" && r.Method == http.MethodPost:
		s.issueToken(w, r)
	case strings.HasPrefix(rt.template, "/v3/users/{user_id}/application_credentials"):
		s.serveAppCreds(w, r, rt)
	case rt.glance:
		s.serveGlance(w, r, rt, f)
	case rt.service != "":
		s.serveService(w, r, rt)
	default:
		writeError(w, http.StatusNotFound, "The resource could not be found.")
	}
}

func (s *Server) now() time.Time { return s.cfg.clock().UTC() }

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newUUID returns a random version 4 UUID, the form Glance uses for image IDs.
func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// CloudsYAMLOptions describe the clouds.yaml entry CloudsYAML writes. Empty fields take defaults;
// given fields are written as they are, even when the server does not know them, so tests can
// produce wrong credentials on purpose.
type CloudsYAMLOptions struct {
	// CloudName is the entry's key; DefaultCloudName when empty.
	CloudName string
	// User is the user name; the first configured user when empty.
	User string
	// Password is the user's password; the configured password of User when empty.
	Password string
	// ApplicationCredentialID and ApplicationCredentialSecret switch the entry to
	// application-credential auth (no user, password or project is written).
	ApplicationCredentialID     string
	ApplicationCredentialSecret string
	// Project is the project name; the user's first project when empty.
	Project string
	// Domain is the user and project domain name; the user's domain when empty.
	Domain string
	// Region is region_name; the first region when empty.
	Region string
	// Interface is the catalog interface (public, internal, admin); public when empty.
	Interface string
	// CACertFile is written as cacert when set.
	CACertFile string
	// Verify is written as verify when set.
	Verify *bool
}

// CloudsYAML returns a clouds.yaml document for this server and the name of its cloud entry.
func (s *Server) CloudsYAML(o CloudsYAMLOptions) (content, cloudName string) {
	cloudName = o.CloudName
	if cloudName == "" {
		cloudName = DefaultCloudName
	}
	if o.Region == "" {
		o.Region = s.cfg.regions[0]
	}
	if o.Interface == "" {
		o.Interface = "public"
	}
	var b strings.Builder
	q := strconv.Quote
	fmt.Fprintf(&b, "clouds:\n  %s:\n    auth:\n      auth_url: %s\n", q(cloudName), q(s.AuthURL()))
	if o.ApplicationCredentialID != "" {
		fmt.Fprintf(&b, "      application_credential_id: %s\n      application_credential_secret: %s\n",
			q(o.ApplicationCredentialID), q(o.ApplicationCredentialSecret))
		fmt.Fprintf(&b, "    auth_type: \"v3applicationcredential\"\n")
	} else {
		s.mu.Lock()
		var u *user
		for _, cand := range s.users {
			if o.User == "" || cand.name == o.User {
				u = cand
				break
			}
		}
		if u != nil {
			if o.User == "" {
				o.User = u.name
			}
			if o.Password == "" {
				o.Password = u.password
			}
			if o.Project == "" && len(u.projects) > 0 {
				o.Project = u.projects[0].name
			}
			if o.Domain == "" {
				o.Domain = u.domain
			}
		}
		s.mu.Unlock()
		if o.Domain == "" {
			o.Domain = DefaultDomain
		}
		fmt.Fprintf(&b, "      username: %s\n      password: %s\n      project_name: %s\n", q(o.User), q(o.Password), q(o.Project))
		fmt.Fprintf(&b, "      user_domain_name: %s\n      project_domain_name: %s\n", q(o.Domain), q(o.Domain))
	}
	fmt.Fprintf(&b, "    region_name: %s\n    interface: %s\n    identity_api_version: 3\n", q(o.Region), q(o.Interface))
	if o.CACertFile != "" {
		fmt.Fprintf(&b, "    cacert: %s\n", q(o.CACertFile))
	}
	if o.Verify != nil {
		fmt.Fprintf(&b, "    verify: %t\n", *o.Verify)
	}
	return b.String(), cloudName
}
