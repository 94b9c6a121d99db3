package clusteraddon

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/test/helmrepo"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// Repository host names of the openstack-scs2* fixtures.
const (
	ciliumRepoHost = "cilium.example.com"
	cpoRepoHost    = "cloud-provider-openstack.example.com"
	ociHost        = "registry.example.com"
)

// depCharts are the charts the scs2-shaped fixtures depend on, as the doubles serve them; each
// renders the ConfigMap kube-system/dep-<name> with its version and the value host.
var depCharts = []struct {
	name, version string
	oci           bool
}{
	{name: "cilium", version: "1.18.8"},
	{name: "cilium", version: "1.18.9"},
	{name: "openstack-cloud-controller-manager", version: "2.34.2"},
	{name: "openstack-cloud-controller-manager", version: "2.34.5"}, // newer, but Chart.lock pins 2.34.2
	{name: "openstack-cinder-csi", version: "2.34.1"},
	{name: "openstack-cinder-csi", version: "2.34.3"},
	{name: "tampered", version: "1.0.0"},
	{name: "metrics-server", version: "3.13.0", oci: true},
}

// startChartDoubles starts the Helm repository and the OCI registry, stopped after the tests,
// and fills them.
func startChartDoubles(s *testenv.Suite) error {
	var err error
	if chartRepo, err = helmrepo.StartRepo(); err != nil {
		return err
	}
	s.Cleanup(chartRepo.Close)
	chartRegistry = helmrepo.StartRegistry()
	s.Cleanup(chartRegistry.Close)
	if chartDown, err = helmrepo.StartRepo(); err != nil {
		return err
	}
	s.Cleanup(chartDown.Close)
	chartDown.FailWith(http.StatusServiceUnavailable)
	chartClient = helmrepo.Client(map[string]string{
		ciliumRepoHost:     chartRepo.Host(),
		cpoRepoHost:        chartRepo.Host(),
		ociHost:            chartRegistry.Host(),
		"down.example.com": chartDown.Host(),
	})
	for _, c := range depCharts {
		ch := helmrepo.ConfigMapChart(c.name, c.version)
		if c.oci {
			err = chartRegistry.PushChart(chartClient, ociHost, "charts", ch)
		} else {
			_, err = chartRepo.AddChart(ch)
		}
		if err != nil {
			return fmt.Errorf("serving chart %s %s: %w", c.name, c.version, err)
		}
	}
	// The index promises another archive than the one served.
	chartRepo.SetDigest("tampered", "1.0.0", "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	return nil
}

func chartRequests() int { return chartRepo.Requests() + chartRegistry.Requests() }

// depConfigMaps are the objects the dependency charts of the openstack-scs2 fixture render.
var depConfigMaps = []string{"dep-cilium", "dep-openstack-cloud-controller-manager", "dep-openstack-cinder-csi", "dep-metrics-server"}

func cleanDepConfigMaps(t *testing.T) {
	t.Helper()
	for _, n := range depConfigMaps {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: n}}
		if err := workload.Client.Delete(context.Background(), cm); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
}

func setEndpoint(t *testing.T, c *clusterv1.Cluster, host string) {
	t.Helper()
	ctx := context.Background()
	NewWithT(t).Eventually(func() error {
		if err := mgmt.Client.Get(ctx, client.ObjectKeyFromObject(c), c); err != nil {
			return err
		}
		c.Spec.ControlPlaneEndpoint = clusterv1.APIEndpoint{Host: host, Port: 6443}
		return mgmt.Client.Update(ctx, c)
	}).WithTimeout(timeout).Should(Succeed())
}

// TestChartDependencies installs an scs2-shaped release: its addon charts declare their charts as
// Chart.yaml dependencies (HTTP repository and OCI, one pinned by Chart.lock) and ship no
// charts/. Every dependency chart lands in the workload cluster; a second release and a restarted
// operator reuse the cache without a single request to the repositories.
func TestChartDependencies(t *testing.T) {
	isolate(t)
	cleanDepConfigMaps(t)
	t.Cleanup(func() { cleanDepConfigMaps(t) })
	ns := newNamespace(t)
	first := chartRequests()

	// The Cluster has no control plane endpoint yet: cni's overwrite.yaml cannot be evaluated,
	// which waits, and heals once the Cluster has one.
	c := createCluster(t, ns, "scs2", "v8", true, true)
	NewWithT(t).Eventually(func(g Gomega) {
		ca := getAddon(g, ns, c.Name)
		rec := condition(ca, csv1alpha1.ReconcilingCondition)
		g.Expect(rec.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(rec.Reason).To(Equal(csv1alpha1.WaitingForClusterReason))
		g.Expect(rec.Message).To(ContainSubstring("overwrite.yaml"))
		g.Expect(condition(ca, csv1alpha1.StalledCondition).Status).To(Equal(metav1.ConditionFalse))
	}).WithTimeout(timeout).Should(Succeed())
	setEndpoint(t, c, "10.1.2.3")

	ca := waitReady(t, ns, c.Name, className("v8"))
	g := NewWithT(t)
	g.Expect(ca.Status.Resources).To(HaveLen(len(depConfigMaps)))
	for name, want := range map[string]map[string]string{
		"dep-cilium":                             {"version": "1.18.9", "host": "10.1.2.3"}, // overwrite.yaml over .Cluster
		"dep-openstack-cloud-controller-manager": {"version": "2.34.2", "host": ns},         // Chart.lock wins over the newer 2.34.5
		"dep-openstack-cinder-csi":               {"version": "2.34.3", "host": "from-values"},
		"dep-metrics-server":                     {"version": "3.13.0", "host": ns}, // from the OCI registry
	} {
		cm := workloadConfigMap(g, "kube-system", name)
		for k, v := range want {
			g.Expect(cm.Data).To(HaveKeyWithValue(k, v), "ConfigMap %s", name)
		}
	}
	t.Logf("Requests to the chart repositories for the first release: %d", chartRequests()-first)

	// A second release with the same dependencies fetches nothing.
	deleteCluster(t, c)
	before := chartRequests()
	c2 := createCluster(t, ns, "scs2-second", "v9", true, true)
	setEndpoint(t, c2, "10.1.2.3")
	waitReady(t, ns, c2.Name, className("v9"))
	g.Expect(chartRequests()-before).To(BeZero(), "requests to the chart repositories for a second release")

	// A restarted operator (new resolver, same cache directory) fetches nothing either.
	deleteCluster(t, c2)
	stopManager()
	if err := startManager(); err != nil {
		t.Fatal(err)
	}
	before = chartRequests()
	c3 := createCluster(t, ns, "scs2-restart", "v8", true, true)
	setEndpoint(t, c3, "10.1.2.3")
	waitReady(t, ns, c3.Name, className("v8"))
	g.Expect(chartRequests()-before).To(BeZero(), "requests to the chart repositories after a restart")
}

// TestChartDependencyFailures: a dependency that cannot be resolved stalls the ClusterAddon with
// a condition naming the chart and the repository, never "0 objects applied".
func TestChartDependencyFailures(t *testing.T) {
	ns := newNamespace(t)
	for _, tc := range []struct {
		name, version string
		reason        string
		message       []string
	}{
		{name: "nodep", version: "v10", reason: csv1alpha1.DependencyUnresolvableReason,
			message: []string{"cilium ^9.0.0", "chart CNI", "https://cilium.example.com/", "no version"}},
		{name: "tampered", version: "v11", reason: csv1alpha1.DependencyUnresolvableReason,
			message: []string{"tampered 1.0.0", "chart CNI", "https://cilium.example.com/", "digest"}},
		{name: "empty", version: "v12", reason: csv1alpha1.InvalidReleaseReason,
			message: []string{"render nothing", "cni"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The first stage fails to render (or renders nothing): nothing reaches the shared
			// workload cluster, so the rows need no isolation from each other.
			t.Parallel()
			c := createCluster(t, ns, tc.name, tc.version, true, true)
			NewWithT(t).Eventually(func(g Gomega) {
				ca := getAddon(g, ns, c.Name)
				st := condition(ca, csv1alpha1.StalledCondition)
				g.Expect(st.Status).To(Equal(metav1.ConditionTrue))
				g.Expect(st.Reason).To(Equal(tc.reason))
				for _, m := range tc.message {
					g.Expect(st.Message).To(ContainSubstring(m))
				}
				g.Expect(ca.Status.Ready).To(BeFalse())
				g.Expect(condition(ca, csv1alpha1.ReadyCondition).Message).NotTo(ContainSubstring("applied"))
			}).WithTimeout(timeout).Should(Succeed())
			deleteCluster(t, c)
		})
	}

	// A repository that does not answer is waited for, not a stalled release.
	t.Run("unavailable", func(t *testing.T) {
		t.Parallel() // fails to render its first stage, as the rows above
		c := createCluster(t, ns, "unavailable", "v13", true, true)
		NewWithT(t).Eventually(func(g Gomega) {
			ca := getAddon(g, ns, c.Name)
			rec := condition(ca, csv1alpha1.ReconcilingCondition)
			g.Expect(rec.Status).To(Equal(metav1.ConditionTrue))
			g.Expect(rec.Reason).To(Equal(csv1alpha1.DependencyUnavailableReason))
			g.Expect(rec.Message).To(And(ContainSubstring("cilium"), ContainSubstring("chart CNI"), ContainSubstring("https://down.example.com")))
			g.Expect(condition(ca, csv1alpha1.StalledCondition).Status).To(Equal(metav1.ConditionFalse))
		}).WithTimeout(timeout).Should(Succeed())
		deleteCluster(t, c)
	})
}
