// Package helmrepo runs in-process doubles of the places Helm charts come from: a Helm HTTP chart
// repository (index.yaml and packaged .tgz charts, built with Helm's own packaging and index
// code) and an OCI registry holding charts pushed the way `helm push` pushes them. Both serve
// HTTPS with the httptest certificate, which covers example.com and *.example.com, so charts can
// name realistic repository URLs (https://charts.example.com/stable, oci://registry.example.com/x)
// and Client routes those names to the doubles. Every double counts the requests it answers.
package helmrepo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/provenance"
	helmregistry "helm.sh/helm/v4/pkg/registry"
	repo "helm.sh/helm/v4/pkg/repo/v1"
)

// Chart returns an in-memory chart with the given templates (file name under templates/ ->
// content) and values.yaml content.
func Chart(name, version string, templates map[string]string, values string) *chart.Chart {
	ch := &chart.Chart{Metadata: &chart.Metadata{APIVersion: chart.APIVersionV2, Name: name, Version: version, Type: "application"}}
	for n, t := range templates {
		ch.Templates = append(ch.Templates, &common.File{Name: path.Join("templates", n), Data: []byte(t)})
	}
	if values != "" {
		ch.Raw = append(ch.Raw, &common.File{Name: chartutil.ValuesfileName, Data: []byte(values)})
	}
	return ch
}

// ConfigMapChart is a chart rendering one ConfigMap named after the chart, in kube-system, whose
// data carries the chart's version and the value `host` (for values passed from a parent).
func ConfigMapChart(name, version string) *chart.Chart {
	return Chart(name, version, map[string]string{"configmap.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: dep-{{ .Chart.Name }}
  namespace: kube-system
data:
  chart: {{ .Chart.Name | quote }}
  version: {{ .Chart.Version | quote }}
  host: {{ .Values.host | default "" | quote }}
`}, "host: \"\"\n")
}

// Package returns the .tgz of ch as `helm package` writes it.
func Package(ch *chart.Chart) ([]byte, error) {
	dir, err := os.MkdirTemp("", "helmrepo-package-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	p, err := chartutil.Save(ch, dir)
	if err != nil {
		return nil, fmt.Errorf("packaging chart %s: %w", ch.Name(), err)
	}
	return os.ReadFile(p)
}

// counter counts requests by path.
type counter struct {
	mu    sync.Mutex
	paths map[string]int
	total int
}

func (c *counter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		if c.paths == nil {
			c.paths = map[string]int{}
		}
		c.paths[r.URL.Path]++
		c.total++
		c.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// Requests returns the number of requests answered so far.
func (c *counter) Requests() int { c.mu.Lock(); defer c.mu.Unlock(); return c.total }

// RequestsTo returns the number of requests to a path so far.
func (c *counter) RequestsTo(p string) int { c.mu.Lock(); defer c.mu.Unlock(); return c.paths[p] }

// Repo is a Helm HTTP chart repository.
type Repo struct {
	counter
	srv *httptest.Server
	dir string

	mu       sync.Mutex
	index    *repo.IndexFile
	user     string
	password string
	failWith int
}

// StartRepo starts an empty repository over HTTPS; Close stops it.
func StartRepo() (*Repo, error) {
	dir, err := os.MkdirTemp("", "helmrepo-")
	if err != nil {
		return nil, err
	}
	r := &Repo{dir: dir, index: repo.NewIndexFile()}
	r.srv = httptest.NewTLSServer(r.wrap(http.HandlerFunc(r.serve)))
	return r, nil
}

// NewRepo is StartRepo for the duration of a test.
func NewRepo(tb testing.TB) *Repo {
	tb.Helper()
	r, err := StartRepo()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Close)
	return r
}

// Close stops the repository and removes its files.
func (r *Repo) Close() {
	r.srv.Close()
	_ = os.RemoveAll(r.dir)
}

// URL is the repository's address (https://127.0.0.1:port).
func (r *Repo) URL() string { return r.srv.URL }

// Host is the repository's host:port.
func (r *Repo) Host() string { return strings.TrimPrefix(r.srv.URL, "https://") }

// AddChart packages ch into the repository and lists it in index.yaml with its digest and a URL
// relative to the repository, as `helm repo index` does. It returns the archive.
func (r *Repo) AddChart(ch *chart.Chart) ([]byte, error) {
	data, err := Package(ch)
	if err != nil {
		return nil, err
	}
	file := ch.Name() + "-" + ch.Metadata.Version + ".tgz"
	if err := os.WriteFile(filepath.Join(r.dir, file), data, 0o644); err != nil {
		return nil, err
	}
	digest, err := provenance.DigestFile(filepath.Join(r.dir, file))
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.index.MustAdd(ch.Metadata, file, "", digest); err != nil {
		return nil, err
	}
	r.index.SortEntries()
	return data, nil
}

// Add is AddChart failing the test on errors.
func (r *Repo) Add(tb testing.TB, ch *chart.Chart) []byte {
	tb.Helper()
	data, err := r.AddChart(ch)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// SetDigest makes index.yaml promise digest for a chart version: the archive served no longer
// matches it, as with a tampered or half-published repository.
func (r *Repo) SetDigest(name, version, digest string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, cv := range r.index.Entries[name] {
		if cv.Version == version {
			cv.Digest = digest
		}
	}
}

// RequireBasicAuth makes every request need these credentials.
func (r *Repo) RequireBasicAuth(user, password string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.user, r.password = user, password
}

// FailWith makes every request answer status (0 serves normally again).
func (r *Repo) FailWith(status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failWith = status
}

func (r *Repo) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	user, password, fail := r.user, r.password, r.failWith
	r.mu.Unlock()
	if fail != 0 {
		http.Error(w, http.StatusText(fail), fail)
		return
	}
	if user != "" {
		u, p, ok := req.BasicAuth()
		if !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="charts"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	name := strings.TrimPrefix(req.URL.Path, "/")
	if name == "index.yaml" {
		r.mu.Lock()
		p := filepath.Join(r.dir, "index.yaml")
		err := r.index.WriteFile(p, 0o644)
		r.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		http.ServeFile(w, req, p)
		return
	}
	if strings.Contains(name, "/") || !strings.HasSuffix(name, ".tgz") {
		http.NotFound(w, req)
		return
	}
	http.ServeFile(w, req, filepath.Join(r.dir, name))
}

// Registry is an OCI registry holding Helm charts.
type Registry struct {
	counter
	srv *httptest.Server
}

// StartRegistry starts an empty in-memory OCI registry over HTTPS; Close stops it.
func StartRegistry() *Registry {
	r := &Registry{}
	r.srv = httptest.NewTLSServer(r.wrap(registry.New(registry.Logger(log.New(io.Discard, "", 0)))))
	return r
}

// NewRegistry is StartRegistry for the duration of a test.
func NewRegistry(tb testing.TB) *Registry {
	r := StartRegistry()
	tb.Cleanup(r.Close)
	return r
}

// Close stops the registry.
func (r *Registry) Close() { r.srv.Close() }

// Host is the registry's host:port.
func (r *Registry) Host() string { return strings.TrimPrefix(r.srv.URL, "https://") }

// PushChart pushes ch to `<host>/<repository>/<name>:<version>` with Helm's registry client,
// exactly as `helm push` does. host is the name the chart's users give the registry, which client
// routes here.
func (r *Registry) PushChart(client *http.Client, host, repository string, ch *chart.Chart) error {
	dir, err := os.MkdirTemp("", "helmrepo-push-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c, err := helmregistry.NewClient(
		helmregistry.ClientOptHTTPClient(client),
		helmregistry.ClientOptCredentialsFile(filepath.Join(dir, "config.json")),
	)
	if err != nil {
		return err
	}
	data, err := Package(ch)
	if err != nil {
		return err
	}
	ref := host + "/" + repository + "/" + ch.Name() + ":" + strings.ReplaceAll(ch.Metadata.Version, "+", "_")
	if _, err := c.Push(data, ref); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}

// Push is PushChart failing the test on errors.
func (r *Registry) Push(tb testing.TB, client *http.Client, host, repository string, ch *chart.Chart) {
	tb.Helper()
	if err := r.PushChart(client, host, repository, ch); err != nil {
		tb.Fatal(err)
	}
}

// Client returns an HTTP client that trusts the doubles' certificate and connects to routes
// (host name, or host:port -> the double's host:port) instead of resolving those names. Other
// names are dialled as usual.
func Client(routes map[string]string) *http.Client {
	pool := x509.NewCertPool()
	// Every httptest TLS server uses the same certificate; a throwaway server hands it out.
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	pool.AddCert(srv.Certificate())
	srv.Close()
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			if to, ok := routes[addr]; ok {
				addr = to
			} else if to, ok := routes[host]; ok {
				addr = to
			}
			return dialer.DialContext(ctx, network, addr)
		},
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}
