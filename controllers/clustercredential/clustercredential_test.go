package clustercredential

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cluster-api/util/conditions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// TestCredentialPerCluster: each opted-in Cluster gets one restricted, expiring credential with
// only the configured roles; the workload holds it, never the project user's password; a
// Cluster that opts out gets none; a workload cluster that is not there yet is waited for.
func TestCredentialPerCluster(t *testing.T) {
	f := newFixture(t, csv1alpha1.ApplicationCredentials{Enabled: true,
		ApplicationCredentialSettings: csv1alpha1.ApplicationCredentialSettings{Roles: []string{"member"}, Lifetime: dur(2 * time.Hour)}})
	a := f.createCluster("a", true, nil)
	b := f.createCluster("b", false, nil)
	c := f.createCluster("c", false, map[string]string{csv1alpha1.ApplicationCredentialsAnnotation: "disabled"})
	start := time.Now()
	f.startManager(0)

	occA := f.waitFor("a", 30*time.Second, "Cluster a's credential in its workload cluster", ready)
	occB := f.waitFor("b", 30*time.Second, "Cluster b waiting for its workload cluster", func(o *infrav1.OpenStackClusterCredential) bool {
		r := conditions.Get(o, csv1alpha1.ReadyCondition)
		return o != nil && o.Status.Current != nil && r != nil && r.Reason == infrav1.WaitingForClusterReason
	})
	time.Sleep(time.Second)
	if f.credential("c") != nil {
		t.Error("Cluster c opted out by annotation and got an OpenStackClusterCredential")
	}
	if got := f.ofCluster(c); len(got) != 0 {
		t.Errorf("Cluster c opted out and has credentials %+v", got)
	}

	for _, tc := range []struct {
		cluster string
		occ     *infrav1.OpenStackClusterCredential
		uid     types.UID
	}{{"a", occA, a.UID}, {"b", occB, b.UID}} {
		var list []openstackdouble.ApplicationCredentialInfo
		for _, ac := range f.cloud.ApplicationCredentials() {
			if strings.Contains(ac.Name, string(tc.uid)) {
				list = append(list, ac)
			}
		}
		if len(list) != 1 {
			t.Fatalf("Cluster %s has %d credentials, want 1: %+v", tc.cluster, len(list), list)
		}
		ac := list[0]
		if ac.ID != tc.occ.Status.Current.ID || !slices.Equal(ac.Roles, []string{"member"}) || ac.Unrestricted || ac.Project != openstackdouble.DefaultProject {
			t.Errorf("Cluster %s: credential %+v, status %+v", tc.cluster, ac, tc.occ.Status.Current)
		}
		if ac.ExpiresAt == nil || ac.ExpiresAt.Before(start.Add(2*time.Hour-time.Minute)) || ac.ExpiresAt.After(time.Now().Add(2*time.Hour+time.Minute)) {
			t.Errorf("Cluster %s: credential expires at %v, want in 2h", tc.cluster, ac.ExpiresAt)
		}
	}
	if n := len(f.cloud.ApplicationCredentials()); n != 2 {
		t.Errorf("the double holds %d credentials, want 2", n)
	}
	id, err := f.workloadLogin(t.Context())
	if err != nil || id != occA.Status.Current.ID {
		t.Errorf("workload login with %s (want %s): %v", id, occA.Status.Current.ID, err)
	}
	mgmtSecret := &corev1.Secret{}
	if err := mgmt.Client.Get(t.Context(), types.NamespacedName{Namespace: f.ns, Name: ManagementSecretName("a")}, mgmtSecret); err != nil {
		t.Fatal(err)
	}
	if owner := metav1.GetControllerOf(mgmtSecret); owner == nil || owner.UID != occA.UID {
		t.Errorf("the management Secret is owned by %+v", owner)
	}
	assertNoOperatorCredentials(t)

	// The API refuses settings that would rotate at once or revoke after expiry.
	bad := &csv1alpha1.ClusterStack{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "bad"},
		Spec: csv1alpha1.ClusterStackSpec{Provider: "openstack", Name: "scs", KubernetesVersion: "1.33", NoProvider: true,
			ApplicationCredentials: &csv1alpha1.ApplicationCredentials{Enabled: true, ApplicationCredentialSettings: csv1alpha1.ApplicationCredentialSettings{
				Lifetime: dur(time.Hour), RotateBefore: dur(2 * time.Hour)}}}}
	if err := mgmt.Client.Create(t.Context(), bad); err == nil || !strings.Contains(err.Error(), "rotateBefore must be shorter than lifetime") {
		t.Errorf("rotateBefore beyond lifetime: %v", err)
	}
	bad.Spec.ApplicationCredentials.ApplicationCredentialSettings = csv1alpha1.ApplicationCredentialSettings{RotateBefore: dur(time.Hour), RevokeAfter: dur(time.Hour)}
	if err := mgmt.Client.Create(t.Context(), bad); err == nil || !strings.Contains(err.Error(), "revokeAfter must be shorter than rotateBefore") {
		t.Errorf("revokeAfter beyond rotateBefore: %v", err)
	}
}

// TestRotationWithoutGap rotates twice while a reader polls the workload Secrets and logs in
// with what it reads: every read must log in. It also counts the Keystone calls of a rotation.
func TestRotationWithoutGap(t *testing.T) {
	f := newFixture(t, csv1alpha1.ApplicationCredentials{Enabled: true, ApplicationCredentialSettings: csv1alpha1.ApplicationCredentialSettings{
		Lifetime: dur(time.Minute), RotateBefore: dur(50 * time.Second), RevokeAfter: dur(2 * time.Second)}})
	a := f.createCluster("a", true, nil)
	f.startManager(0)
	f.waitFor("a", 30*time.Second, "the first credential", ready)

	ctx, stopReader := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	polls, seen, failures := 0, map[string]bool{}, []string{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			id, err := f.workloadLogin(ctx)
			mu.Lock()
			polls++
			seen[id] = true
			if err != nil && ctx.Err() == nil {
				failures = append(failures, time.Now().Format("15:04:05.000")+" "+err.Error())
			}
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()

	steady := func(serial int64) func(*infrav1.OpenStackClusterCredential) bool {
		return func(o *infrav1.OpenStackClusterCredential) bool {
			return ready(o) && o.Status.Serial == serial && o.Status.Previous == nil
		}
	}
	f.waitFor("a", 45*time.Second, "the first rotation and revocation", steady(2))
	opsBefore, callsBefore := f.proxy.opCounts(), f.cloud.CallCounts()
	occ := f.waitFor("a", 45*time.Second, "the second rotation and revocation", steady(3))
	opsAfter, callsAfter := f.proxy.opCounts(), f.cloud.CallCounts()
	stopReader()
	wg.Wait()

	if len(failures) > 0 {
		t.Errorf("%d of %d reads of the workload Secrets did not log in:\n%s", len(failures), polls, strings.Join(failures, "\n"))
	}
	if polls < 50 || len(seen) < 3 {
		t.Errorf("the reader made %d reads and saw %d credentials; want at least 50 reads and 3 credentials", polls, len(seen))
	}
	if got := f.ofCluster(a); len(got) != 1 || got[0].ID != occ.Status.Current.ID {
		t.Errorf("after two rotations Keystone holds %+v, want only %s", got, occ.Status.Current.ID)
	}
	per := map[string]int{}
	for op, n := range opsAfter {
		per[op] = n - opsBefore[op]
	}
	if per["list"] != 1 || per["create"] != 1 || per["delete"] != 1 || len(per) != 3 {
		t.Errorf("Keystone calls of one rotation %v, want list 1, create 1, delete 1", per)
	}
	for _, ep := range []string{openstackdouble.CallListApplicationCredentials, openstackdouble.CallCreateApplicationCredential, openstackdouble.CallDeleteApplicationCredential} {
		if d := callsAfter[ep] - callsBefore[ep]; d != 1 {
			t.Errorf("the double saw %d calls of %s in one rotation, want 1", d, ep)
		}
	}
	t.Logf("Keystone calls per Cluster per rotation: %v; reader: %d reads, %d credentials seen", per, polls, len(seen))
	assertNoOperatorCredentials(t)
}

// TestRevocation: a deleted Cluster's credentials are revoked and its records removed; a Cluster
// that opts out by annotation loses its credential too.
func TestRevocation(t *testing.T) {
	f := newFixture(t, csv1alpha1.ApplicationCredentials{Enabled: true})
	a := f.createCluster("a", true, nil)
	b := f.createCluster("b", false, nil)
	f.startManager(0)
	f.waitFor("a", 30*time.Second, "Cluster a's credential", ready)
	f.waitFor("b", 30*time.Second, "Cluster b's credential", func(o *infrav1.OpenStackClusterCredential) bool { return o != nil && o.Status.Current != nil })
	if len(f.ofCluster(a)) != 1 || len(f.ofCluster(b)) != 1 {
		t.Fatalf("credentials %+v", f.cloud.ApplicationCredentials())
	}

	if err := mgmt.Client.Delete(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	f.waitFor("a", 30*time.Second, "the OpenStackClusterCredential of the deleted Cluster to go", func(o *infrav1.OpenStackClusterCredential) bool { return o == nil })
	if got := f.ofCluster(a); len(got) != 0 {
		t.Errorf("the deleted Cluster's credentials are still in Keystone: %+v", got)
	}
	err := mgmt.Client.Get(t.Context(), types.NamespacedName{Namespace: f.ns, Name: ManagementSecretName("a")}, &corev1.Secret{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("the management Secret of the deleted Cluster: %v, want not found", err)
	}

	base := b.DeepCopy()
	b.Annotations = map[string]string{csv1alpha1.ApplicationCredentialsAnnotation: "disabled"}
	if err := mgmt.Client.Patch(t.Context(), b, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
	f.waitFor("b", 30*time.Second, "the OpenStackClusterCredential of the opted-out Cluster to go", func(o *infrav1.OpenStackClusterCredential) bool { return o == nil })
	if got := f.ofCluster(b); len(got) != 0 {
		t.Errorf("the opted-out Cluster's credentials are still in Keystone: %+v", got)
	}
	if n := len(f.cloud.ApplicationCredentials()); n != 0 {
		t.Errorf("%d credentials left", n)
	}
}

// TestNoLeakAfterKill kills the manager right after each Keystone call of a Cluster's life
// (first credential, a rotation by a roles change, deletion), restarts it and checks that
// Keystone holds exactly the credential the status records (none after the deletion) and that
// the workload logs in with it.
func TestNoLeakAfterKill(t *testing.T) {
	roles := []string{"member", "reader"}
	// Keystone calls of the scenario: list and create (first credential); list, create and, after
	// revokeAfter, delete (rotation); delete and list (deletion).
	const calls = 7
	for k := 1; k <= calls; k++ {
		t.Run("after call "+string(rune('0'+k)), func(t *testing.T) {
			f := newFixture(t, csv1alpha1.ApplicationCredentials{Enabled: true, ApplicationCredentialSettings: csv1alpha1.ApplicationCredentialSettings{
				Roles: []string{"member"}, RevokeAfter: dur(500 * time.Millisecond)}})
			a := f.createCluster("a", true, nil)
			stop := f.startManager(k)
			killed := f.proxy.wasKilled

			rolesChanged := func(o *infrav1.OpenStackClusterCredential) bool {
				return ready(o) && o.Status.Previous == nil && slices.Equal(o.Status.Current.Roles, roles)
			}
			// steps runs the scenario from phase on until killed reports true; it returns whether
			// it was, and the phase it was in.
			steps := func(phase int, killed func() bool) (int, bool) {
				if phase <= 1 {
					if _, k := f.waitUnless("a", 30*time.Second, "the first credential", ready, killed); k {
						return 1, true
					}
				}
				if phase <= 2 {
					stack := &csv1alpha1.ClusterStack{}
					if err := mgmt.Client.Get(t.Context(), client.ObjectKeyFromObject(f.stack), stack); err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(stack.Spec.ApplicationCredentials.Roles, roles) {
						base := stack.DeepCopy()
						stack.Spec.ApplicationCredentials.Roles = roles
						if err := mgmt.Client.Patch(t.Context(), stack, client.MergeFrom(base)); err != nil {
							t.Fatal(err)
						}
					}
					occ, k := f.waitUnless("a", 30*time.Second, "the rotation to the new roles", rolesChanged, killed)
					if k {
						return 2, true
					}
					if got := f.ofCluster(a); len(got) != 1 || got[0].ID != occ.Status.Current.ID {
						t.Errorf("Keystone holds %+v, want only the current %s", got, occ.Status.Current.ID)
					}
					if id, err := f.workloadLogin(t.Context()); err != nil || id != occ.Status.Current.ID {
						t.Errorf("workload login with %s (want %s): %v", id, occ.Status.Current.ID, err)
					}
				}
				if err := mgmt.Client.Delete(t.Context(), a); err != nil && !apierrors.IsNotFound(err) {
					t.Fatal(err)
				}
				_, k := f.waitUnless("a", 30*time.Second, "the deletion", func(o *infrav1.OpenStackClusterCredential) bool { return o == nil }, killed)
				return 3, k
			}
			phase, wasKilled := steps(1, killed)
			if !wasKilled {
				t.Fatalf("the scenario made fewer than %d Keystone calls", k)
			}
			stop()
			f.startManager(0)
			steps(phase, func() bool { return false })
			if got := f.ofCluster(a); len(got) != 0 {
				t.Errorf("after the deletion Keystone still holds %+v", got)
			}
		})
	}
	assertNoOperatorCredentials(t)
}

// TestKeystoneFaults: an unavailable Keystone makes the credential Reconciling until it
// answers; a role the user lacks stalls it with what to change, until the roles are changed.
func TestKeystoneFaults(t *testing.T) {
	f := newFixture(t, csv1alpha1.ApplicationCredentials{Enabled: true, ApplicationCredentialSettings: csv1alpha1.ApplicationCredentialSettings{Roles: []string{"admin"}}})
	fault := f.cloud.InjectFault(openstackdouble.Fault{Method: "POST", Path: "/v3/users/{user_id}/application_credentials", Status: 503, Times: 2})
	f.createCluster("a", true, nil)
	f.startManager(0)
	f.waitFor("a", 30*time.Second, "Reconciling while Keystone is unavailable", func(o *infrav1.OpenStackClusterCredential) bool {
		c := conditions.Get(o, csv1alpha1.ReconcilingCondition)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == infrav1.CloudUnavailableReason
	})
	occ := f.waitFor("a", 30*time.Second, "Stalled on the role the user lacks", func(o *infrav1.OpenStackClusterCredential) bool {
		c := conditions.Get(o, csv1alpha1.StalledCondition)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == infrav1.CredentialRefusedReason
	})
	if fault.Hits() != 2 {
		t.Errorf("the fault answered %d calls, want 2", fault.Hits())
	}
	if msg := conditions.Get(occ, csv1alpha1.StalledCondition).Message; !strings.Contains(msg, "[admin]") || !strings.Contains(msg, "spec.applicationCredentials.roles") {
		t.Errorf("the stall message does not say what to change: %s", msg)
	}
	if n := len(f.cloud.ApplicationCredentials()); n != 0 {
		t.Errorf("%d credentials exist after refusals", n)
	}
	stack := &csv1alpha1.ClusterStack{}
	if err := mgmt.Client.Get(t.Context(), client.ObjectKeyFromObject(f.stack), stack); err != nil {
		t.Fatal(err)
	}
	base := stack.DeepCopy()
	stack.Spec.ApplicationCredentials.Roles = []string{"member"}
	if err := mgmt.Client.Patch(t.Context(), stack, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
	f.waitFor("a", 30*time.Second, "the credential once the roles are fixed", ready)
}
