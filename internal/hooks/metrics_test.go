package hooks

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	runtimehooksv1 "sigs.k8s.io/cluster-api/api/runtime/hooks/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon"
)

const class = "openstack-scs-1-32-v1"

// installedAddon creates the ClusterAddon of cluster with the addons of class installed.
func installedAddon(t *testing.T, ns, cluster string) {
	t.Helper()
	ctx := context.Background()
	ca := &csv1alpha1.ClusterAddon{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: addon.ClusterAddonName(cluster)},
		Spec: csv1alpha1.ClusterAddonSpec{
			ClusterStack: class, Version: "v1",
			ClusterRef: &corev1.ObjectReference{APIVersion: clusterv1.GroupVersion.String(), Kind: "Cluster", Name: cluster, Namespace: ns},
		},
	}
	if err := env.Client.Create(ctx, ca); err != nil {
		t.Fatal(err)
	}
	ca.Status.Ready = true
	if err := env.Client.Status().Update(ctx, ca); err != nil {
		t.Fatal(err)
	}
}

// TestHookMetrics calls the handlers as Cluster API does and checks what they record: every
// answer by hook, and how long each Cluster has been held back, from its first blocking answer
// until it is let go or no longer asked about.
func TestHookMetrics(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "hooks-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := newRecorder(func() time.Time { return now })
	h := &Handlers{Reader: env.Client, Writer: env.Client, metrics: rec}
	// A reader whose scheme lacks ClusterAddon: every read fails.
	broken, err := client.New(env.Config, client.Options{Scheme: runtime.NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	failing := &Handlers{Reader: broken, Writer: broken, metrics: rec}

	cluster := func(name, class string) clusterv1.Cluster {
		return clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name}, Spec: clusterv1.ClusterSpec{Topology: clusterv1.Topology{ClassRef: clusterv1.ClusterClassRef{Name: class}}}}
	}
	before := func(h *Handlers, c clusterv1.Cluster) *runtimehooksv1.CommonRetryResponse {
		resp := &runtimehooksv1.BeforeClusterUpgradeResponse{}
		h.BeforeClusterUpgrade(ctx, &runtimehooksv1.BeforeClusterUpgradeRequest{Cluster: c}, resp)
		return &resp.CommonRetryResponse
	}
	after := func(h *Handlers, c clusterv1.Cluster) *runtimehooksv1.CommonRetryResponse {
		resp := &runtimehooksv1.AfterClusterUpgradeResponse{}
		h.AfterClusterUpgrade(ctx, &runtimehooksv1.AfterClusterUpgradeRequest{Cluster: c}, resp)
		return &resp.CommonRetryResponse
	}
	a, b, other := cluster("a", class), cluster("b", class), cluster("other", "someone-elses-class")

	steps := []struct {
		name string
		// advance moves the clock before the call.
		advance time.Duration
		call    func() *runtimehooksv1.CommonRetryResponse
		// wantBlocking is the response's retryAfterSeconds > 0; wantFailure its Failure status.
		wantBlocking, wantFailure bool
		// wantHeld is the blocking gauge after the call: "hook/cluster" -> seconds.
		wantHeld map[string]float64
	}{
		{name: "a has no ClusterAddon yet", call: func() *runtimehooksv1.CommonRetryResponse { return before(h, a) },
			wantBlocking: true, wantHeld: map[string]float64{"BeforeClusterUpgrade/a": 0}},
		{name: "a asked again a minute later", advance: time.Minute, call: func() *runtimehooksv1.CommonRetryResponse { return before(h, a) },
			wantBlocking: true, wantHeld: map[string]float64{"BeforeClusterUpgrade/a": 60}},
		{name: "b's next upgrade is held", call: func() *runtimehooksv1.CommonRetryResponse { return after(h, b) },
			wantBlocking: true, wantHeld: map[string]float64{"BeforeClusterUpgrade/a": 60, "AfterClusterUpgrade/b": 0}},
		{name: "another class is never held", advance: 30 * time.Second, call: func() *runtimehooksv1.CommonRetryResponse { return before(h, other) },
			wantHeld: map[string]float64{"BeforeClusterUpgrade/a": 90, "AfterClusterUpgrade/b": 30}},
		{name: "a read fails: b's block goes on", call: func() *runtimehooksv1.CommonRetryResponse { return after(failing, b) },
			wantFailure: true, wantHeld: map[string]float64{"BeforeClusterUpgrade/a": 90, "AfterClusterUpgrade/b": 30}},
		{name: "a's addons are installed: a is let go", call: func() *runtimehooksv1.CommonRetryResponse {
			installedAddon(t, ns.Name, "a")
			return before(h, a)
		}, wantHeld: map[string]float64{"AfterClusterUpgrade/b": 30}},
		{name: "b is not asked about any more: its block is forgotten", advance: blockForget + time.Second, call: func() *runtimehooksv1.CommonRetryResponse { return before(h, a) },
			wantHeld: map[string]float64{}},
		{name: "b asked again later: a new block starts", call: func() *runtimehooksv1.CommonRetryResponse { return after(h, b) },
			wantBlocking: true, wantHeld: map[string]float64{"AfterClusterUpgrade/b": 0}},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		resp := s.call()
		if got := resp.GetRetryAfterSeconds() > 0; got != s.wantBlocking {
			t.Errorf("%s: retryAfterSeconds %d, want blocking %t (%s)", s.name, resp.GetRetryAfterSeconds(), s.wantBlocking, resp.GetMessage())
		}
		if got := resp.GetStatus() == runtimehooksv1.ResponseStatusFailure; got != s.wantFailure {
			t.Errorf("%s: status %s, want failure %t", s.name, resp.GetStatus(), s.wantFailure)
		}
		var want strings.Builder
		want.WriteString("# HELP clusterstack_hook_blocking_seconds How long the runtime extension has been answering a hook of a Cluster with retryAfterSeconds, since its first blocking answer in this replica.\n# TYPE clusterstack_hook_blocking_seconds gauge\n")
		for key, v := range s.wantHeld {
			hook, name, _ := strings.Cut(key, "/")
			fmt.Fprintf(&want, "clusterstack_hook_blocking_seconds{cluster=%q,hook=%q,namespace=%q} %v\n", name, hook, ns.Name, v)
		}
		if len(s.wantHeld) == 0 {
			want.Reset()
		}
		if err := testutil.CollectAndCompare(rec.blocking, strings.NewReader(want.String())); err != nil {
			t.Errorf("%s: %v", s.name, err)
		}
	}

	// AfterControlPlaneInitialized never blocks.
	h.AfterControlPlaneInitialized(ctx, &runtimehooksv1.AfterControlPlaneInitializedRequest{Cluster: b}, &runtimehooksv1.AfterControlPlaneInitializedResponse{})

	for _, c := range []struct {
		hook, answer string
		want         float64
	}{
		{"BeforeClusterUpgrade", answerBlocking, 2},
		{"BeforeClusterUpgrade", answerDone, 3},
		{"BeforeClusterUpgrade", answerFailure, 0},
		{"AfterClusterUpgrade", answerBlocking, 2},
		{"AfterClusterUpgrade", answerFailure, 1},
		{"AfterClusterUpgrade", answerDone, 0},
		{"AfterControlPlaneInitialized", answerDone, 1},
	} {
		if got := testutil.ToFloat64(rec.calls.WithLabelValues(c.hook, c.answer)); got != c.want {
			t.Errorf("clusterstack_hook_calls_total{hook=%q,answer=%q} = %v, want %v", c.hook, c.answer, got, c.want)
		}
	}
}
