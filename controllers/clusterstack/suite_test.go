package clusterstack_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	bootstrapv1beta1 "sigs.k8s.io/cluster-api/api/bootstrap/kubeadm/v1beta1" //nolint:staticcheck // v1beta1 is what SCS stacks render; the tests serve its conversion
	bootstrapv1 "sigs.k8s.io/cluster-api/api/bootstrap/kubeadm/v1beta2"
	controlplanev1beta1 "sigs.k8s.io/cluster-api/api/controlplane/kubeadm/v1beta1" //nolint:staticcheck // v1beta1 is what SCS stacks render; the tests serve its conversion
	controlplanev1 "sigs.k8s.io/cluster-api/api/controlplane/kubeadm/v1beta2"
	clusterv1beta1 "sigs.k8s.io/cluster-api/api/core/v1beta1" //nolint:staticcheck // v1beta1 is what SCS stacks render; the tests serve its conversion
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	bootstrapconversion "sigs.k8s.io/cluster-api/bootstrap/kubeadm/webhooks/conversion"
	controlplaneconversion "sigs.k8s.io/cluster-api/controlplane/kubeadm/webhooks/conversion"
	coreconversion "sigs.k8s.io/cluster-api/core/webhooks/conversion"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/yaml"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/controllers/clusterstack"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// The package shares one API server, one manager running the reconcilers and webhooks, and one
// in-process OCI registry. Each test works in its own namespace and registry repository.
var (
	env      *envtest.Environment
	k8s      client.Client // uncached, for the tests' own reads and writes
	scheme   *runtime.Scheme
	registry *faultyRegistry
	// apiWrites counts the manager's non-read API requests, apiRequests all of them.
	apiWrites, apiRequests atomic.Int64
	// nsWrites counts the manager's non-read API requests per namespace (of the request path),
	// so that a test can count its own namespace's writes while other tests' objects live on.
	nsWrites sync.Map // namespace -> *atomic.Int64
)

const (
	// checkInterval is the operator-wide source check interval of the test manager: short, so
	// that autoSubscribe notices new releases within the tests' patience.
	checkInterval = time.Second
	timeout       = 90 * time.Second
	poll          = 100 * time.Millisecond
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// The operator's logs only with TEST_VERBOSE: the failure tests cause expected errors.
	logOut := io.Discard
	if os.Getenv("TEST_VERBOSE") != "" {
		logOut = os.Stderr
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(logOut), zap.UseDevMode(true), zap.StacktraceLevel(zapcore.DPanicLevel)))
	if err := startEnv(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = env.Stop() }()

	registry = &faultyRegistry{handler: fixtures.RegistryHandler(), broken: map[string]int{}}
	srv := httptest.NewServer(registry)
	defer srv.Close()
	registry.host = strings.TrimPrefix(srv.URL, "http://")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done, err := startManager(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	cancel()
	<-done
	return code
}

// startEnv starts the API server with every CRD, the operator's validating webhooks and Cluster
// API's conversion webhooks, all served by the manager's webhook server. Every CRD gets the
// Webhook conversion strategy (as Cluster API's own envtest does); only the multi-version Cluster
// API CRDs ever call it.
func startEnv() error {
	assets, err := testenv.AssetsDir()
	if err != nil {
		return err
	}
	capiDirs, err := testenv.ClusterAPICRDDirs()
	if err != nil {
		return err
	}
	providerCRDs, err := testenv.ProviderCRDs()
	if err != nil {
		return err
	}
	if scheme, err = testenv.NewScheme(); err != nil {
		return err
	}
	for _, add := range []func(*runtime.Scheme) error{
		clusterv1beta1.AddToScheme, bootstrapv1beta1.AddToScheme, bootstrapv1.AddToScheme,
		controlplanev1beta1.AddToScheme, controlplanev1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return err
		}
	}
	root := testenv.RepoRoot()
	webhooks, err := ownWebhooks(filepath.Join(root, "config", "webhook", "manifests.yaml"))
	if err != nil {
		return err
	}
	env = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     append([]string{filepath.Join(root, "config", "crd", "bases")}, capiDirs...),
		CRDs:                  providerCRDs,
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			ValidatingWebhooks:      []*admissionregistrationv1.ValidatingWebhookConfiguration{webhooks},
			IgnoreSchemeConvertible: true,
		},
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	env.ControlPlane.GetAPIServer().Configure().Set("watch-cache", "false")
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting the test API server: %w", err)
	}
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	return err
}

// ownWebhooks returns this package's validating webhooks from the generated manifests: the
// file also holds other packages' webhooks, which this package's manager does not serve.
func ownWebhooks(path string) (*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "clusterstack-validating"}}
	for _, doc := range strings.Split(string(data), "\n---") {
		var cfg admissionregistrationv1.ValidatingWebhookConfiguration
		if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil || cfg.Kind != "ValidatingWebhookConfiguration" {
			continue
		}
		for _, w := range cfg.Webhooks {
			if w.ClientConfig.Service != nil && w.ClientConfig.Service.Path != nil && strings.HasPrefix(*w.ClientConfig.Service.Path, "/validate-clusterstack-x-k8s-io-") {
				out.Webhooks = append(out.Webhooks, w)
			}
		}
	}
	if len(out.Webhooks) != 2 {
		return nil, fmt.Errorf("%s: found %d ClusterStack webhooks, want 2 (run make manifests)", path, len(out.Webhooks))
	}
	return out, nil
}

// startManager runs the operator's controllers and webhooks the way main.go does, plus Cluster
// API's conversion webhooks (in a real management cluster Cluster API serves them).
func startManager(ctx context.Context) (<-chan struct{}, error) {
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &countingTransport{next: rt} })
	wio := env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir,
		}),
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		// The namespace of TestForbiddenKindsApplyNothing belongs to the restricted manager that
		// test runs; this manager, an admin, must not apply its releases.
		Cache: cache.Options{DefaultFieldSelector: fields.OneTermNotEqualSelector("metadata.namespace", restrictedNamespace)},
	})
	if err != nil {
		return nil, err
	}
	releases, err := resolver.New(mgr.GetClient(), source.Config{}, filepath.Join(os.TempDir(), fmt.Sprintf("clusterstack-test-cache-%d", os.Getpid())),
		// No retries: the outage test wants the 503 reported, not retried away.
		resolver.WithHTTPClient(&http.Client{Timeout: 30 * time.Second}),
		// Local sources of the tests live in t.TempDir() directories.
		resolver.WithConfinement(nil, []string{os.TempDir()}))
	if err != nil {
		return nil, err
	}
	if err := clusterstack.Setup(mgr, clusterstack.Options{Releases: releases, ReleaseCheckInterval: checkInterval, Webhooks: true}); err != nil {
		return nil, err
	}
	if err := serveClusterAPIConversion(mgr); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	// Wait until the webhook server answers: the API server refuses requests it cannot send.
	deadline := time.Now().Add(time.Minute)
	for mgr.GetWebhookServer().StartedChecker()(nil) != nil {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the webhook server did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		return nil, fmt.Errorf("the manager's cache did not sync")
	}
	return done, nil
}

// serveClusterAPIConversion registers Cluster API's public converters for the kinds the fixture
// stacks render in v1beta1.
func serveClusterAPIConversion(mgr ctrl.Manager) error {
	getter := func(_ context.Context, gk schema.GroupKind) (string, error) {
		m, err := mgr.GetRESTMapper().RESTMapping(gk)
		if err != nil {
			return "", err
		}
		return m.GroupVersionKind.GroupVersion().String(), nil
	}
	coreconversion.SetAPIVersionGetter(getter)
	controlplaneconversion.SetAPIVersionGetter(getter)
	for _, reg := range []func() error{
		func() error {
			return ctrl.NewWebhookManagedBy(mgr, &clusterv1.ClusterClass{}).WithConverter(coreconversion.ClusterClass).Complete()
		},
		func() error {
			return ctrl.NewWebhookManagedBy(mgr, &clusterv1.Cluster{}).WithConverter(coreconversion.Cluster).Complete()
		},
		func() error {
			return ctrl.NewWebhookManagedBy(mgr, &bootstrapv1.KubeadmConfigTemplate{}).WithConverter(bootstrapconversion.KubeadmConfigTemplate).Complete()
		},
		func() error {
			return ctrl.NewWebhookManagedBy(mgr, &controlplanev1.KubeadmControlPlaneTemplate{}).WithConverter(controlplaneconversion.KubeadmControlPlaneTemplate).Complete()
		},
	} {
		if err := reg(); err != nil {
			return fmt.Errorf("serving Cluster API conversion: %w", err)
		}
	}
	return nil
}

// countingTransport counts the manager's requests that are not reads.
type countingTransport struct{ next http.RoundTripper }

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	apiRequests.Add(1)
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		apiWrites.Add(1)
		if ns := namespaceOfPath(req.URL.Path); ns != "" {
			n, _ := nsWrites.LoadOrStore(ns, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		}
	}
	return c.next.RoundTrip(req)
}

// namespaceOfPath returns the namespace of an API request path (".../namespaces/<ns>/..."), or
// "" for a cluster-scoped request.
func namespaceOfPath(p string) string {
	_, rest, ok := strings.Cut(p, "/namespaces/")
	if !ok {
		return ""
	}
	ns, _, _ := strings.Cut(rest, "/")
	return ns
}

// writesIn returns the manager's writes so far to objects of namespace ns.
func writesIn(ns string) int64 {
	n, ok := nsWrites.Load(ns)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

// faultyRegistry is the in-process OCI registry with per-repository outages.
type faultyRegistry struct {
	handler http.Handler
	host    string

	mu     sync.Mutex
	broken map[string]int // repository -> HTTP status to answer with
}

func (f *faultyRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	for repo, status := range f.broken {
		if strings.HasPrefix(r.URL.Path, "/v2/"+repo+"/") {
			f.mu.Unlock()
			http.Error(w, "registry unavailable", status)
			return
		}
	}
	f.mu.Unlock()
	f.handler.ServeHTTP(w, r)
}

func (f *faultyRegistry) setBroken(repo string, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if status == 0 {
		delete(f.broken, repo)
		return
	}
	f.broken[repo] = status
}

// repoFor returns a registry repository of the test's own.
func repoFor(t testing.TB) string {
	n := strings.ToLower(t.Name())
	var b strings.Builder
	for _, r := range n {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	// The counter gives a second run of the same test (go test -count=2) an empty repository,
	// not the releases the first run pushed.
	return fmt.Sprintf("stacks/%s%d", b.String(), repoCounter.Add(1))
}

var repoCounter atomic.Int64

// publish builds a fixture release and pushes it to repo.
func publish(t testing.TB, repo string, opts fixtures.Options) {
	t.Helper()
	dir, err := fixtures.Build(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	publishDir(t, repo, dir, opts.ReleaseName())
}

func publishDir(t testing.TB, repo, dir, tag string) {
	t.Helper()
	if _, err := fixtures.Push(context.Background(), dir, registry.host+"/"+repo, tag, true); err != nil {
		t.Fatal(err)
	}
}

func newNamespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "cs-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// newClusterStack creates a ClusterStack of openstack/scs/1.32 reading repo, with noProvider and
// without autoSubscribe unless mutate says otherwise.
func newClusterStack(t testing.TB, ns, repo string, mutate func(*clusterstackv1alpha1.ClusterStack)) *clusterstackv1alpha1.ClusterStack {
	t.Helper()
	cs := &clusterstackv1alpha1.ClusterStack{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "scs"},
		Spec: clusterstackv1alpha1.ClusterStackSpec{
			Provider: "openstack", Name: "scs", KubernetesVersion: "1.32", Channel: "stable",
			NoProvider: true,
			Source: &clusterstackv1alpha1.ReleaseSource{OCI: &clusterstackv1alpha1.OCISource{
				Registry: registry.host, Repository: repo, Insecure: true,
			}},
		},
	}
	if mutate != nil {
		mutate(cs)
	}
	if err := k8s.Create(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

// newCluster creates a v1beta2 Cluster using the ClusterClass className. No Cluster API
// controller runs: the object only has to exist.
func newCluster(t testing.TB, ns, clusterName, className string) *clusterv1.Cluster {
	t.Helper()
	cl := &clusterv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: clusterName},
		Spec: clusterv1.ClusterSpec{Topology: clusterv1.Topology{
			ClassRef: clusterv1.ClusterClassRef{Name: className},
			Version:  "v1.32.5",
		}},
	}
	if err := k8s.Create(context.Background(), cl); err != nil {
		t.Fatal(err)
	}
	return cl
}

func getCS(g Gomega, ns string) *clusterstackv1alpha1.ClusterStack {
	cs := &clusterstackv1alpha1.ClusterStack{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "scs"}, cs)).To(Succeed())
	return cs
}

func getCSR(g Gomega, ns, name string) *clusterstackv1alpha1.ClusterStackRelease {
	csr := &clusterstackv1alpha1.ClusterStackRelease{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, csr)).To(Succeed())
	return csr
}

// releaseNames lists the ClusterStackReleases of ns.
func releaseNames(g Gomega, ns string) []string {
	var list clusterstackv1alpha1.ClusterStackReleaseList
	g.Expect(k8s.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, r := range list.Items {
		out = append(out, r.Name)
	}
	return out
}

// classNames lists the ClusterClasses of ns.
func classNames(g Gomega, ns string) []string {
	var list clusterv1.ClusterClassList
	g.Expect(k8s.List(context.Background(), &list, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, c := range list.Items {
		out = append(out, c.Name)
	}
	return out
}

func condition(conds []metav1.Condition, t string) metav1.Condition {
	for _, c := range conds {
		if c.Type == t {
			return c
		}
	}
	return metav1.Condition{Type: t, Status: metav1.ConditionUnknown, Reason: "Absent"}
}

func nsName(ns string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: "scs"} }
