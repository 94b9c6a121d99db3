// Tests of the node image controllers run a real manager against a real API server (envtest)
// and the in-process OpenStack double.
package openstack

import (
	"context"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cluster-api/util/conditions"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/nodeimage"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// env is shared by every test of the package: one API server per package, not per test.
var env *testenv.Environment

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctrl.SetLogger(testLogger())
	var err error
	env, err = testenv.Start(testenv.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	return m.Run()
}

const imagePath = "/images/ubuntu-capi-image.qcow2"

// fixture is one test's world: a namespace, an OpenStack double, a web server with image files
// and a credentials Secret.
type fixture struct {
	t  testing.TB
	ns string
	// more are further namespaces the manager reconciles.
	more  []string
	cloud *openstackdouble.Server
	files *httptest.Server
	data  []byte
	gets  atomic.Int32
	// stall makes the file server send half of each file and then nothing, until the client
	// gives up.
	stall  atomic.Bool
	secret string
	// redirect sends every image download (by Glance or by the operator) to files, so that
	// URLs from fixture releases (images.invalid) work.
	redirect *http.Client
}

func newFixture(t testing.TB, opts ...openstackdouble.Option) *fixture {
	t.Helper()
	f := &fixture{t: t, data: make([]byte, 256<<10)}
	_, _ = rand.Read(f.data)
	serve := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.gets.Add(1)
		if f.stall.Load() {
			_, _ = w.Write(f.data[:len(f.data)/2])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		_, _ = w.Write(f.data)
	})
	f.files = httptest.NewServer(serve)
	t.Cleanup(f.files.Close)
	tlsFiles := httptest.NewTLSServer(serve)
	t.Cleanup(tlsFiles.Close)
	plain, secure := f.files.Listener.Addr().String(), tlsFiles.Listener.Addr().String()
	f.redirect = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			target := plain
			if strings.HasSuffix(addr, ":443") {
				target = secure
			}
			return (&net.Dialer{}).DialContext(ctx, network, target)
		},
		// Test only: the https URLs of fixture releases land on the test TLS server.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // test server with a throwaway certificate
	}}
	var err error
	f.cloud, err = openstackdouble.New(append([]openstackdouble.Option{openstackdouble.WithImportHTTPClient(f.redirect)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.cloud.Close)

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "osimg-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	f.ns = ns.Name
	f.secret = f.addSecret("openstack", openstackdouble.CloudsYAMLOptions{})
	return f
}

func (f *fixture) addSecret(name string, o openstackdouble.CloudsYAMLOptions) string {
	return f.addSecretIn(f.ns, name, o)
}

func (f *fixture) addSecretIn(ns, name string, o openstackdouble.CloudsYAMLOptions) string {
	f.t.Helper()
	content, cloud := f.cloud.CloudsYAML(o)
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		StringData: map[string]string{scope.CloudsYAMLKey: content, scope.CloudNameKey: cloud}}
	if err := env.Client.Create(context.Background(), s); err != nil {
		f.t.Fatal(err)
	}
	return name
}

func (f *fixture) url(path string) string { return "http://images.example" + path }

func (f *fixture) sha512() string {
	sum := sha512.Sum512(f.data)
	return hex.EncodeToString(sum[:])
}

// testOptions are quick transfers and retries for tests.
func (f *fixture) options(releases ReleaseFiles) Options {
	return Options{
		Releases:             releases,
		HTTPClient:           f.redirect,
		InUseRecheckInterval: 200 * time.Millisecond,
		NodeImage: nodeimage.Options{
			// The fixtures' image hosts do not resolve; f.redirect sends them to the file server.
			Egress:        &egress.Policy{AllowHosts: []string{"images.example", "images.invalid"}},
			RetryBackoff:  100 * time.Millisecond,
			PollInterval:  100 * time.Millisecond,
			ImportTimeout: 5 * time.Second,
		},
	}
}

// startManager runs the controllers in a fresh manager restricted to the test's namespace
// until the returned function is called (or the test ends).
func (f *fixture) startManager(opts Options) (stop func()) {
	f.t.Helper()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: f.cacheNamespaces()},
		Client:                 client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	if opts.Releases == nil {
		opts.Releases = dirReleases{}
	}
	if err := Setup(mgr, opts); err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			f.t.Error(err)
		}
	}()
	var once atomic.Bool
	stop = func() {
		if once.CompareAndSwap(false, true) {
			cancel()
			<-done
		}
	}
	f.t.Cleanup(stop)
	return stop
}

func (f *fixture) cacheNamespaces() map[string]cache.Config {
	m := map[string]cache.Config{f.ns: {}}
	for _, ns := range f.more {
		m[ns] = cache.Config{}
	}
	return m
}

// newNamespace creates another namespace the manager (started afterwards) reconciles.
func (f *fixture) newNamespace() string {
	f.t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "osimg-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		f.t.Fatal(err)
	}
	f.more = append(f.more, ns.Name)
	return ns.Name
}

func (f *fixture) nodeImage(name string, mutate func(*infrav1.OpenStackNodeImageRelease)) {
	f.t.Helper()
	nir := &infrav1.OpenStackNodeImageRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
		Spec: infrav1.OpenStackNodeImageReleaseSpec{
			IdentityRef: &infrav1.OpenStackIdentityReference{Kind: "Secret", Name: f.secret},
			Image: &infrav1.NodeImage{
				URL: f.url(imagePath),
				CreateOpts: &infrav1.ImageCreateOpts{
					Name: "ubuntu-capi-image-" + name, DiskFormat: "qcow2", ContainerFormat: "bare",
					Visibility: ptr.To("private"),
				},
			},
		},
	}
	if mutate != nil {
		mutate(nir)
	}
	if err := env.Client.Create(context.Background(), nir); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) get(name string) *infrav1.OpenStackNodeImageRelease {
	nir := &infrav1.OpenStackNodeImageRelease{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, nir); err != nil {
		f.t.Fatal(err)
	}
	return nir
}

// waitCondition waits until the object's condition has the status and reason and returns it.
func (f *fixture) waitCondition(g Gomega, name, condType string, status metav1.ConditionStatus, reason string) *infrav1.OpenStackNodeImageRelease {
	var nir *infrav1.OpenStackNodeImageRelease
	g.Eventually(func(g Gomega) {
		nir = &infrav1.OpenStackNodeImageRelease{}
		g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: f.ns, Name: name}, nir)).To(Succeed())
		c := conditions.Get(nir, condType)
		g.Expect(c).NotTo(BeNil(), "condition %s", condType)
		g.Expect(c.Status).To(Equal(status), "condition %s: %s", condType, c.Message)
		if reason != "" {
			g.Expect(c.Reason).To(Equal(reason), "condition %s: %s", condType, c.Message)
		}
		g.Expect(nir.Status.ObservedGeneration).To(Equal(nir.Generation))
	}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	return nir
}

func (f *fixture) waitReady(g Gomega, name string) *infrav1.OpenStackNodeImageRelease {
	return f.waitCondition(g, name, csv1alpha1.ReadyCondition, metav1.ConditionTrue, csv1alpha1.ReadyReason)
}

// dirReleases serves fixture releases from a directory with release.Load, optionally changing
// the loaded release (e.g. pointing at another node-images.yaml) like a store would serve a
// different release.
type dirReleases struct {
	dir    string
	adjust map[string]func(*release.Release)
}

func (d dirReleases) ReleaseFor(_ context.Context, _ string, n name.Release) (*release.Release, error) {
	releaseName := n.String()
	rel, err := release.Load(filepath.Join(d.dir, releaseName), n, release.Options{})
	if err != nil {
		return nil, err
	}
	if fn := d.adjust[releaseName]; fn != nil {
		fn(rel)
	}
	return rel, nil
}
