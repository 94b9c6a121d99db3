package clusteraddon

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	runtimecatalog "sigs.k8s.io/cluster-api/api/runtime/catalog"
	runtimehooksv1 "sigs.k8s.io/cluster-api/api/runtime/hooks/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/yaml"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/hooks"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/workloadcluster"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
	"github.com/seed-a720dd5e/clusterstack-operator/test/helmrepo"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// Two API servers: mgmt holds Clusters and ClusterAddons, workload is where addons go.
var (
	mgmt, workload *testenv.Environment
	releases       = &fixtureReleases{dirs: map[string]string{}}
	hooksPort      int
	hooksClient    *http.Client
	certDir        string
	addonCacheDir  string
	workloadWrites = &writeCounter{}
	// mgmtWrites counts the test manager's write requests to the management API server.
	mgmtWrites = &writeCounter{}

	// chartRepo and chartRegistry serve the dependencies of the scs2-shaped fixtures; chartClient
	// routes the fixtures' repository host names to them.
	chartRepo     *helmrepo.Repo
	chartRegistry *helmrepo.Registry
	chartDown     *helmrepo.Repo
	chartClient   *http.Client

	mgrMu     sync.Mutex
	mgrCancel context.CancelFunc
	mgrDone   chan error
)

// Fixture releases of the tests, all of stack openstack-scs-1-32.
var fixtureOptions = []fixtures.Options{
	{}, // v1: config convention
	{StackVersion: "v2", Source: "openstack-scs-v2", KubernetesVersion: "v1.32.8"}, // upgrade with a hook
	{StackVersion: "v3", Source: "openstack-scs-v2"},                               // same Kubernetes version as v1
	{StackVersion: "v4", Convention: release.AddonConventionValues},                // old convention
	{StackVersion: "v5", Source: "openstack-scs-broken"},                           // a chart that fails
	{StackVersion: "v6", Source: "openstack-scs-badconfig"},                        // a clusteraddon.yaml that does not compile
	{StackVersion: "v7", Source: "openstack-scs-bench"},                            // addons in a namespace per Cluster (benchmark)
	{StackVersion: "v8", Source: "openstack-scs2"},                                 // scs2-shaped: Chart.yaml dependencies, no charts/
	{StackVersion: "v9", Source: "openstack-scs2"},                                 // a second release sharing those dependencies
	{StackVersion: "v10", Source: "openstack-scs2-nodep"},                          // a dependency with no matching version
	{StackVersion: "v11", Source: "openstack-scs2-tampered"},                       // a dependency whose archive does not match its digest
	{StackVersion: "v12", Source: "openstack-scs2-empty"},                          // charts that render nothing
	{StackVersion: "v13", Source: "openstack-scs2-unavailable"},                    // a dependency whose repository does not answer
}

// fixtureReleases serves fixture releases the way the resolver does: verified by
// release.Load, from a directory per release.
type fixtureReleases struct {
	mu   sync.Mutex
	dirs map[string]string
	// asked records the namespaces each release was asked for in.
	asked map[string]map[string]bool
}

func (f *fixtureReleases) ReleaseFor(_ context.Context, namespace string, n name.Release) (*release.Release, error) {
	f.mu.Lock()
	dir, ok := f.dirs[n.String()]
	if f.asked == nil {
		f.asked = map[string]map[string]bool{}
	}
	if f.asked[n.String()] == nil {
		f.asked[n.String()] = map[string]bool{}
	}
	f.asked[n.String()][namespace] = true
	f.mu.Unlock()
	if !ok {
		// As the resolver answers for a release no ClusterStack provides.
		return nil, fmt.Errorf("release %s: %w", n, resolver.ErrNoClusterStack)
	}
	return release.Load(dir, n, release.Options{})
}

// askedIn reports whether release n was asked for in namespace.
func (f *fixtureReleases) askedIn(n, namespace string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked[n][namespace]
}

// writeCounter counts write requests to an API server, and every request per workload cluster.
type writeCounter struct {
	mu     sync.Mutex
	writes int
	// clusters counts the requests of each workload cluster's client (wrap).
	clusters map[types.NamespacedName]requestCount
}

// requestCount is what one workload cluster's client sent.
type requestCount struct {
	reads, writes int
	// reviews are the SelfSubjectAccessReviews, not counted in writes.
	reviews int
	// lists are the reads with a label selector, objectReads the reads of one object (neither a
	// list, nor /version, nor discovery).
	lists, objectReads int
}

func (c requestCount) total() int { return c.reads + c.writes + c.reviews }

func (w *writeCounter) Count() int { w.mu.Lock(); defer w.mu.Unlock(); return w.writes }

// Of returns what the client of cluster sent so far.
func (w *writeCounter) Of(cluster types.NamespacedName) requestCount {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.clusters[cluster]
}

func (w *writeCounter) wrap(cluster types.NamespacedName, cfg *rest.Config) {
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			w.mu.Lock()
			if w.clusters == nil {
				w.clusters = map[types.NamespacedName]requestCount{}
			}
			c := w.clusters[cluster]
			switch {
			case r.Method == http.MethodGet || r.Method == http.MethodHead:
				c.reads++
				switch parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/"); {
				case r.URL.Query().Get("labelSelector") != "":
					c.lists++
				case r.URL.Path == "/version", parts[0] == "api" && len(parts) <= 2, parts[0] == "apis" && len(parts) <= 3:
				default:
					c.objectReads++
				}
			case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/selfsubjectaccessreviews"):
				c.reviews++
				w.writes++
			default:
				c.writes++
				w.writes++
			}
			w.clusters[cluster] = c
			w.mu.Unlock()
			return rt.RoundTrip(r)
		})
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestMain(m *testing.M) {
	testenv.Main(m, func(s *testenv.Suite) (err error) {
		webhooks, err := clusterWebhooks(filepath.Join(testenv.RepoRoot(), "config", "webhook", "manifests.yaml"))
		if err != nil {
			return err
		}
		if mgmt, workload, err = s.StartWithWorkload(testenv.Options{WebhookInstallOptions: webhooks}); err != nil {
			return err
		}
		tmp, err := os.MkdirTemp("", "clusteraddon-test-")
		if err != nil {
			return err
		}
		s.Cleanup(func() { _ = os.RemoveAll(tmp) })
		for _, o := range fixtureOptions {
			dir, err := fixtures.Build(filepath.Join(tmp, "releases"), o)
			if err != nil {
				return err
			}
			releases.dirs[o.ReleaseName()] = dir
		}
		addonCacheDir = filepath.Join(tmp, "addons")
		if err := startChartDoubles(s); err != nil {
			return err
		}
		certDir = filepath.Join(tmp, "certs")
		pool, err := writeServingCert(certDir)
		if err != nil {
			return err
		}
		hooksClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		if hooksPort, err = freePort(); err != nil {
			return err
		}
		if err := startManager(); err != nil {
			return err
		}
		s.Cleanup(stopManager)
		return nil
	})
}

// startManager starts a manager running the controllers and the hooks server, as main.go does.
func startManager() error {
	mgrMu.Lock()
	defer mgrMu.Unlock()
	wio := mgmt.WebhookInstallOptions()
	cfg := rest.CopyConfig(mgmt.Config)
	mgmtWrites.wrap(types.NamespacedName{}, cfg)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 mgmt.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir,
		}),
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		// The restart test starts a second manager in the same process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return err
	}
	if err := Setup(mgr, Options{
		Releases:              releases,
		AddonCacheDir:         addonCacheDir,
		Webhooks:              true,
		HooksPort:             hooksPort,
		HooksCertDir:          certDir,
		ClusterRetryInterval:  time.Second,
		ConditionPollInterval: time.Second,
		ReleaseRetryInterval:  time.Second,
		ApplyRetryInterval:    time.Second,
		DriftCheckInterval:    2 * time.Second,
		HookRetryAfter:        time.Second,
		WorkloadConfigHook:    workloadWrites.wrap,
		ChartHTTPClient:       chartClient,
	}); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	mgrCancel, mgrDone = cancel, done
	// The API server refuses Cluster writes in webhook namespaces until the webhook server answers.
	deadline := time.Now().Add(time.Minute)
	for mgr.GetWebhookServer().StartedChecker()(nil) != nil {
		select {
		case err := <-done:
			return fmt.Errorf("the manager stopped before its webhook server started: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			return errors.New("the webhook server did not start within a minute")
		}
		time.Sleep(50 * time.Millisecond) // polling a readiness check, not waiting for a condition of the tests
	}
	return nil
}

// webhookNamespaceLabel marks the namespaces in which the test API server calls the Cluster
// webhooks. Only the webhook tests label their namespaces: the other tests create Clusters
// without ClusterStackReleases, which the validating webhook rightly refuses.
const webhookNamespaceLabel = "clusteraddon-test/webhooks"

// clusterWebhooks returns this package's Cluster webhooks from the generated manifests, limited
// to namespaces with webhookNamespaceLabel. The file also holds other packages' webhooks, which
// this package's manager does not serve.
func clusterWebhooks(path string) (envtest.WebhookInstallOptions, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return envtest.WebhookInstallOptions{}, err
	}
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{webhookNamespaceLabel: "true"}}
	ours := func(cc admissionregistrationv1.WebhookClientConfig, prefix string) bool {
		return cc.Service != nil && cc.Service.Path != nil && strings.HasPrefix(*cc.Service.Path, prefix)
	}
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "clusteraddon-mutating"}}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "clusteraddon-validating"}}
	for _, doc := range strings.Split(string(data), "\n---") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return envtest.WebhookInstallOptions{}, fmt.Errorf("%s: %w", path, err)
		}
		switch meta.Kind {
		case "MutatingWebhookConfiguration":
			var cfg admissionregistrationv1.MutatingWebhookConfiguration
			if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
				return envtest.WebhookInstallOptions{}, fmt.Errorf("%s: %w", path, err)
			}
			for _, w := range cfg.Webhooks {
				if ours(w.ClientConfig, "/mutate-cluster-x-k8s-io-") {
					w.NamespaceSelector = selector
					mutating.Webhooks = append(mutating.Webhooks, w)
				}
			}
		case "ValidatingWebhookConfiguration":
			var cfg admissionregistrationv1.ValidatingWebhookConfiguration
			if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
				return envtest.WebhookInstallOptions{}, fmt.Errorf("%s: %w", path, err)
			}
			for _, w := range cfg.Webhooks {
				if ours(w.ClientConfig, "/validate-cluster-x-k8s-io-") {
					w.NamespaceSelector = selector
					validating.Webhooks = append(validating.Webhooks, w)
				}
			}
		}
	}
	if len(mutating.Webhooks) != 1 || len(validating.Webhooks) != 1 {
		return envtest.WebhookInstallOptions{}, fmt.Errorf("%s: found %d mutating and %d validating Cluster webhooks, want 1 each (run make manifests)",
			path, len(mutating.Webhooks), len(validating.Webhooks))
	}
	return envtest.WebhookInstallOptions{
		MutatingWebhooks:   []*admissionregistrationv1.MutatingWebhookConfiguration{mutating},
		ValidatingWebhooks: []*admissionregistrationv1.ValidatingWebhookConfiguration{validating},
	}, nil
}

func stopManager() {
	mgrMu.Lock()
	defer mgrMu.Unlock()
	if mgrCancel != nil {
		mgrCancel()
		if err := <-mgrDone; err != nil {
			fmt.Fprintln(os.Stderr, "stopping the manager:", err)
		}
		mgrCancel = nil
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeServingCert writes a self-signed certificate for 127.0.0.1 as tls.crt/tls.key.
func writeServingCert(dir string) (*x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "clusterstack-operator-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return pool, nil
}

// --- helpers ---

// eventuallyWorkloadData waits until the workload ConfigMap ns/name has key=value. Eventually,
// because a reconcile of the previous test's ClusterAddon that was in flight when it was deleted
// may still have written the shared workload cluster after the reset; the drift check (every 2 s
// here) puts the current ClusterAddon's content back.
func eventuallyWorkloadData(t testing.TB, ns, name, key, value string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		g.Expect(workloadConfigMap(g, ns, name).Data).To(HaveKeyWithValue(key, value))
	}).WithTimeout(timeout).Should(Succeed())
}

func newNamespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "addon-"}}
	if err := mgmt.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// initialKubernetesVersion is the Kubernetes version every test Cluster is created with (that of
// fixture release v1); upgrades start from it.
const initialKubernetesVersion = "v1.32.5"

func className(version string) string { return "openstack-scs-1-32-" + version }

// createCluster creates a Cluster of a fixture class, optionally with an initialized control
// plane, and (with kubeconfig) the kubeconfig Secret pointing at the workload API server.
func createCluster(t testing.TB, ns, name, version string, initialized, kubeconfig bool) *clusterv1.Cluster {
	t.Helper()
	ctx := context.Background()
	c := &clusterv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: clusterv1.ClusterSpec{Topology: clusterv1.Topology{
			ClassRef: clusterv1.ClusterClassRef{Name: className(version)},
			Version:  initialKubernetesVersion,
		}},
	}
	if err := mgmt.Client.Create(ctx, c); err != nil {
		t.Fatalf("creating Cluster: %v", err)
	}
	if kubeconfig {
		createKubeconfig(t, ns, name, workload.Config)
	}
	if initialized {
		setInitialized(t, c)
	}
	t.Cleanup(func() { deleteCluster(t, c) })
	return c
}

// deleteCluster deletes c and its ClusterAddon and waits until both are gone. envtest runs no
// garbage collector, so a ClusterAddon would outlive its Cluster, and a reconcile of it in flight
// could still apply into the shared workload cluster after the next test has reset it.
func deleteCluster(t testing.TB, c *clusterv1.Cluster) {
	t.Helper()
	ctx := context.Background()
	ca := &csv1alpha1.ClusterAddon{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: addon.ClusterAddonName(c.Name)}}
	for _, o := range []client.Object{c, ca} {
		if err := mgmt.Client.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting %T %s: %v", o, client.ObjectKeyFromObject(o), err)
			return
		}
	}
	NewWithT(t).Eventually(func(g Gomega) {
		for _, o := range []client.Object{c.DeepCopy(), ca.DeepCopy()} {
			err := mgmt.Client.Get(ctx, client.ObjectKeyFromObject(o), o)
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%T %s still there (%v)", o, client.ObjectKeyFromObject(o), err)
		}
	}).WithTimeout(timeout).Should(Succeed())
}

func setInitialized(t testing.TB, c *clusterv1.Cluster) {
	t.Helper()
	base := c.DeepCopy()
	c.Status.Initialization.ControlPlaneInitialized = ptr.To(true)
	if err := mgmt.Client.Status().Patch(context.Background(), c, client.MergeFrom(base)); err != nil {
		t.Fatalf("setting the control plane initialized: %v", err)
	}
}

func createKubeconfig(t testing.TB, ns, cluster string, cfg *rest.Config) {
	t.Helper()
	kc, err := workloadcluster.Kubeconfig(cfg, cluster)
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: workloadcluster.SecretName(cluster)}, Data: map[string][]byte{workloadcluster.KubeconfigKey: kc}}
	if err := mgmt.Client.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

// resetWorkload deletes what the fixture addons create in the shared workload cluster. Tests
// run one after another; a test's Cluster is deleted first, which leaves its ClusterAddon idle.
func resetWorkload(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	for _, o := range []client.Object{
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "fixture-cni"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "fixture-cni-defaults"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "upgrade-gate"}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "fixture-cni-system", Name: "fixture-cni-agent"}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "fixture-metrics-server"}},
	} {
		if err := workload.Client.Delete(ctx, o); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	if err := workload.Client.DeleteAllOf(ctx, &appsv1.Deployment{}, client.InNamespace("kube-system")); err != nil {
		t.Fatal(err)
	}
}

// isolate gives a test a clean workload cluster and deletes its Cluster before the next test.
func isolate(t *testing.T) {
	resetWorkload(t)
	t.Cleanup(func() { resetWorkload(t) })
}

func getAddon(g Gomega, ns, cluster string) *csv1alpha1.ClusterAddon {
	ca := &csv1alpha1.ClusterAddon{}
	g.Expect(mgmt.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: addon.ClusterAddonName(cluster)}, ca)).To(Succeed())
	return ca
}

func condition(ca *csv1alpha1.ClusterAddon, t string) metav1.Condition {
	for _, c := range ca.Status.Conditions {
		if c.Type == t {
			return c
		}
	}
	return metav1.Condition{}
}

// callHook calls a hook handler over HTTPS exactly as Cluster API does: a POST of the request
// type as JSON to the handler's path.
func callHookRaw(t testing.TB, hook runtimecatalog.Hook, req any, resp any) {
	t.Helper()
	cat, err := hooks.NewCatalog()
	if err != nil {
		t.Fatal(err)
	}
	gvh, err := cat.GroupVersionHook(hook)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", hooksPort, runtimecatalog.GVHToPath(gvh, hooks.HandlerName(hook)))
	var status int
	var data []byte
	// The server may still be starting (or restarting) right after a manager start.
	NewWithT(t).Eventually(func() error {
		status, data, err = post(url, body)
		return err
	}).WithTimeout(30 * time.Second).Should(Succeed())
	if status != http.StatusOK {
		t.Fatalf("hook %s: HTTP %d: %s", runtimecatalog.HookName(hook), status, data)
	}
	if err := json.Unmarshal(data, resp); err != nil {
		t.Fatal(err)
	}
}

// post sends a JSON body to the hooks server and returns the answer's status and body.
func post(url string, body []byte) (int, []byte, error) {
	r, err := hooksClient.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer r.Body.Close()
	data, err := io.ReadAll(r.Body)
	return r.StatusCode, data, err
}

// beforeClusterUpgrade calls the BeforeClusterUpgrade hook as Cluster API does once c names a new
// Kubernetes version: from the version every test Cluster starts with to c's.
func beforeClusterUpgrade(t testing.TB, c *clusterv1.Cluster) *runtimehooksv1.BeforeClusterUpgradeResponse {
	t.Helper()
	req := &runtimehooksv1.BeforeClusterUpgradeRequest{
		TypeMeta:              metav1.TypeMeta{APIVersion: runtimehooksv1.GroupVersion.String(), Kind: "BeforeClusterUpgradeRequest"},
		Cluster:               *c,
		FromKubernetesVersion: initialKubernetesVersion,
		ToKubernetesVersion:   c.Spec.Topology.Version,
	}
	resp := &runtimehooksv1.BeforeClusterUpgradeResponse{}
	callHookRaw(t, runtimehooksv1.BeforeClusterUpgrade, req, resp)
	return resp
}
