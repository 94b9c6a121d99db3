package clusterstack_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/kstatus"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/render"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
)

// TestHostileReleases publishes releases whose cluster-class chart is hostile and checks that
// each ends Stalled with InvalidRelease, a message (accepted by the API server: the status patch
// went through) that says which budget or name is at fault, and nothing applied.
//
// Not parallel with the other tests: the render budget it sets is the process's, and the other
// tests' charts must render under the default one.
func TestHostileReleases(t *testing.T) {
	// A small time and output budget makes the bombs end in seconds; every other chart of this
	// suite needs a fraction of them. The memory budget is four times the default: Helm's 1000
	// levels of a recursive include, each holding the error of the level below, need about
	// 60 MiB in use, and with the garbage not yet collected a loaded machine sometimes saw the
	// default 128 MiB end the include bomb before Helm's error did (internal/render's
	// TestChartBombs covers the memory budget itself).
	prev := render.CurrentLimits()
	render.SetLimits(render.Limits{Timeout: 10 * time.Second, MaxOutputBytes: 1 << 20, MaxMemoryBytes: 4 * render.DefaultLimits.MaxMemoryBytes, Concurrency: 2})
	t.Cleanup(func() { render.SetLimits(prev) })

	for _, tc := range []struct {
		source string
		says   []string
	}{
		{"openstack-scs-bomb-until", []string{"memory", "--" + render.MaxMemoryFlag, "chart openstack-scs-1-32-cluster-class"}},
		{"openstack-scs-bomb-nested", []string{"did not finish within 10s", "--" + render.TimeoutFlag, "chart openstack-scs-1-32-cluster-class"}},
		{"openstack-scs-bomb-output", []string{"bytes of objects", "--" + render.MaxOutputBytesFlag, "chart openstack-scs-1-32-cluster-class"}},
		// Helm stops the recursion after 1000 levels with a ~100 KB error; the condition keeps
		// where it started and the innermost cause.
		{"openstack-scs-bomb-include", []string{"templates/bomb.yaml", "bomb.loop", "nested reference name"}},
		{"openstack-scs-wrongclass", []string{"renders the ClusterClass not-the-release-class, not openstack-scs-1-32-v1"}},
	} {
		t.Run(tc.source, func(t *testing.T) {
			t.Parallel()
			g := NewWithT(t)
			ns, repo := newNamespace(t), repoFor(t)
			publish(t, repo, fixtures.Options{StackVersion: "v1", Source: tc.source})
			newClusterStack(t, ns, repo, func(cs *clusterstackv1alpha1.ClusterStack) { cs.Spec.Versions = []string{"v1"} })
			g.Eventually(func(g Gomega) {
				csr := getCSR(g, ns, "openstack-scs-1-32-v1")
				applied := condition(csr.Status.Conditions, clusterstackv1alpha1.ResourcesAppliedCondition)
				g.Expect(applied.Status).To(Equal(metav1.ConditionFalse))
				g.Expect(applied.Reason).To(Equal(clusterstackv1alpha1.InvalidReleaseReason))
				for _, s := range tc.says {
					g.Expect(applied.Message).To(ContainSubstring(s))
				}
				g.Expect(len(applied.Message)).To(BeNumerically("<=", kstatus.MaxMessageBytes))
				stalled := condition(csr.Status.Conditions, clusterstackv1alpha1.StalledCondition)
				g.Expect(stalled.Status).To(Equal(metav1.ConditionTrue))
				g.Expect(stalled.Reason).To(Equal(clusterstackv1alpha1.InvalidReleaseReason))
				g.Expect(csr.Status.Resources).To(BeEmpty())
				g.Expect(condition(getCS(g, ns).Status.Conditions, clusterstackv1alpha1.StalledCondition).Status).To(Equal(metav1.ConditionTrue))
			}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
			g.Expect(classNames(g, ns)).To(BeEmpty())
		})
	}
}
