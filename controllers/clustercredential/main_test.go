// Tests of the cluster credential controllers run a real manager against a real API server
// (envtest) for the management cluster, a second one for the workload cluster, and the
// in-process OpenStack double. The workload Secrets are shared, so tests run one after another.
package clustercredential

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/appcred"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/workloadcluster"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

var (
	mgmt, workload *testenv.Environment
	// workloadWrites records every write the operator sends to the workload cluster.
	workloadWrites = &writeRecorder{}
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(s *testenv.Suite) (err error) {
		mgmt, workload, err = s.StartWithWorkload(testenv.Options{})
		return err
	})
}

// writeRecorder keeps the bodies of the operator's writes to workload clusters.
type writeRecorder struct {
	mu     sync.Mutex
	bodies []string
}

func (w *writeRecorder) wrap(_ types.NamespacedName, cfg *rest.Config) {
	cfg.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method != http.MethodGet && r.Body != nil {
				b, err := io.ReadAll(r.Body)
				if err != nil {
					return nil, err
				}
				_ = r.Body.Close()
				r.Body = io.NopCloser(bytes.NewReader(b))
				w.mu.Lock()
				w.bodies = append(w.bodies, r.Method+" "+r.URL.Path+"\n"+string(b))
				w.mu.Unlock()
			}
			return next.RoundTrip(r)
		})
	})
}

func (w *writeRecorder) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.bodies...)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// keystoneProxy stands between everyone and the double (the double advertises the proxy's URL):
// it counts the application-credential calls and can end the manager right after the n-th one
// took effect in Keystone, before its answer arrives, as a kill would.
type keystoneProxy struct {
	target string
	mu     sync.Mutex
	ops    map[string]int
	calls  int
	// killAfter > 0 cancels kill once that many calls went through and refuses every later
	// application-credential call (503) until disarmed.
	killAfter int
	kill      context.CancelFunc
	killed    bool
}

func (p *keystoneProxy) arm(killAfter int, kill context.CancelFunc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.killAfter, p.kill, p.killed, p.calls = killAfter, kill, false, 0
}

func (p *keystoneProxy) wasKilled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killed
}

func (p *keystoneProxy) opCounts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for op, n := range p.ops {
		out[op] = n
	}
	return out
}

func (p *keystoneProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	appCred := strings.Contains(r.URL.Path, "/application_credentials")
	p.mu.Lock()
	if appCred && p.killed {
		p.mu.Unlock()
		http.Error(w, "killed", http.StatusServiceUnavailable)
		return
	}
	p.mu.Unlock()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	respBody, _ := io.ReadAll(resp.Body)
	if appCred {
		op := map[string]string{http.MethodGet: "list", http.MethodPost: "create", http.MethodDelete: "delete"}[r.Method]
		p.mu.Lock()
		if p.ops == nil {
			p.ops = map[string]int{}
		}
		p.ops[op]++
		p.calls++
		kill := p.killAfter > 0 && p.calls == p.killAfter
		if kill {
			p.killed = true
			p.kill()
		}
		p.mu.Unlock()
		if kill {
			http.Error(w, "killed", http.StatusServiceUnavailable)
			return
		}
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(respBody)
}

// fixture is one test's world: a namespace, an OpenStack double, a ClusterStack and the
// identityRef Secret with the project user's password.
type fixture struct {
	t     *testing.T
	ns    string
	cloud *openstackdouble.Server
	proxy *keystoneProxy
	stack *csv1alpha1.ClusterStack
}

func newFixture(t *testing.T, settings csv1alpha1.ApplicationCredentials) *fixture {
	t.Helper()
	ctx := t.Context()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxy := &keystoneProxy{target: "http://" + l.Addr().String()}
	proxySrv := httptest.NewServer(proxy)
	t.Cleanup(proxySrv.Close)
	cloud, err := openstackdouble.New(openstackdouble.WithListener(l), openstackdouble.WithPublicURL(proxySrv.URL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cloud.Close)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "appcred-"}}
	if err := mgmt.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ns: ns.Name, cloud: cloud, proxy: proxy}
	content, name := cloud.CloudsYAML(openstackdouble.CloudsYAMLOptions{})
	if err := mgmt.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "openstack"},
		StringData: map[string]string{scope.CloudsYAMLKey: content, scope.CloudNameKey: name}}); err != nil {
		t.Fatal(err)
	}
	f.stack = &csv1alpha1.ClusterStack{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "openstack-scs-1-32"},
		Spec: csv1alpha1.ClusterStackSpec{Provider: "openstack", Name: "scs", KubernetesVersion: "1.32", Versions: []string{"v1"},
			NoProvider: true, ApplicationCredentials: &settings},
	}
	if err := mgmt.Client.Create(ctx, f.stack); err != nil {
		t.Fatal(err)
	}
	clearWorkload(t)
	return f
}

// clearWorkload removes the workload Secrets a previous test wrote.
func clearWorkload(t *testing.T) {
	for _, n := range []string{CloudsYAMLSecret, CloudConfigSecret} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: WorkloadNamespace, Name: n}}
		if err := workload.Client.Delete(context.Background(), s); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
}

// createCluster creates a Cluster of the stack's class with its OpenStackCluster and, with
// kubeconfig, the kubeconfig Secret pointing at the workload API server.
func (f *fixture) createCluster(name string, kubeconfig bool, annotations map[string]string) *clusterv1.Cluster {
	f.t.Helper()
	ctx := f.t.Context()
	osc := &unstructured.Unstructured{}
	osc.SetAPIVersion("infrastructure.cluster.x-k8s.io/v1beta1")
	osc.SetKind("OpenStackCluster")
	osc.SetNamespace(f.ns)
	osc.SetName(name)
	osc.Object["spec"] = map[string]any{"identityRef": map[string]any{"name": "openstack", "cloudName": "openstack", "type": "Secret"}}
	if err := mgmt.Client.Create(ctx, osc); err != nil {
		f.t.Fatal(err)
	}
	c := &clusterv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name, Annotations: annotations},
		Spec: clusterv1.ClusterSpec{
			Topology:          clusterv1.Topology{ClassRef: clusterv1.ClusterClassRef{Name: "openstack-scs-1-32-v1"}, Version: "v1.32.5"},
			InfrastructureRef: clusterv1.ContractVersionedObjectReference{APIGroup: "infrastructure.cluster.x-k8s.io", Kind: "OpenStackCluster", Name: name},
		},
	}
	if err := mgmt.Client.Create(ctx, c); err != nil {
		f.t.Fatal(err)
	}
	if kubeconfig {
		kc, err := workloadcluster.Kubeconfig(workload.Config, name)
		if err != nil {
			f.t.Fatal(err)
		}
		if err := mgmt.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: workloadcluster.SecretName(name)},
			Data: map[string][]byte{workloadcluster.KubeconfigKey: kc}}); err != nil {
			f.t.Fatal(err)
		}
	}
	return c
}

// startManager runs the controllers until the returned stop is called or the test ends; with
// killAfter > 0 the proxy ends it right after that many application-credential calls.
func (f *fixture) startManager(killAfter int) (stop func()) {
	f.t.Helper()
	mgr, err := ctrl.NewManager(mgmt.Config, ctrl.Options{
		Scheme:                 mgmt.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{f.ns: {}}},
		Client:                 client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		Controller:             ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	stacks, err := resolver.New(mgr.GetClient(), source.Config{}, f.t.TempDir())
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.proxy.arm(killAfter, cancel)
	if err := Setup(mgr, Options{Stacks: stacks, WorkloadConfigHook: workloadWrites.wrap, RetryInterval: 300 * time.Millisecond}); err != nil {
		f.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			f.t.Error(err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	f.t.Cleanup(stop)
	return stop
}

func (f *fixture) credential(name string) *infrav1.OpenStackClusterCredential {
	f.t.Helper()
	occ := &infrav1.OpenStackClusterCredential{}
	if err := mgmt.Client.Get(f.t.Context(), types.NamespacedName{Namespace: f.ns, Name: name}, occ); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		f.t.Fatal(err)
	}
	return occ
}

// waitFor polls the cluster's OpenStackClusterCredential until ok, or fails after timeout.
func (f *fixture) waitFor(name string, timeout time.Duration, what string, ok func(*infrav1.OpenStackClusterCredential) bool) *infrav1.OpenStackClusterCredential {
	f.t.Helper()
	occ, _ := f.waitUnless(name, timeout, what, ok, func() bool { return false })
	return occ
}

// waitUnless is waitFor that gives up early, reporting true, once abort says so.
func (f *fixture) waitUnless(name string, timeout time.Duration, what string, ok func(*infrav1.OpenStackClusterCredential) bool, abort func() bool) (*infrav1.OpenStackClusterCredential, bool) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		occ := f.credential(name)
		if ok(occ) {
			return occ, false
		}
		if abort() {
			return occ, true
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("waiting %s for %s; OpenStackClusterCredential: %+v", timeout, what, occ)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ready(occ *infrav1.OpenStackClusterCredential) bool {
	if occ == nil || occ.Status.Current == nil || occ.Status.WorkloadCredentialID != occ.Status.Current.ID {
		return false
	}
	for _, c := range occ.Status.Conditions {
		if c.Type == csv1alpha1.ReadyCondition {
			return c.Status == metav1.ConditionTrue && c.ObservedGeneration == occ.Generation
		}
	}
	return false
}

// ofCluster lists the double's application credentials of the Cluster.
func (f *fixture) ofCluster(c *clusterv1.Cluster) []openstackdouble.ApplicationCredentialInfo {
	var out []openstackdouble.ApplicationCredentialInfo
	for _, ac := range f.cloud.ApplicationCredentials() {
		if strings.HasPrefix(ac.Name, appcred.Prefix(c.UID)) {
			out = append(out, ac)
		}
	}
	return out
}

// workloadLogin reads both workload Secrets and logs in to the double with what each holds; it
// returns the credential ID of clouds-yaml.
func (f *fixture) workloadLogin(ctx context.Context) (string, error) {
	var cy, cc corev1.Secret
	if err := workload.Client.Get(ctx, types.NamespacedName{Namespace: WorkloadNamespace, Name: CloudsYAMLSecret}, &cy); err != nil {
		return "", fmt.Errorf("reading clouds-yaml: %w", err)
	}
	if err := workload.Client.Get(ctx, types.NamespacedName{Namespace: WorkloadNamespace, Name: CloudConfigSecret}, &cc); err != nil {
		return "", fmt.Errorf("reading cloud-config: %w", err)
	}
	creds, err := scope.ParseSecret(&cy)
	if err != nil {
		return "", err
	}
	id := creds.AuthOptions.ApplicationCredentialID
	if err := login(ctx, cy.Data[scope.CloudsYAMLKey]); err != nil {
		return id, fmt.Errorf("logging in with clouds-yaml (%s): %w", id, err)
	}
	iniID, iniSecret := iniValue(string(cc.Data[appcred.CloudConfKey]), "application-credential-id"), iniValue(string(cc.Data[appcred.CloudConfKey]), "application-credential-secret")
	content, _ := f.cloud.CloudsYAML(openstackdouble.CloudsYAMLOptions{ApplicationCredentialID: iniID, ApplicationCredentialSecret: iniSecret})
	if err := login(ctx, []byte(content)); err != nil {
		return id, fmt.Errorf("logging in with cloud-config's cloud.conf (%s): %w", iniID, err)
	}
	return id, nil
}

// login logs in with a clouds.yaml the way the operator does (a fresh factory: no cached token).
func login(ctx context.Context, cloudsYAML []byte) error {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "login", Name: "clouds"}, Data: map[string][]byte{scope.CloudsYAMLKey: cloudsYAML}}
	_, err := scope.NewFactory(fake.NewClientBuilder().WithObjects(s).Build()).ImageClient(ctx, "login", &infrav1.OpenStackIdentityReference{Name: "clouds"})
	return err
}

// iniValue reads a quoted key=value of cloud.conf.
func iniValue(conf, key string) string {
	for _, line := range strings.Split(conf, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// assertNoOperatorCredentials checks every write to the workload cluster: none carries the
// identityRef user's password or user name.
func assertNoOperatorCredentials(t *testing.T) {
	t.Helper()
	writes := workloadWrites.all()
	if len(writes) == 0 {
		t.Fatal("no writes to the workload cluster were recorded")
	}
	for _, w := range writes {
		if strings.Contains(w, openstackdouble.DefaultPassword) || strings.Contains(w, `"username"`) || strings.Contains(w, "password") {
			t.Errorf("a write to the workload cluster carries the operator's credentials:\n%s", w)
		}
	}
}
