package openstack

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cluster-api/util/conditions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

const capabilityRelease = "openstack-scs-1-32-v1"

// capabilityCalls are the calls of a capability check (the catalog comes with the token).
var capabilityCalls = []string{
	openstackdouble.CallListFlavors, openstackdouble.CallComputeLimits, openstackdouble.CallListNetworks,
	openstackdouble.CallVolumeLimits, openstackdouble.CallImageSchema, openstackdouble.CallImageUsage,
}

func countCapabilityCalls(cloud *openstackdouble.Server) int {
	n := 0
	for _, c := range capabilityCalls {
		n += cloud.Calls(c)
	}
	return n
}

// waitCapable waits for CloudCapable with status and reason, the release's observedGeneration
// current, and returns the release.
func waitCapable(g Gomega, ns string, status metav1.ConditionStatus, reason string) *infrav1.OpenStackClusterStackRelease {
	obj := &infrav1.OpenStackClusterStackRelease{}
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: capabilityRelease}, obj)).To(Succeed())
		c := conditions.Get(obj, infrav1.CloudCapableCondition)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(status), "CloudCapable: %s", c.Message)
		g.Expect(c.Reason).To(Equal(reason), "CloudCapable: %s", c.Message)
		g.Expect(obj.Status.ObservedGeneration).To(Equal(obj.Generation))
	}).WithTimeout(60 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
	return obj
}

// TestCapabilityCheck runs the capability check of the fixture release (its class enables the
// API server load balancer, defaults both roles to flavor SCS-2V-4 with a 50 GiB root volume and
// selects the external network public; its node image is a qcow2 file without hash) against
// clouds that lack one capability each, and against one that has all of them.
func TestCapabilityCheck(t *testing.T) {
	t.Parallel()
	const cluster = "OpenStackClusterTemplate openstack-scs-1-32-v1-cluster"
	tests := []struct {
		name    string
		opts    []openstackdouble.Option
		mutate  func(*openstackdouble.Server)
		status  metav1.ConditionStatus
		reason  string
		message string
	}{
		{name: "all present", status: metav1.ConditionTrue, reason: infrav1.CapabilitiesPresentReason,
			message: "The cloud has what the class defaults need: the load-balancer service, flavor SCS-2V-4 (control plane), flavor SCS-2V-4 (workers), external network public, disk format qcow2, quota for one control-plane and one worker machine"},
		{name: "no Octavia", opts: []openstackdouble.Option{openstackdouble.WithoutService(openstackdouble.ServiceLoadBalancer)},
			status: metav1.ConditionFalse, reason: infrav1.CapabilityMissingReason,
			message: "Clusters that keep the class defaults cannot be served: no load-balancer service (Octavia) in the catalog, but the class enables the API server load balancer (" + cluster + ")"},
		{name: "flavor missing", opts: []openstackdouble.Option{openstackdouble.WithFlavors(openstackdouble.Flavor{Name: "m1.small", VCPUs: 1, RAM: 2048, Disk: 20})},
			status: metav1.ConditionFalse, reason: infrav1.CapabilityMissingReason,
			message: "flavor SCS-2V-4 (control plane default, variable flavor) not found; flavor SCS-2V-4 (workers default, variable flavor) not found"},
		{name: "disk format refused", opts: []openstackdouble.Option{openstackdouble.WithDiskFormats("raw")},
			status: metav1.ConditionFalse, reason: infrav1.CapabilityMissingReason,
			message: "image ubuntu-capi-image-v1.32.5 (node-images.yaml) has disk format qcow2, which Glance does not accept (it accepts raw)"},
		{name: "no web-download import", opts: []openstackdouble.Option{openstackdouble.WithWebDownload(false)},
			status: metav1.ConditionTrue, reason: infrav1.CapabilitiesPresentReason,
			message: "note: Glance offers no web-download import (it offers glance-direct, copy-image): image ubuntu-capi-image-v1.32.5 (node-images.yaml) is downloaded by the management cluster and uploaded instead"},
		{name: "no external network", opts: []openstackdouble.Option{openstackdouble.WithNetworks(openstackdouble.Network{Name: "private"})},
			status: metav1.ConditionFalse, reason: infrav1.CapabilityMissingReason,
			message: "external network public (" + cluster + ") not found among the project's external networks (router:external): none"},
		{name: "compute quota exhausted", mutate: func(s *openstackdouble.Server) {
			s.SetComputeLimits(openstackdouble.ComputeLimits{MaxInstances: 10, InstancesUsed: 9, MaxCores: 20, CoresUsed: 2, MaxRAM: 51200})
		}, status: metav1.ConditionFalse, reason: infrav1.CapabilityMissingReason,
			message: "instance quota exhausted: 1 left (9 of 10 used), one Cluster of the class needs 2 (one machine of SCS-2V-4 for the control plane and one of SCS-2V-4 for the workers)"},
		{name: "volume quota exhausted", mutate: func(s *openstackdouble.Server) {
			s.SetVolumeLimits(openstackdouble.VolumeLimits{MaxVolumes: 10, VolumesUsed: 2, MaxGigabytes: 100, GigabytesUsed: 60})
		}, status: metav1.ConditionFalse, reason: infrav1.CapabilityMissingReason,
			message: "volume gigabyte quota exhausted: 40 GiB left (60 of 100 used), one Cluster of the class needs 100 GiB (50 GiB root volume for the control plane, 50 GiB root volume for the workers)"},
		{name: "image quota exhausted", mutate: func(s *openstackdouble.Server) {
			s.SetImageUsage(&openstackdouble.ImageUsage{SizeLimit: -1, CountLimit: 3, CountUsed: 3})
		}, status: metav1.ConditionFalse, reason: infrav1.CapabilityMissingReason,
			message: "image quota exhausted: 0 left (3 of 3 used), one Cluster of the class needs 1 (images ubuntu-capi-image-v1.32.5)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := NewWithT(t)
			f := newFixture(t, tt.opts...)
			if tt.mutate != nil {
				tt.mutate(f.cloud)
			}
			opts := f.options(dirReleases{dir: buildReleases(t, []int{1})})
			if tt.name == "image quota exhausted" {
				// The image must not reach Glance first, or it needs no quota: hold its upload.
				f.cloud.InjectFault(openstackdouble.Fault{Method: http.MethodPost, Path: "/v2/images", Status: http.StatusServiceUnavailable})
			}
			f.startManager(opts)
			createRelease(t, f.ns, capabilityRelease, f.secret)

			obj := waitCapable(g, f.ns, tt.status, tt.reason)
			g.Expect(conditions.GetMessage(obj, infrav1.CloudCapableCondition)).To(ContainSubstring(tt.message))
			if tt.name != "image quota exhausted" && tt.name != "disk format refused" {
				// A missing capability does not hold the release back: Clusters may override
				// the defaults.
				waitReleaseReady(g, f.ns, capabilityRelease)
				obj = waitCapable(g, f.ns, tt.status, tt.reason)
				g.Expect(conditions.IsTrue(obj, csv1alpha1.ReadyCondition)).To(BeTrue())
			}
			if tt.status == metav1.ConditionFalse {
				// Said once as a Warning event.
				g.Eventually(func(g Gomega) {
					var evs eventsv1.EventList
					g.Expect(env.Client.List(context.Background(), &evs, client.InNamespace(f.ns))).To(Succeed())
					n := 0
					for _, e := range evs.Items {
						if e.Reason == infrav1.CapabilityMissingReason && e.Regarding.Name == capabilityRelease {
							n++
							g.Expect(e.Type).To(Equal("Warning"))
							g.Expect(e.Note).To(ContainSubstring(tt.message))
						}
					}
					g.Expect(n).To(Equal(1))
				}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
			}
		})
	}
}

// TestCapabilityCheckOutage shows that a cloud outage during the check is Unknown (never False)
// and retried after the cloud's Retry-After, not after the check interval.
func TestCapabilityCheckOutage(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newFixture(t)
	fault := f.cloud.InjectFault(openstackdouble.Fault{Path: "/v2.1/flavors/detail", Status: http.StatusServiceUnavailable, RetryAfter: time.Second})
	opts := f.options(dirReleases{dir: buildReleases(t, []int{1})})
	f.startManager(opts)
	createRelease(t, f.ns, capabilityRelease, f.secret)

	obj := waitCapable(g, f.ns, metav1.ConditionUnknown, infrav1.CloudUnavailableReason)
	g.Expect(conditions.GetMessage(obj, infrav1.CloudCapableCondition)).To(ContainSubstring("Cannot check the cloud: Nova unavailable (HTTP 503): retrying at"))
	fault.Remove()
	waitCapable(g, f.ns, metav1.ConditionTrue, infrav1.CapabilitiesPresentReason)
	g.Expect(fault.Hits()).To(BeNumerically(">=", 1))
}

// reconciles is how many reconciles the OpenStackClusterStackRelease controllers have finished.
func reconciles(t *testing.T) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range families {
		if mf.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "openstackclusterstackrelease" {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

// TestCapabilityCheckCached shows that a converged release makes no OpenStack call within the
// check interval, however often it is reconciled, and that a changed spec is checked at once. Not
// parallel: it counts the controller's reconciles, which other tests' managers would add to.
func TestCapabilityCheckCached(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t, openstackdouble.WithFlavors(openstackdouble.Flavor{Name: "m1.small", VCPUs: 1, RAM: 2048, Disk: 20}))
	f.addSecret("openstack-2", openstackdouble.CloudsYAMLOptions{})
	f.startManager(f.options(dirReleases{dir: buildReleases(t, []int{1})}))
	createRelease(t, f.ns, capabilityRelease, f.secret)
	waitCapable(g, f.ns, metav1.ConditionFalse, infrav1.CapabilityMissingReason)
	waitReleaseReady(g, f.ns, capabilityRelease)
	g.Expect(countCapabilityCalls(f.cloud)).To(BeNumerically(">=", 1))

	// The cloud gets the flavor, but within the interval (the default hour) nobody asks.
	f.cloud.SetFlavors(openstackdouble.DefaultFlavors...)
	f.cloud.ResetCalls()
	key := types.NamespacedName{Namespace: f.ns, Name: capabilityRelease}
	get := func() *infrav1.OpenStackClusterStackRelease {
		obj := &infrav1.OpenStackClusterStackRelease{}
		g.Expect(env.Client.Get(context.Background(), key, obj)).To(Succeed())
		return obj
	}
	for i := range 5 {
		before := reconciles(t)
		obj := get()
		base := client.MergeFrom(obj.DeepCopy())
		obj.Annotations = map[string]string{"poke": strconv.Itoa(i)}
		g.Expect(env.Client.Patch(context.Background(), obj, base)).To(Succeed())
		g.Eventually(func() float64 { return reconciles(t) }).WithTimeout(10 * time.Second).WithPolling(20 * time.Millisecond).Should(BeNumerically(">", before))
	}
	g.Expect(f.cloud.TotalCalls()).To(BeZero(), "OpenStack calls of a converged release:\n%s", f.cloud)
	g.Expect(conditions.GetReason(get(), infrav1.CloudCapableCondition)).To(Equal(infrav1.CapabilityMissingReason))

	// Other credentials (a new spec) are checked at once.
	obj := get()
	base := client.MergeFrom(obj.DeepCopy())
	obj.Spec.IdentityRef = &infrav1.OpenStackIdentityReference{Kind: "Secret", Name: "openstack-2"}
	g.Expect(env.Client.Patch(context.Background(), obj, base)).To(Succeed())
	waitCapable(g, f.ns, metav1.ConditionTrue, infrav1.CapabilitiesPresentReason)
	g.Expect(countCapabilityCalls(f.cloud)).To(BeNumerically(">=", 1))
}

// TestCapabilityCheckInterval shows that the check is repeated by itself after the interval and
// sees a cloud that changed.
func TestCapabilityCheckInterval(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	f := newFixture(t, openstackdouble.WithoutService(openstackdouble.ServiceLoadBalancer),
		openstackdouble.WithFlavors(openstackdouble.Flavor{Name: "m1.small", VCPUs: 1, RAM: 2048, Disk: 20}))
	opts := f.options(dirReleases{dir: buildReleases(t, []int{1})})
	opts.CapabilityCheckInterval = 2 * time.Second
	f.startManager(opts)
	createRelease(t, f.ns, capabilityRelease, f.secret)
	obj := waitCapable(g, f.ns, metav1.ConditionFalse, infrav1.CapabilityMissingReason)
	g.Expect(conditions.GetMessage(obj, infrav1.CloudCapableCondition)).To(ContainSubstring("flavor SCS-2V-4 (control plane default, variable flavor) not found"))

	f.cloud.SetFlavors(openstackdouble.DefaultFlavors...)
	g.Eventually(func(g Gomega) {
		obj := waitCapable(g, f.ns, metav1.ConditionFalse, infrav1.CapabilityMissingReason)
		msg := conditions.GetMessage(obj, infrav1.CloudCapableCondition)
		g.Expect(msg).NotTo(ContainSubstring("flavor"))
		g.Expect(msg).To(ContainSubstring("no load-balancer service (Octavia) in the catalog"))
	}).WithTimeout(60 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
}
