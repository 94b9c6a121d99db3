package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/workloadcluster"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

const (
	// repository is where the registry holds the releases, as in the public SCS registry.
	repository = "kaas/cluster-stacks"
	// fixtureSource is the chart source of every release: the bench stack's ClusterClass and an
	// addon whose objects go into a workload namespace per Cluster.
	fixtureSource = "openstack-scs-e2e"
	// stackName is the ClusterStack (and providerRef template) name in every namespace.
	stackName = "openstack-scs-1-32"
	// imageSize is the size of each node image file: several chunks of a streamed upload.
	imageSize = 4 << 20
	// credentialsSecret holds the clouds.yaml for the double in every namespace.
	credentialsSecret = "openstack-credentials"
)

// stackVersion is one published release of the stack openstack-scs-1-32.
type stackVersion struct {
	version    string
	kubernetes string
}

// published are the releases in the registry. Their node-images.yaml name the image of their
// Kubernetes version, so v2 and v3 share one image: 3 releases, 2 distinct images.
var published = []stackVersion{{"v1", "v1.32.5"}, {"v2", "v1.32.8"}, {"v3", "v1.32.8"}}

func releaseName(version string) string { return "openstack-scs-1-32-" + version }

func kubernetesOf(version string) string {
	for _, p := range published {
		if p.version == version {
			return p.kubernetes
		}
	}
	panic("unpublished version " + version)
}

func imageName(kubernetes string) string { return "ubuntu-capi-image-" + kubernetes }

// distinctImages is the number of distinct node images the given versions name.
func distinctImages(versions ...string) int {
	seen := map[string]bool{}
	for _, v := range versions {
		seen[imageName(kubernetesOf(v))] = true
	}
	return len(seen)
}

// scenario is one run of the manager binary against its own control plane, workload API
// server, registry, OpenStack double and image file server. Each benchmark starts a fresh one,
// so that its figures (peak RSS above all) are not those of an earlier benchmark's objects.
type scenario struct {
	tb   testing.TB
	dir  string
	mgmt *testenv.Environment
	// workloads are the workload API servers; Clusters are spread over them in turn
	// (nextWorkload), several per server, each with its own addon namespace.
	workloads    []*testenv.Environment
	nextWorkload atomic.Int64
	// c is a client of the management API server without client-side throttling, so that
	// creating hundreds of objects does not pace the measurement.
	c        client.Client
	workCs   []client.Client
	cloud    *openstackdouble.Server
	files    *httptest.Server
	fetches  atomic.Int64
	registry string
	mgr      *managerProcess
	// workers samples the memory of the manager's rendering workers (its child processes),
	// which its own RSS does not show.
	workers *memorySampler

	closeOnce sync.Once
	closers   []func()
}

// defaultWorkloadServers is how many workload API servers a scenario starts unless
// BENCH_E2E_WORKLOAD_SERVERS says otherwise: enough that the manager talks to several workload
// clusters (a connection, discovery and credentials each), few enough for a two-core machine.
const defaultWorkloadServers = 4

// scenarioOptions are the manager's settings a benchmark chooses.
type scenarioOptions struct {
	// driftInterval is the manager's --addon-drift-check-interval; zero keeps its default.
	driftInterval time.Duration
	// workloadServers is how many workload API servers to start: zero means
	// BENCH_E2E_WORKLOAD_SERVERS or defaultWorkloadServers, -1 none (no Clusters).
	workloadServers int
}

// newScenario starts everything and the manager. The scenario is closed when the benchmark ends,
// whatever happens; close closes it earlier.
func newScenario(tb testing.TB, opts scenarioOptions) *scenario {
	tb.Helper()
	bin := managerBinary(tb)
	dir, err := os.MkdirTemp("", "clusterstack-e2e-")
	if err != nil {
		tb.Fatal(err)
	}
	s := &scenario{tb: tb, dir: dir}
	s.closers = append(s.closers, func() { _ = os.RemoveAll(dir) })
	tb.Cleanup(s.close)

	servers := max(opts.workloadServers, 0)
	if opts.workloadServers == 0 {
		servers = intFromEnv(tb, "BENCH_E2E_WORKLOAD_SERVERS", defaultWorkloadServers)
	}
	envs := make([]*testenv.Environment, 1+servers)
	var mu sync.Mutex
	if err := inParallel(len(envs), func(i int) error {
		e, err := testenv.Start(testenv.Options{})
		if err != nil {
			return err
		}
		mu.Lock()
		s.closers = append(s.closers, func() { _ = e.Stop() })
		mu.Unlock()
		envs[i] = e
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	s.mgmt, s.workloads = envs[0], envs[1:]
	if s.c, err = unthrottledClient(s.mgmt); err != nil {
		tb.Fatal(err)
	}
	for _, w := range s.workloads {
		wc, err := unthrottledClient(w)
		if err != nil {
			tb.Fatal(err)
		}
		s.workCs = append(s.workCs, wc)
	}

	data := make([]byte, imageSize)
	for i := range data {
		data[i] = byte(i * 31 % 251)
	}
	s.files = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.fetches.Add(1)
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(data)
	}))
	s.closers = append(s.closers, s.files.Close)
	// Web-download off: the manager downloads each file and uploads it (PUT
	// /v2/images/{id}/file), the path every cloud supports; the upload counter then counts
	// the image bytes the operator sent to Glance.
	if s.cloud, err = openstackdouble.New(openstackdouble.WithWebDownload(false)); err != nil {
		tb.Fatal(err)
	}
	s.closers = append(s.closers, s.cloud.Close)

	s.registry = fixtures.StartRegistry(tb, nil)
	s.publish()

	kubeconfig, err := workloadcluster.Kubeconfig(s.mgmt.Config, "management")
	if err != nil {
		tb.Fatal(err)
	}
	// The API server delays a create within 2 s of its CRD becoming established, which a
	// deployed operator never meets: a ClusterStack created right after the start then waited
	// up to 2 s for its first OpenStackClusterStackRelease (two releases ready in 2.3 s instead
	// of 0.4 s, in about one run of three).
	s.waitCRDsSettled()
	s.mgr = startManager(tb, bin, managerConfig{
		dir:           filepath.Join(dir, "manager"),
		kubeconfig:    kubeconfig,
		mgmtHost:      hostOf(s.mgmt.Config),
		registry:      s.registry,
		repository:    repository,
		driftInterval: opts.driftInterval,
	})
	s.workers = startMemorySampler(s.mgr.cmd.Process.Pid, 100*time.Millisecond)
	// Stop the manager before the servers it talks to (closers run last to first).
	s.closers = append(s.closers, s.mgr.stop, s.workers.stop)
	return s
}

// close stops the manager and everything else; safe to call more than once.
func (s *scenario) close() {
	s.closeOnce.Do(func() {
		for i := len(s.closers) - 1; i >= 0; i-- {
			s.closers[i]()
		}
	})
}

func unthrottledClient(env *testenv.Environment) (client.Client, error) {
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = -1, -1
	cfg.RateLimiter = nil
	return client.New(cfg, client.Options{Scheme: env.Scheme})
}

// hostOf is the host label client-go's metrics give requests to cfg's API server.
func hostOf(cfg *rest.Config) string {
	h := strings.TrimPrefix(strings.TrimPrefix(cfg.Host, "https://"), "http://")
	return strings.TrimSuffix(h, "/")
}

// publish builds every release in published and pushes it to the registry.
func (s *scenario) publish() {
	ctx := context.Background()
	for _, p := range published {
		opts := fixtures.Options{StackVersion: p.version, KubernetesVersion: p.kubernetes, Source: fixtureSource}
		dir, err := fixtures.Build(filepath.Join(s.dir, "releases"), opts)
		if err != nil {
			s.tb.Fatal(err)
		}
		if err := addNodeImages(dir, p, s.files.URL+"/"+imageName(p.kubernetes)+".qcow2"); err != nil {
			s.tb.Fatal(err)
		}
		if _, err := fixtures.Push(ctx, dir, s.registry+"/"+repository, opts.ReleaseName(), true); err != nil {
			s.tb.Fatal(err)
		}
	}
}

// addNodeImages adds a node-images.yaml naming url to a built release, with the metadata and
// hashes.json entries fixtures.Build writes with Options.NodeImages. The fixtures' own
// node-images.yaml name https://images.invalid/..., which only an in-process download client
// can redirect; the manager binary uses the default one, so the file server's loopback URL
// goes into the release instead. Nothing else of the release changes.
func addNodeImages(dir string, p stackVersion, url string) error {
	name := imageName(p.kubernetes)
	nodeImages := fmt.Sprintf(`apiVersion: openstack.infrastructure.clusterstack.x-k8s.io/v1alpha1
openStackNodeImages:
  - url: %s
    createOpts:
      name: %s
      disk_format: qcow2
      container_format: bare
      visibility: private
`, url, name)
	if err := os.WriteFile(filepath.Join(dir, release.NodeImagesFile), []byte(nodeImages), 0o644); err != nil {
		return err
	}

	mdPath := filepath.Join(dir, release.MetadataFile)
	data, err := os.ReadFile(mdPath)
	if err != nil {
		return err
	}
	var md release.Metadata
	if err := yaml.UnmarshalStrict(data, &md); err != nil {
		return fmt.Errorf("parsing %s: %w", mdPath, err)
	}
	md.Versions.Components.NodeImage = p.version
	if data, err = yaml.Marshal(md); err != nil {
		return err
	}
	if err := os.WriteFile(mdPath, data, 0o644); err != nil {
		return err
	}

	hashesPath := filepath.Join(dir, release.HashesFile)
	if data, err = os.ReadFile(hashesPath); err != nil {
		return err
	}
	hashes := map[string]string{}
	if err := json.Unmarshal(data, &hashes); err != nil {
		return fmt.Errorf("parsing %s: %w", hashesPath, err)
	}
	sum := sha256.Sum256([]byte(nodeImages))
	hashes["nodeImageDir"] = hex.EncodeToString(sum[:])
	if data, err = json.Marshal(hashes); err != nil {
		return err
	}
	return os.WriteFile(hashesPath, data, 0o644)
}

// inParallel runs f(0..n-1) with a few workers and returns the first error.
func inParallel(n int, f func(i int) error) error {
	var g errgroup.Group
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error { return f(i) })
	}
	return g.Wait()
}

// prepareNamespace creates a namespace with the credentials Secret for the double and the
// OpenStackClusterStackReleaseTemplate the ClusterStacks' providerRef names, as a tenant of the
// operator has them.
func (s *scenario) prepareNamespace(ctx context.Context, ns string) error {
	if err := s.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	content, cloudName := s.cloud.CloudsYAML(openstackdouble.CloudsYAMLOptions{})
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: credentialsSecret},
		StringData: map[string]string{scope.CloudsYAMLKey: content, scope.CloudNameKey: cloudName},
	}
	if err := s.c.Create(ctx, secret); err != nil {
		return fmt.Errorf("creating the credentials Secret in %s: %w", ns, err)
	}
	tmpl := &infrav1alpha1.OpenStackClusterStackReleaseTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: stackName},
		Spec: infrav1alpha1.OpenStackClusterStackReleaseTemplateSpec{
			Template: infrav1alpha1.OpenStackClusterStackReleaseTemplateResource{
				Spec: infrav1alpha1.OpenStackClusterStackReleaseSpec{
					IdentityRef: &infrav1alpha1.OpenStackIdentityReference{Kind: "Secret", Name: credentialsSecret},
				},
			},
		},
	}
	if err := s.c.Create(ctx, tmpl); err != nil {
		return fmt.Errorf("creating the OpenStackClusterStackReleaseTemplate in %s: %w", ns, err)
	}
	return nil
}

// createClusterStack creates the ClusterStack of ns with versions, no autoSubscribe, no source of
// its own (the manager's default, from OCI_REGISTRY/OCI_REPOSITORY) and providerRef to the
// namespace's template.
func (s *scenario) createClusterStack(ctx context.Context, ns string, versions []string) error {
	spec := stackSpec(versions)
	spec.ProviderRef = &corev1.ObjectReference{
		APIVersion: infrav1alpha1.GroupVersion.String(),
		Kind:       "OpenStackClusterStackReleaseTemplate",
		Name:       stackName,
	}
	return s.createStack(ctx, ns, spec)
}

// stackSpec is the benchmarks' ClusterStack spec with versions, no autoSubscribe and no source of
// its own (the manager's default, from OCI_REGISTRY/OCI_REPOSITORY).
func stackSpec(versions []string) clusterstackv1alpha1.ClusterStackSpec {
	return clusterstackv1alpha1.ClusterStackSpec{
		Provider: "openstack", Name: "scs", KubernetesVersion: "1.32", Channel: "stable",
		Versions:      versions,
		AutoSubscribe: false,
	}
}

// createStack creates the ClusterStack of ns with spec.
func (s *scenario) createStack(ctx context.Context, ns string, spec clusterstackv1alpha1.ClusterStackSpec) error {
	cs := &clusterstackv1alpha1.ClusterStack{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: stackName}, Spec: spec}
	if err := s.c.Create(ctx, cs); err != nil {
		return fmt.Errorf("creating ClusterStack %s/%s: %w", ns, cs.Name, err)
	}
	return nil
}

// createCluster creates a Cluster of the release's ClusterClass with its kubeconfig Secret
// (pointing at the workload API server) and an initialized control plane, which is what the
// addon controller waits for; no Cluster API controller runs.
func (s *scenario) createCluster(ctx context.Context, ns, name, version string) error {
	c := &clusterv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: clusterv1.ClusterSpec{Topology: clusterv1.Topology{
			ClassRef: clusterv1.ClusterClassRef{Name: releaseName(version)},
			Version:  kubernetesOf(version),
		}},
	}
	if err := s.c.Create(ctx, c); err != nil {
		return fmt.Errorf("creating Cluster %s/%s: %w", ns, name, err)
	}
	workload := s.workloads[int(s.nextWorkload.Add(1)-1)%len(s.workloads)]
	kc, err := workloadcluster.Kubeconfig(workload.Config, name)
	if err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: workloadcluster.SecretName(name),
			Labels: map[string]string{clusterv1.ClusterNameLabel: name},
		},
		Type: clusterv1.ClusterSecretType,
		Data: map[string][]byte{workloadcluster.KubeconfigKey: kc},
	}
	if err := s.c.Create(ctx, secret); err != nil {
		return fmt.Errorf("creating the kubeconfig Secret of %s/%s: %w", ns, name, err)
	}
	base := c.DeepCopy()
	c.Status.Initialization.ControlPlaneInitialized = ptr.To(true)
	if err := s.c.Status().Patch(ctx, c, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("initializing the control plane of %s/%s: %w", ns, name, err)
	}
	return nil
}

// waitFor polls check until it reports done, failing the benchmark with check's last status and
// the end of the manager's log when limit passes or the manager exits.
func (s *scenario) waitFor(what string, limit, interval time.Duration, check func(context.Context) (bool, string, error)) {
	s.tb.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(limit)
	for {
		if err := s.mgr.alive(); err != nil {
			s.tb.Fatalf("waiting for %s: %v", what, err)
		}
		done, status, err := check(ctx)
		switch {
		case err != nil:
			status = err.Error()
		case done:
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("%s: not done after %s: %s\nmanager log (end):\n%s", what, limit, status, s.mgr.logTail(40))
		}
		time.Sleep(interval)
	}
}

// releasesReady checks that want ClusterStackReleases (in ns, or everywhere when ns is empty)
// are ready.
func (s *scenario) releasesReady(ns string, want int) func(context.Context) (bool, string, error) {
	return func(ctx context.Context) (bool, string, error) {
		list := &clusterstackv1alpha1.ClusterStackReleaseList{}
		if err := s.c.List(ctx, list, client.InNamespace(ns)); err != nil {
			return false, "", err
		}
		ready, pending := 0, ""
		for _, r := range list.Items {
			if r.Status.Ready {
				ready++
			} else if pending == "" {
				c := readyCondition(r.Status.Conditions)
				pending = fmt.Sprintf("; e.g. %s/%s: %s: %s", r.Namespace, r.Name, c.Reason, c.Message)
			}
		}
		return ready >= want, fmt.Sprintf("%d of %d ClusterStackReleases ready (%d exist)%s", ready, want, len(list.Items), pending), nil
	}
}

// addonsReady checks that want ClusterAddons are ready.
func (s *scenario) addonsReady(want int) func(context.Context) (bool, string, error) {
	return func(ctx context.Context) (bool, string, error) {
		list := &clusterstackv1alpha1.ClusterAddonList{}
		if err := s.c.List(ctx, list); err != nil {
			return false, "", err
		}
		ready, pending := 0, ""
		for _, a := range list.Items {
			if a.Status.Ready {
				ready++
			} else if pending == "" {
				c := readyCondition(a.Status.Conditions)
				pending = fmt.Sprintf("; e.g. %s/%s: %s: %s", a.Namespace, a.Name, c.Reason, c.Message)
			}
		}
		return ready >= want, fmt.Sprintf("%d of %d ClusterAddons ready (%d exist)%s", ready, want, len(list.Items), pending), nil
	}
}

func readyCondition(conds []metav1.Condition) metav1.Condition {
	for _, c := range conds {
		if c.Type == clusterstackv1alpha1.ReadyCondition {
			return c
		}
	}
	return metav1.Condition{Reason: "NotYetReported"}
}

// checkWorkloadObjects fails the benchmark unless every Cluster's addon ConfigMap is in its
// workload API server: Ready must mean the objects are there.
func (s *scenario) checkWorkloadObjects(clusters int) {
	s.tb.Helper()
	namespaces := map[string]bool{}
	for _, wc := range s.workCs {
		list := &corev1.ConfigMapList{}
		if err := wc.List(context.Background(), list, client.MatchingFields{"metadata.name": "fixture-cni"}); err != nil {
			s.tb.Fatal(err)
		}
		for _, cm := range list.Items {
			if strings.HasPrefix(cm.Namespace, "addons-") {
				namespaces[cm.Namespace] = true
			}
		}
	}
	if len(namespaces) != clusters {
		s.tb.Fatalf("the %d workload API servers have the addon ConfigMap in %d namespaces, want one per Cluster (%d)", len(s.workCs), len(namespaces), clusters)
	}
}

// convergence is what happened once everything was ready.
type convergence struct {
	settle       time.Duration // until no write and no OpenStack call for the quiet period
	window       time.Duration
	inWindow     counters // the manager's own counters over the window
	cloudCalls   int      // calls the double served in the window
	untilSettled counters // the manager's counters from its start until settled
}

// converge waits until the manager has been quiet (no API write, no OpenStack call) for quiet,
// at most settleLimit, then counts what it does in a window. Ready is not yet converged: an
// object that turned ready may still record observedGeneration, finished hooks or events.
func (s *scenario) converge(quiet, settleLimit, window time.Duration) convergence {
	s.tb.Helper()
	start := time.Now()
	last, err := s.mgr.scrape()
	if err != nil {
		s.tb.Fatal(err)
	}
	lastCloud, lastChange := s.cloud.TotalCalls(), time.Now()
	for time.Since(lastChange) < quiet && time.Since(start) < settleLimit {
		time.Sleep(250 * time.Millisecond)
		now, err := s.mgr.scrape()
		if err != nil {
			s.tb.Fatal(err)
		}
		cloud := s.cloud.TotalCalls()
		if now.writes() != last.writes() || now.openstack != last.openstack || cloud != lastCloud {
			last, lastCloud, lastChange = now, cloud, time.Now()
		}
	}
	if time.Since(lastChange) < quiet {
		s.tb.Logf("the manager still wrote or called OpenStack %s after everything was ready; measuring anyway", settleLimit)
	}
	res := convergence{settle: time.Since(start), window: window, untilSettled: last}

	before, err := s.mgr.scrape()
	if err != nil {
		s.tb.Fatal(err)
	}
	cloudBefore := s.cloud.TotalCalls()
	time.Sleep(window) // a measurement window, not a wait for a condition
	after, err := s.mgr.scrape()
	if err != nil {
		s.tb.Fatal(err)
	}
	res.inWindow = after.sub(before)
	res.cloudCalls = s.cloud.TotalCalls() - cloudBefore
	if err := s.mgr.alive(); err != nil {
		s.tb.Fatal(err)
	}
	return res
}

// glance summarises the double's Glance: uploads (PUT .../file), web-download imports and the
// images it holds, by name.
func (s *scenario) glance() (uploads, imports int, images map[string]int) {
	images = map[string]int{}
	for _, img := range s.cloud.Images() {
		images[img.Name]++
	}
	return s.cloud.Calls(openstackdouble.CallUploadImage), s.cloud.Calls(openstackdouble.CallImportImage), images
}

func describeImages(images map[string]int) string {
	var parts []string
	for n, c := range images {
		parts = append(parts, fmt.Sprintf("%s x%d", n, c))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// intFromEnv is the positive integer in the environment variable name, or def.
func intFromEnv(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		tb.Fatalf("%s: want a positive integer, not %q", name, v)
	}
	return n
}

// windowFromEnv is BENCH_E2E_WINDOW (a duration), or def.
func windowFromEnv(tb testing.TB, def time.Duration) time.Duration {
	return durationFromEnv(tb, "BENCH_E2E_WINDOW", def)
}

// durationFromEnv is the duration in the environment variable name, or def.
func durationFromEnv(tb testing.TB, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return d
}

// Kinds the readiness watcher follows.
const (
	kindRelease          = "ClusterStackRelease"
	kindOpenStackRelease = "OpenStackClusterStackRelease"
	kindNodeImage        = "OpenStackNodeImageRelease"
	kindAddon            = "ClusterAddon"
)

// readiness records when each release object and ClusterAddon of the management cluster first
// became ready. It watches instead of polling, so that waiting for hundreds of objects does not
// load the API server the manager works against (a list of 300 releases ten times a second
// would), and sub-second figures are not rounded to a polling interval.
type readiness struct {
	mu      sync.Mutex
	ready   map[string]time.Time // "Kind namespace/name" -> first seen ready
	changed chan struct{}        // closed and replaced whenever ready grows
	broken  chan struct{}        // closed when a watch ends before the scenario
	once    sync.Once
}

// watchReadiness starts the watches; they end with ctx.
func (s *scenario) watchReadiness(ctx context.Context) (*readiness, error) {
	wc, err := client.NewWithWatch(s.mgmt.Config, client.Options{Scheme: s.mgmt.Scheme})
	if err != nil {
		return nil, err
	}
	r := &readiness{ready: map[string]time.Time{}, changed: make(chan struct{}), broken: make(chan struct{})}
	lists := []client.ObjectList{
		&clusterstackv1alpha1.ClusterStackReleaseList{},
		&infrav1alpha1.OpenStackClusterStackReleaseList{},
		&infrav1alpha1.OpenStackNodeImageReleaseList{},
		&clusterstackv1alpha1.ClusterAddonList{},
	}
	trace := newTrace(s.tb)
	if trace != nil {
		lists = append(lists, &clusterstackv1alpha1.ClusterStackList{})
	}
	for _, list := range lists {
		w, err := wc.Watch(ctx, list)
		if err != nil {
			return nil, fmt.Errorf("watching %T: %w", list, err)
		}
		go func() {
			defer w.Stop()
			for ev := range w.ResultChan() {
				trace.event(ev.Type, ev.Object)
				switch o := ev.Object.(type) {
				case *clusterstackv1alpha1.ClusterStackRelease:
					r.observe(kindRelease, o, o.Status.Ready)
				case *infrav1alpha1.OpenStackClusterStackRelease:
					r.observe(kindOpenStackRelease, o, o.Status.Ready)
				case *infrav1alpha1.OpenStackNodeImageRelease:
					r.observe(kindNodeImage, o, o.Status.Ready)
				case *clusterstackv1alpha1.ClusterAddon:
					r.observe(kindAddon, o, o.Status.Ready)
				}
			}
			select {
			case <-ctx.Done():
			default:
				r.once.Do(func() { close(r.broken) })
			}
		}()
	}
	return r, nil
}

func (r *readiness) observe(kind string, o client.Object, ready bool) {
	if !ready {
		return
	}
	now := time.Now()
	key := kind + " " + o.GetNamespace() + "/" + o.GetName()
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, seen := r.ready[key]; seen {
		return
	}
	r.ready[key] = now
	close(r.changed)
	r.changed = make(chan struct{})
}

// count returns how many objects of kind (in ns; everywhere when ns is empty) have been ready,
// when the last of them became ready, and a channel closed at the next change.
func (r *readiness) count(kind, ns string) (n int, last time.Time, changed <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	prefix := kind + " "
	if ns != "" {
		prefix += ns + "/"
	}
	for k, t := range r.ready {
		if strings.HasPrefix(k, prefix) {
			n++
			if t.After(last) {
				last = t
			}
		}
	}
	return n, last, r.changed
}

// timeline lists the objects of ns that became ready after start, in order.
func (r *readiness) timeline(ns string, start time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	for k := range r.ready {
		if strings.Contains(k, " "+ns+"/") && !r.ready[k].Before(start) {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return r.ready[keys[i]].Before(r.ready[keys[j]]) })
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %6.3fs %s ready", r.ready[k].Sub(start).Seconds(), k)
	}
	return b.String()
}

// waitReady waits until want objects of kind (in ns, or everywhere) have been ready, then
// confirms with one list that they still are (check), and returns when the last became ready.
// If a watch ends early it falls back to polling check once a second, and the time is then as
// coarse as that.
func (s *scenario) waitReady(r *readiness, what, kind, ns string, want int, limit time.Duration, check func(context.Context) (bool, string, error)) time.Time {
	s.tb.Helper()
	deadline := time.After(limit)
	start := time.Now()
	for {
		n, last, changed := r.count(kind, ns)
		if n >= want {
			s.waitFor(what, time.Minute, time.Second, check)
			return last
		}
		select {
		case <-changed:
			continue
		case <-r.broken:
			s.tb.Logf("a watch ended early; polling for %s instead", what)
		case <-s.mgr.exited:
		case <-deadline:
		}
		break
	}
	s.waitFor(what, max(limit-time.Since(start), time.Second), time.Second, check)
	return time.Now()
}

// logMemory logs the manager's resident memory next to the Go runtime's view of it.
func (s *scenario) logMemory(peak, current float64) {
	c, err := s.mgr.scrape()
	if err != nil {
		s.tb.Fatal(err)
	}
	anon, file, err := s.mgr.rssSplit()
	if err != nil {
		s.tb.Fatal(err)
	}
	s.tb.Logf("manager memory: RSS %.1f MiB now (anonymous %.1f, file-backed %.1f: the binary's pages), %.1f MiB peak (VmHWM); Go heap in use %.1f MiB, Go runtime total from the OS %.1f MiB",
		current, anon, file, peak, c.heapInuse/(1<<20), c.goSys/(1<<20))
}

// dumpAPIServerRequests writes the management API server's request counts (its
// apiserver_request_total lines, by verb, resource and code) to <dir>/<label>.txt when
// BENCH_E2E_APISERVER_METRICS names a directory: to see which of the manager's requests cost
// the API server its CPU. The counts are cumulative from the server's start.
func (s *scenario) dumpAPIServerRequests(label string) {
	dir := os.Getenv("BENCH_E2E_APISERVER_METRICS")
	if dir == "" {
		return
	}
	cfg := rest.CopyConfig(s.mgmt.Config)
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		s.tb.Logf("API server metrics: %v", err)
		return
	}
	resp, err := hc.Get(strings.TrimSuffix(cfg.Host, "/") + "/metrics")
	if err != nil {
		s.tb.Logf("API server metrics: %v", err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.tb.Logf("API server metrics: %v", err)
		return
	}
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "apiserver_request_total{") || strings.HasPrefix(l, "apiserver_watch_events_total{") {
			lines = append(lines, l)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, label+".txt"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		s.tb.Logf("API server metrics: %v", err)
	}
}

// trace writes every watch event of watchReadiness (time, type, kind, object, resourceVersion,
// the Ready condition) to the file BENCH_E2E_TRACE names: to see which writes an object's way to
// ready takes. Nil (no file) traces nothing.
type trace struct {
	mu    sync.Mutex
	f     *os.File
	start time.Time
}

func newTrace(tb testing.TB) *trace {
	p := os.Getenv("BENCH_E2E_TRACE")
	if p == "" {
		return nil
	}
	f, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	return &trace{f: f, start: time.Now()}
}

func (t *trace) event(typ watch.EventType, obj runtime.Object) {
	o, ok := obj.(interface {
		client.Object
		GetConditions() []metav1.Condition
	})
	if t == nil || !ok {
		return
	}
	ready := "-"
	for _, c := range o.GetConditions() {
		if c.Type == clusterstackv1alpha1.ReadyCondition {
			ready = fmt.Sprintf("%s %s %q", c.Status, c.Reason, c.Message)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.f, "%.3f %s %T %s/%s rv=%s gen=%d ready=%s\n", time.Since(t.start).Seconds(), typ, o, o.GetNamespace(), o.GetName(), o.GetResourceVersion(), o.GetGeneration(), ready)
}
