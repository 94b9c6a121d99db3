// Tests of the cluster credential controllers run a real manager against a real API server
// (envtest) for the management cluster, a second one for the workload cluster, and the
// in-process OpenStack double. The workload Secrets are shared, so tests run one after another.
package clustercredential

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/applicationcredentials"
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
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/appcred"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
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
		type started struct {
			env *testenv.Environment
			err error
		}
		workloadStarted := make(chan started, 1)
		go func() {
			env, err := testenv.Start(testenv.Options{})
			workloadStarted <- started{env, err}
		}()
		mgmt, err = s.Start(testenv.Options{})
		w := <-workloadStarted
		if w.env != nil {
			s.Cleanup(func() {
				if err := w.env.Stop(); err != nil {
					fmt.Fprintln(os.Stderr, "stopping the workload API server:", err)
				}
			})
		}
		if err = errors.Join(err, w.err); err != nil {
			return err
		}
		workload = w.env
		return nil
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

// countingKeystone counts the operator's Keystone calls and can end the manager right after the
// n-th call, as a kill would: the call took effect in Keystone, the operator never learns it.
type countingKeystone struct {
	factory *scope.Factory
	calls   atomic.Int32
	// killAfter > 0 cancels kill after that many calls and fails every call from then on.
	killAfter int32
	kill      context.CancelFunc
	killed    atomic.Bool
	mu        sync.Mutex
	ops       map[string]int
}

func (k *countingKeystone) ApplicationCredentials(ctx context.Context, ns string, ref *infrav1.OpenStackIdentityReference) (*scope.ApplicationCredentials, error) {
	if k.killed.Load() {
		return nil, context.Canceled
	}
	ac, err := k.factory.ApplicationCredentials(ctx, ns, ref)
	if err != nil {
		return nil, err
	}
	return &scope.ApplicationCredentials{Client: &countingClient{ApplicationCredentialClient: ac.Client, k: k}, Cloud: ac.Cloud}, nil
}

func (k *countingKeystone) opCounts() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string]int{}
	for op, n := range k.ops {
		out[op] = n
	}
	return out
}

type countingClient struct {
	clients.ApplicationCredentialClient
	k *countingKeystone
}

// after records a call that reached Keystone and kills the manager when it is the one.
func (c *countingClient) after(op string, err error) error {
	if c.k.killed.Load() {
		return context.Canceled
	}
	c.k.mu.Lock()
	if c.k.ops == nil {
		c.k.ops = map[string]int{}
	}
	c.k.ops[op]++
	c.k.mu.Unlock()
	if n := c.k.calls.Add(1); c.k.killAfter > 0 && n == c.k.killAfter {
		c.k.killed.Store(true)
		c.k.kill()
		return context.Canceled
	}
	return err
}

func (c *countingClient) ListApplicationCredentials(ctx context.Context) ([]applicationcredentials.ApplicationCredential, error) {
	if c.k.killed.Load() {
		return nil, context.Canceled
	}
	l, err := c.ApplicationCredentialClient.ListApplicationCredentials(ctx)
	if err = c.after("list", err); err != nil {
		return nil, err
	}
	return l, nil
}

func (c *countingClient) CreateApplicationCredential(ctx context.Context, opts applicationcredentials.CreateOpts) (*applicationcredentials.ApplicationCredential, error) {
	if c.k.killed.Load() {
		return nil, context.Canceled
	}
	ac, err := c.ApplicationCredentialClient.CreateApplicationCredential(ctx, opts)
	if err = c.after("create", err); err != nil {
		return nil, err
	}
	return ac, nil
}

func (c *countingClient) DeleteApplicationCredential(ctx context.Context, id string) error {
	if c.k.killed.Load() {
		return context.Canceled
	}
	return c.after("delete", c.ApplicationCredentialClient.DeleteApplicationCredential(ctx, id))
}

// fixture is one test's world: a namespace, an OpenStack double, a ClusterStack and the
// identityRef Secret with the project user's password.
type fixture struct {
	t     *testing.T
	ns    string
	cloud *openstackdouble.Server
	stack *csv1alpha1.ClusterStack
}

func newFixture(t *testing.T, settings csv1alpha1.ApplicationCredentials) *fixture {
	t.Helper()
	ctx := t.Context()
	cloud, err := openstackdouble.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cloud.Close)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "appcred-"}}
	if err := mgmt.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ns: ns.Name, cloud: cloud}
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

// startManager runs the controllers until the returned stop is called or the test ends; ks may
// kill it (countingKeystone.killAfter).
func (f *fixture) startManager(ks *countingKeystone) (stop func()) {
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
	ks.kill = cancel
	if ks.factory == nil {
		ks.factory = scope.NewFactory(mgr.GetAPIReader())
	}
	if err := Setup(mgr, Options{Stacks: stacks, Keystone: ks, WorkloadConfigHook: workloadWrites.wrap, RetryInterval: 300 * time.Millisecond}); err != nil {
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
	if _, err := config.NewProviderClient(ctx, creds.AuthOptions, config.WithTLSConfig(creds.TLSConfig)); err != nil {
		return id, fmt.Errorf("logging in with clouds-yaml (%s): %w", id, err)
	}
	iniID, iniSecret := iniValue(string(cc.Data[appcred.CloudConfKey]), "application-credential-id"), iniValue(string(cc.Data[appcred.CloudConfKey]), "application-credential-secret")
	content, _ := f.cloud.CloudsYAML(openstackdouble.CloudsYAMLOptions{ApplicationCredentialID: iniID, ApplicationCredentialSecret: iniSecret})
	iniCreds, err := scope.ParseSecret(&corev1.Secret{Data: map[string][]byte{scope.CloudsYAMLKey: []byte(content)}})
	if err != nil {
		return id, err
	}
	if _, err := config.NewProviderClient(ctx, iniCreds.AuthOptions, config.WithTLSConfig(iniCreds.TLSConfig)); err != nil {
		return id, fmt.Errorf("logging in with cloud-config's cloud.conf (%s): %w", iniID, err)
	}
	return id, nil
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
