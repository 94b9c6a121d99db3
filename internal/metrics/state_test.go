package metrics_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/metrics"
)

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "metrics-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), ns) })
	return ns.Name
}

// state is the condition triple of an object, as kstatus sets it.
type state struct {
	ready, stalled metav1.ConditionStatus
	reason         string
}

var (
	ready      = state{metav1.ConditionTrue, metav1.ConditionFalse, csv1alpha1.ReadyReason}
	stalled    = func(reason string) state { return state{metav1.ConditionFalse, metav1.ConditionTrue, reason} }
	progressed = func(reason string) state { return state{metav1.ConditionFalse, metav1.ConditionFalse, reason} }
)

func setState(obj interface {
	client.Object
	SetConditions([]metav1.Condition)
}, s state) {
	var conds []metav1.Condition
	for _, c := range []metav1.Condition{
		{Type: csv1alpha1.ReadyCondition, Status: s.ready, Reason: s.reason},
		{Type: csv1alpha1.StalledCondition, Status: s.stalled, Reason: s.reason},
	} {
		apimeta.SetStatusCondition(&conds, c)
	}
	obj.SetConditions(conds)
}

// create creates obj and, unless s is the zero state (no status yet), writes its conditions.
func create(t *testing.T, obj interface {
	client.Object
	SetConditions([]metav1.Condition)
}, s state) {
	t.Helper()
	ctx := context.Background()
	if err := env.Client.Create(ctx, obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
	if s == (state{}) {
		return
	}
	setState(obj, s)
	if err := env.Client.Status().Update(ctx, obj); err != nil {
		t.Fatalf("writing the status of %T %s: %v", obj, obj.GetName(), err)
	}
}

func release(ns, name string) *csv1alpha1.ClusterStackRelease {
	return &csv1alpha1.ClusterStackRelease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

func addon(ns, cluster string) *csv1alpha1.ClusterAddon {
	return &csv1alpha1.ClusterAddon{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cluster-addon-" + cluster},
		Spec:       csv1alpha1.ClusterAddonSpec{ClusterRef: &corev1.ObjectReference{APIVersion: "cluster.x-k8s.io/v1beta2", Kind: "Cluster", Name: cluster, Namespace: ns}},
	}
}

func nodeImage(ns, name string) *infrav1alpha1.OpenStackNodeImageRelease {
	visibility := "private"
	return &infrav1alpha1.OpenStackNodeImageRelease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: infrav1alpha1.OpenStackNodeImageReleaseSpec{
			IdentityRef: &infrav1alpha1.OpenStackIdentityReference{Kind: "Secret", Name: "openstack"},
			Image: &infrav1alpha1.NodeImage{
				URL:        "https://images.example.org/" + name + ".qcow2",
				CreateOpts: &infrav1alpha1.ImageCreateOpts{Name: name, DiskFormat: "qcow2", ContainerFormat: "bare", Visibility: &visibility},
			},
		},
	}
}

// scrape gathers the collector's series of namespace ns as "name{label=value,...}" -> value.
func scrape(reg *prometheus.Registry, ns string) (map[string]float64, error) {
	families, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			inNamespace := false
			for _, l := range m.GetLabel() {
				if l.GetName() == "namespace" {
					inNamespace = l.GetValue() == ns
					continue
				}
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			if inNamespace {
				sort.Strings(labels)
				out[fmt.Sprintf("%s{%s}", f.GetName(), strings.Join(labels, ","))] = m.GetGauge().GetValue()
			}
		}
	}
	return out, nil
}

// TestStateCollector checks the gauges against objects in given states, read through a cache as
// the manager's: counts by kind, Ready status and reason, and the Stalled ones by reason.
func TestStateCollector(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewStateCollector(c))

	ns := newNamespace(t)
	create(t, release(ns, "openstack-scs-1-32-v1"), ready)
	create(t, release(ns, "openstack-scs-1-32-v2"), ready)
	create(t, release(ns, "openstack-scs-1-33-v1"), progressed("ProviderNotReady"))
	create(t, release(ns, "openstack-scs-1-33-v2"), stalled(csv1alpha1.InvalidReleaseReason))
	create(t, release(ns, "openstack-scs-1-34-v1"), state{}) // not reconciled yet
	create(t, nodeImage(ns, "ubuntu-2204"), ready)
	create(t, nodeImage(ns, "ubuntu-2404"), stalled("ImageImportFailed"))
	create(t, nodeImage(ns, "flatcar"), stalled("ImageImportFailed"))
	create(t, addon(ns, "a"), ready)
	stuck := addon(ns, "b")
	create(t, stuck, stalled(csv1alpha1.ApplyFailedReason))

	want := map[string]float64{
		"clusterstack_objects{kind=ClusterStackRelease,ready=True,reason=Ready}":                    2,
		"clusterstack_objects{kind=ClusterStackRelease,ready=False,reason=ProviderNotReady}":        1,
		"clusterstack_objects{kind=ClusterStackRelease,ready=False,reason=InvalidRelease}":          1,
		"clusterstack_objects{kind=ClusterStackRelease,ready=Unknown,reason=}":                      1,
		"clusterstack_objects{kind=OpenStackNodeImageRelease,ready=True,reason=Ready}":              1,
		"clusterstack_objects{kind=OpenStackNodeImageRelease,ready=False,reason=ImageImportFailed}": 2,
		"clusterstack_objects{kind=ClusterAddon,ready=True,reason=Ready}":                           1,
		"clusterstack_objects{kind=ClusterAddon,ready=False,reason=ApplyFailed}":                    1,
		"clusterstack_objects_stalled{kind=ClusterStackRelease,reason=InvalidRelease}":              1,
		"clusterstack_objects_stalled{kind=OpenStackNodeImageRelease,reason=ImageImportFailed}":     2,
		"clusterstack_objects_stalled{kind=ClusterAddon,reason=ApplyFailed}":                        1,
	}
	g := NewWithT(t)
	g.Eventually(func() string {
		got, err := scrape(reg, ns)
		if err != nil {
			return err.Error()
		}
		return cmp.Diff(want, got)
	}).WithTimeout(30*time.Second).Should(BeEmpty(), "gauges (-want +got)")

	// The stuck addon recovers: its stall is no longer counted.
	setState(stuck, ready)
	if err := env.Client.Status().Update(context.Background(), stuck); err != nil {
		t.Fatal(err)
	}
	want["clusterstack_objects{kind=ClusterAddon,ready=True,reason=Ready}"] = 2
	delete(want, "clusterstack_objects{kind=ClusterAddon,ready=False,reason=ApplyFailed}")
	delete(want, "clusterstack_objects_stalled{kind=ClusterAddon,reason=ApplyFailed}")
	g.Eventually(func() string {
		got, err := scrape(reg, ns)
		if err != nil {
			return err.Error()
		}
		return cmp.Diff(want, got)
	}).WithTimeout(30*time.Second).Should(BeEmpty(), "gauges after the addon recovered (-want +got)")
}

// TestStateCollectorBeforeCacheStart checks that a scrape before the cache starts succeeds,
// without state gauges, instead of failing the whole scrape.
func TestStateCollectorBeforeCacheStart(t *testing.T) {
	c, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewStateCollector(c))
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("scrape failed: %v", err)
	}
	if len(families) != 0 {
		t.Errorf("scrape before the cache started has %d metric families, want none", len(families))
	}
}
