package reconciler_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/cluster-api/util/conditions"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/kstatus"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/reconciler"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

var env *testenv.Environment

func TestMain(m *testing.M) {
	testenv.Main(m, func(s *testenv.Suite) (err error) {
		env, err = s.Start(testenv.Options{})
		return err
	})
}

const finalizer = "test.clusterstack.x-k8s.io/skeleton"

// fixture is a ClusterStack kind whose single step returns what the test sets in next.
type fixture struct {
	kind     *reconciler.Kind[*csv1alpha1.ClusterStack, error]
	recorder *events.FakeRecorder
	next     error
	calls    int
	gone     []types.NamespacedName
	persist  bool
}

func newFixture() *fixture {
	f := &fixture{recorder: events.NewFakeRecorder(10)}
	step := func(ctx context.Context, cs *csv1alpha1.ClusterStack) error {
		f.calls++
		if f.persist {
			cs.Status.Conditions = append(cs.Status.Conditions, metav1.Condition{Type: "Persisted", Status: metav1.ConditionTrue, Reason: "Step", LastTransitionTime: metav1.Now()})
			if err := reconciler.Persist(ctx); err != nil {
				return err
			}
		}
		return f.next
	}
	f.kind = &reconciler.Kind[*csv1alpha1.ClusterStack, error]{
		Name:      "ClusterStack",
		New:       func() *csv1alpha1.ClusterStack { return &csv1alpha1.ClusterStack{} },
		Reader:    env.Client,
		Client:    env.Client,
		Finalizer: finalizer,
		Normal:    step,
		Delete:    step,
		Status: func(cs *csv1alpha1.ClusterStack, err error) (ctrl.Result, error) {
			kstatus.Summarise(cs, err, csv1alpha1.ReadyReason, "done")
			return outcome.Result(ctrl.Result{}, err)
		},
		Conditions: []string{"Persisted"},
		Gone:       func(k types.NamespacedName) { f.gone = append(f.gone, k) },
		Recorder:   f.recorder,
	}
	return f
}

func newStack(t *testing.T) *csv1alpha1.ClusterStack {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "skeleton-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	cs := &csv1alpha1.ClusterStack{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "scs"},
		Spec:       csv1alpha1.ClusterStackSpec{Provider: "openstack", Name: "scs", KubernetesVersion: "1.32", NoProvider: true},
	}
	if err := env.Client.Create(ctx, cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

func (f *fixture) reconcile(t *testing.T, cs *csv1alpha1.ClusterStack) (ctrl.Result, error, *csv1alpha1.ClusterStack) {
	t.Helper()
	res, err := f.kind.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(cs)})
	got := &csv1alpha1.ClusterStack{}
	if gerr := env.Client.Get(context.Background(), client.ObjectKeyFromObject(cs), got); gerr != nil {
		t.Fatal(gerr)
	}
	return res, err, got
}

func (f *fixture) events() []string {
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestOutcomesBecomeStatus(t *testing.T) {
	t.Parallel()
	boom := errors.New("registry down")
	for name, tc := range map[string]struct {
		step         error
		wantResult   ctrl.Result
		wantErr      error
		wantReady    metav1.ConditionStatus
		wantStalled  bool
		wantObserved bool
		wantEvents   int
	}{
		"done":      {wantReady: metav1.ConditionTrue, wantObserved: true},
		"stalled":   {step: outcome.StallRetry("InvalidRelease", time.Minute, "fix the release"), wantResult: ctrl.Result{RequeueAfter: time.Minute}, wantReady: metav1.ConditionFalse, wantStalled: true, wantObserved: true, wantEvents: 1},
		"waiting":   {step: outcome.Wait("WaitingForImages", 30*time.Second, "images"), wantResult: ctrl.Result{RequeueAfter: 30 * time.Second}, wantReady: metav1.ConditionFalse, wantObserved: true},
		"transient": {step: outcome.Retry(csv1alpha1.ReleaseSourceErrorReason, boom), wantErr: boom, wantReady: metav1.ConditionFalse},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture()
			f.next = tc.step
			cs := newStack(t)
			res, err, got := f.reconcile(t, cs)
			if res != tc.wantResult {
				t.Errorf("result = %+v, want %+v", res, tc.wantResult)
			}
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Errorf("error = %v, want %v", err, tc.wantErr)
			}
			if c := conditions.Get(got, csv1alpha1.ReadyCondition); c == nil || c.Status != tc.wantReady {
				t.Errorf("Ready = %+v, want status %s", c, tc.wantReady)
			}
			if s := conditions.IsTrue(got, csv1alpha1.StalledCondition); s != tc.wantStalled {
				t.Errorf("Stalled = %v, want %v", s, tc.wantStalled)
			}
			if observed := got.Status.ObservedGeneration == got.Generation; observed != tc.wantObserved {
				t.Errorf("observedGeneration %d of generation %d: observed = %v, want %v", got.Status.ObservedGeneration, got.Generation, observed, tc.wantObserved)
			}
			if len(got.Finalizers) != 1 || got.Finalizers[0] != finalizer {
				t.Errorf("finalizers = %v, want [%s]", got.Finalizers, finalizer)
			}
			if ev := f.events(); len(ev) != tc.wantEvents {
				t.Errorf("events = %q, want %d", ev, tc.wantEvents)
			}
			// The same outcome again is no news: no second event.
			_, _, _ = f.reconcile(t, cs)
			if ev := f.events(); len(ev) != 0 {
				t.Errorf("events of a repeated outcome = %q, want none", ev)
			}
		})
	}
}

func TestStallEventOnNewMessage(t *testing.T) {
	t.Parallel()
	f := newFixture()
	cs := newStack(t)
	f.next = outcome.Stall("InvalidRelease", "first problem")
	f.reconcile(t, cs)
	f.next = outcome.Stall("InvalidRelease", "second problem")
	f.reconcile(t, cs)
	want := []string{"Warning InvalidRelease first problem", "Warning InvalidRelease second problem"}
	if got := f.events(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events = %q, want %q", got, want)
	}
}

func TestPaused(t *testing.T) {
	t.Parallel()
	f := newFixture()
	cs := newStack(t)
	ctx := context.Background()
	cs.Annotations = map[string]string{"cluster.x-k8s.io/paused": ""}
	if err := env.Client.Update(ctx, cs); err != nil {
		t.Fatal(err)
	}
	_, err, got := f.reconcile(t, cs)
	if err != nil || f.calls != 0 {
		t.Fatalf("a paused object: error %v, steps run %d times; want no error and no step", err, f.calls)
	}
	if !conditions.IsTrue(got, csv1alpha1.PausedCondition) {
		t.Fatalf("Paused = %+v, want True", conditions.Get(got, csv1alpha1.PausedCondition))
	}
	got.Annotations = nil
	if err := env.Client.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	_, err, got = f.reconcile(t, got)
	if err != nil || f.calls != 1 {
		t.Fatalf("after unpausing: error %v, steps run %d times; want no error and one step", err, f.calls)
	}
	if c := conditions.Get(got, csv1alpha1.PausedCondition); c != nil {
		t.Errorf("Paused = %+v after unpausing, want none", c)
	}
	if !conditions.IsTrue(got, csv1alpha1.ReadyCondition) {
		t.Errorf("Ready = %+v, want True", conditions.Get(got, csv1alpha1.ReadyCondition))
	}
}

func TestPersistWritesBeforeTheStepEnds(t *testing.T) {
	t.Parallel()
	f := newFixture()
	f.persist = true
	f.next = errors.New("the step fails after persisting")
	cs := newStack(t)
	_, err, got := f.reconcile(t, cs)
	if err == nil {
		t.Fatal("want the step's error")
	}
	if !conditions.IsTrue(got, "Persisted") {
		t.Errorf("the persisted condition was not written: %+v", got.Status.Conditions)
	}
}

// TestForeignConditionsAreDropped: conditions of types the kind does not set (the SCS
// reference's, after a migration) are removed when the status is written; the kind's own stay.
func TestForeignConditionsAreDropped(t *testing.T) {
	t.Parallel()
	f := newFixture()
	f.persist = true
	cs := newStack(t)
	ctx := context.Background()
	cs.Status.Conditions = []metav1.Condition{
		{Type: "HelmChartApplied", Status: metav1.ConditionFalse, Reason: "FailedToApplyObjects", LastTransitionTime: metav1.Now()},
		{Type: "GitAPIAvailable", Status: metav1.ConditionTrue, Reason: "Available", LastTransitionTime: metav1.Now()},
	}
	if err := env.Client.Status().Update(ctx, cs); err != nil {
		t.Fatal(err)
	}
	_, err, got := f.reconcile(t, cs)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, c := range got.Status.Conditions {
		types = append(types, c.Type)
	}
	slices.Sort(types)
	if want := []string{"Persisted", csv1alpha1.ReadyCondition, csv1alpha1.ReconcilingCondition, csv1alpha1.StalledCondition}; !slices.Equal(types, want) {
		t.Errorf("condition types = %v, want %v", types, want)
	}
}

func TestGoneAndDelete(t *testing.T) {
	t.Parallel()
	f := newFixture()
	cs := newStack(t)
	ctx := context.Background()
	f.reconcile(t, cs)
	if err := env.Client.Delete(ctx, cs); err != nil {
		t.Fatal(err)
	}
	// The finalizer holds the object; the delete step runs and its outcome is the status.
	f.next = outcome.Wait(csv1alpha1.DeletingReason, 5*time.Second, "waiting for releases")
	res, err, got := f.reconcile(t, cs)
	if err != nil || res.RequeueAfter != 5*time.Second || conditions.GetReason(got, csv1alpha1.ReadyCondition) != csv1alpha1.DeletingReason {
		t.Fatalf("delete step: result %+v, error %v, Ready %+v", res, err, conditions.Get(got, csv1alpha1.ReadyCondition))
	}
	got.Finalizers = nil
	if err := env.Client.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, err := f.kind.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(cs)}); err != nil {
		t.Fatal(err)
	}
	if len(f.gone) != 1 || f.gone[0] != client.ObjectKeyFromObject(cs) {
		t.Errorf("Gone calls = %v, want [%s]", f.gone, client.ObjectKeyFromObject(cs))
	}
}

func TestStallEventNoteFitsTheAPI(t *testing.T) {
	t.Parallel()
	f := newFixture()
	cs := newStack(t)
	f.next = outcome.Stall("InvalidRelease", "%s", strings.Repeat("template frame; ", 250)+"innermost cause")
	f.reconcile(t, cs)
	ev := f.events()
	if len(ev) != 1 {
		t.Fatalf("events = %d, want 1", len(ev))
	}
	note := strings.TrimPrefix(ev[0], "Warning InvalidRelease ")
	if len(note) > kstatus.MaxEventNoteBytes || !strings.HasSuffix(note, "innermost cause") {
		t.Errorf("event note of %d bytes (limit %d), ends %q", len(note), kstatus.MaxEventNoteBytes, note[len(note)-20:])
	}
}

// TestFailureEvents retries failures the way controllers do (backoff, a new message each time)
// and counts the Warning events: one when Reconciling turns to a failure reason, none while the
// same failure repeats (even with a new message), none for a wait or a failure reported by no
// condition, one again for a new failure reason or a failure after recovery.
func TestFailureEvents(t *testing.T) {
	t.Parallel()
	f := newFixture()
	f.kind.FailureReasons = []string{csv1alpha1.ReleaseSourceErrorReason, csv1alpha1.ApplyFailedReason}
	cs := newStack(t)
	boom := func(i int) error { return fmt.Errorf("registry down (attempt %d)", i) }
	for _, step := range []struct {
		name string
		next error
		want []string
	}{
		{name: "a wait is no failure", next: outcome.Wait("WaitingForImages", time.Second, "images")},
		{name: "first failure", next: outcome.Retry(csv1alpha1.ReleaseSourceErrorReason, boom(1)), want: []string{"Warning ReleaseSourceError registry down (attempt 1)"}},
		{name: "the same failure, new message", next: outcome.Retry(csv1alpha1.ReleaseSourceErrorReason, boom(2))},
		{name: "a failure with no condition is no news", next: errors.New("conflict")},
		{name: "the same failure again", next: outcome.Retry(csv1alpha1.ReleaseSourceErrorReason, boom(3))},
		{name: "another failure", next: outcome.Retry(csv1alpha1.ApplyFailedReason, errors.New("apply refused")), want: []string{"Warning ApplyFailed apply refused"}},
		{name: "a reason that is not a failure", next: outcome.Retry(csv1alpha1.ProgressingReason, errors.New("rendering"))},
		{name: "recovered", next: nil},
		{name: "failing after recovery", next: outcome.Retry(csv1alpha1.ReleaseSourceErrorReason, boom(4)), want: []string{"Warning ReleaseSourceError registry down (attempt 4)"}},
	} {
		f.next = step.next
		f.reconcile(t, cs)
		if got := f.events(); fmt.Sprint(got) != fmt.Sprint(step.want) {
			t.Errorf("%s: events = %q, want %q", step.name, got, step.want)
		}
	}

	// An outage retried many times costs one event, however often its message changes.
	f.next = outcome.Retry(csv1alpha1.ApplyFailedReason, errors.New("start"))
	f.reconcile(t, cs)
	f.events()
	for i := range 20 {
		f.next = outcome.Retry(csv1alpha1.ApplyFailedReason, fmt.Errorf("apply refused, retry %d", i))
		f.reconcile(t, cs)
	}
	if got := f.events(); len(got) != 0 {
		t.Errorf("20 retries of one failure: %d events (%q), want none", len(got), got)
	}
}

// countingClient counts the patches of the object and of its status.
type countingClient struct {
	client.Client
	patches, statusPatches atomic.Int32
}

func (c *countingClient) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
	c.patches.Add(1)
	return c.Client.Patch(ctx, obj, p, opts...)
}

func (c *countingClient) Status() client.SubResourceWriter {
	return countingStatus{SubResourceWriter: c.Client.Status(), c: c}
}

type countingStatus struct {
	client.SubResourceWriter
	c *countingClient
}

func (s countingStatus) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
	s.c.statusPatches.Add(1)
	return s.SubResourceWriter.Patch(ctx, obj, p, opts...)
}

// TestOneStatusWritePerReconcile: conditions and the other status fields that one reconcile
// changed are one status write (Cluster API's patch helper makes it two, and a watcher sees the
// first without the second); a reconcile that changes nothing writes nothing.
func TestOneStatusWritePerReconcile(t *testing.T) {
	t.Parallel()
	f := newFixture()
	c := &countingClient{Client: env.Client}
	f.kind.Client = c
	f.kind.Normal = func(_ context.Context, cs *csv1alpha1.ClusterStack) error {
		cs.Status.UsableVersions = "v1"
		return nil
	}
	cs := newStack(t)
	_, err, got := f.reconcile(t, cs)
	if err != nil {
		t.Fatal(err)
	}
	if !conditions.IsTrue(got, csv1alpha1.ReadyCondition) || got.Status.UsableVersions != "v1" || got.Status.ObservedGeneration != got.Generation {
		t.Fatalf("status not written: %+v", got.Status)
	}
	if n := c.statusPatches.Load(); n != 1 {
		t.Errorf("status writes of a reconcile that set conditions and usableVersions: %d, want 1", n)
	}
	if n := c.patches.Load(); n != 1 {
		t.Errorf("object patches: %d, want 1 (the finalizer)", n)
	}
	c.statusPatches.Store(0)
	c.patches.Store(0)
	if _, err, _ := f.reconcile(t, cs); err != nil {
		t.Fatal(err)
	}
	if p, s := c.patches.Load(), c.statusPatches.Load(); p != 0 || s != 0 {
		t.Errorf("a converged reconcile wrote %d patches and %d status patches, want none", p, s)
	}
}
