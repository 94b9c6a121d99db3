package clustercredential

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cluster-api/util/conditions"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/appcred"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

// cloudErrors are the errors Keystone's answers with these statuses give the operator: real
// calls against the double, through the operator's clients.
func cloudErrors(t *testing.T, codes ...int) map[int]error {
	t.Helper()
	cloud, err := openstackdouble.New()
	if err != nil {
		t.Fatal(err)
	}
	defer cloud.Close()
	content, name := cloud.CloudsYAML(openstackdouble.CloudsYAMLOptions{})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "openstack"},
		Data: map[string][]byte{scope.CloudsYAMLKey: []byte(content), scope.CloudNameKey: []byte(name)}}
	ks, err := scope.NewFactory(fake.NewClientBuilder().WithObjects(secret).Build()).ApplicationCredentials(t.Context(), "ns", &infrav1.OpenStackIdentityReference{Name: "openstack"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]error{}
	for _, code := range codes {
		fault := cloud.InjectFault(openstackdouble.Fault{Method: http.MethodPost, Path: "/v3/users/{user_id}/application_credentials", Status: code})
		_, err := appcred.Create(t.Context(), ks.Client, "x", "", []string{"member"}, time.Now().Add(time.Hour))
		fault.Remove()
		if err == nil {
			t.Fatalf("HTTP %d: no error", code)
		}
		out[code] = err
	}
	return out
}

func TestSetOpenStackClusterCredentialStatus(t *testing.T) {
	errs := cloudErrors(t, http.StatusServiceUnavailable, http.StatusForbidden, http.StatusUnauthorized, http.StatusConflict)
	cloudErr := func(code int) error { return errs[code] }
	cur := &infrav1.ApplicationCredentialRef{ID: "id", Name: "cso-uid-1", ExpiresAt: metav1.NewTime(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)), Roles: []string{"member"}}
	tests := []struct {
		name        string
		rep         report
		wantReady   metav1.ConditionStatus
		wantStalled metav1.ConditionStatus
		wantReason  string
		wantRequeue time.Duration
		wantErr     bool
		wantMsg     string
	}{
		{name: "valid, next is the rotation", rep: report{current: cur, rotateIn: time.Hour}, wantReady: metav1.ConditionTrue, wantStalled: metav1.ConditionFalse, wantReason: csv1alpha1.ReadyReason, wantRequeue: time.Hour, wantMsg: "cso-uid-1"},
		{name: "valid, next is the revocation", rep: report{current: cur, rotateIn: time.Hour, revokeIn: time.Minute}, wantReady: metav1.ConditionTrue, wantStalled: metav1.ConditionFalse, wantReason: csv1alpha1.ReadyReason, wantRequeue: time.Minute},
		{name: "workload not there", rep: report{err: outcome.Wait(infrav1.WaitingForClusterReason, 15*time.Second, "waiting")}, wantReady: metav1.ConditionFalse, wantStalled: metav1.ConditionFalse, wantReason: infrav1.WaitingForClusterReason, wantRequeue: 15 * time.Second},
		{name: "Secret missing", rep: report{err: &scope.CredentialsError{Secret: types.NamespacedName{Namespace: "ns", Name: "openstack"}, Problem: "not found", Err: scope.ErrSecretNotFound}}, wantReady: metav1.ConditionFalse, wantStalled: metav1.ConditionTrue, wantReason: infrav1.InvalidCredentialsReason, wantRequeue: credentialsRetryInterval},
		{name: "Keystone down at login", rep: report{err: &scope.CredentialsError{Secret: types.NamespacedName{Namespace: "ns", Name: "openstack"}, Problem: "unavailable", Err: scope.ErrUnreachable}}, wantReady: metav1.ConditionFalse, wantStalled: metav1.ConditionFalse, wantReason: infrav1.CloudUnavailableReason, wantRequeue: defaultOutageRetry},
		// The double sends Retry-After: 1 with its 503: the cloud's wait wins.
		{name: "Keystone 503", rep: report{err: cloudErr(http.StatusServiceUnavailable)}, wantReady: metav1.ConditionFalse, wantStalled: metav1.ConditionFalse, wantReason: infrav1.CloudUnavailableReason, wantRequeue: time.Second},
		{name: "role refused", rep: report{err: cloudErr(http.StatusForbidden)}, wantReady: metav1.ConditionFalse, wantStalled: metav1.ConditionTrue, wantReason: infrav1.CredentialRefusedReason, wantRequeue: refusedRetryInterval, wantMsg: "roles [member]"},
		{name: "token refused", rep: report{err: cloudErr(http.StatusUnauthorized)}, wantReady: metav1.ConditionFalse, wantStalled: metav1.ConditionTrue, wantReason: infrav1.InvalidCredentialsReason, wantRequeue: credentialsRetryInterval},
		{name: "name conflict: backoff", rep: report{err: cloudErr(http.StatusConflict)}, wantErr: true},
		{name: "management API: backoff", rep: report{err: kubeErr(errors.New("conflict"))}, wantErr: true},
		{name: "revoked on delete", rep: report{deleting: true}, wantReady: metav1.ConditionFalse, wantStalled: metav1.ConditionFalse, wantReason: infrav1.RevokingReason},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := &infrav1.OpenStackClusterCredential{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c"},
				Spec: infrav1.OpenStackClusterCredentialSpec{ClusterName: "c", IdentityRef: &infrav1.OpenStackIdentityReference{Name: "openstack"}, Roles: []string{"member"}}}
			res, err := setOpenStackClusterCredentialStatus(obj, tt.rep)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				if len(obj.Status.Conditions) != 0 {
					t.Errorf("a backoff error set conditions %+v", obj.Status.Conditions)
				}
				return
			}
			if res.RequeueAfter != tt.wantRequeue {
				t.Errorf("requeue %s, want %s", res.RequeueAfter, tt.wantRequeue)
			}
			ready, stalled := conditions.Get(obj, csv1alpha1.ReadyCondition), conditions.Get(obj, csv1alpha1.StalledCondition)
			if ready == nil || stalled == nil {
				t.Fatalf("conditions %+v", obj.Status.Conditions)
			}
			if ready.Status != tt.wantReady || stalled.Status != tt.wantStalled || ready.Reason != tt.wantReason {
				t.Errorf("Ready %s/%s, Stalled %s; want %s/%s, %s", ready.Status, ready.Reason, stalled.Status, tt.wantReady, tt.wantReason, tt.wantStalled)
			}
			if !strings.Contains(ready.Message, tt.wantMsg) {
				t.Errorf("message %q does not contain %q", ready.Message, tt.wantMsg)
			}
		})
	}
}

func TestEffective(t *testing.T) {
	d := func(s string) *metav1.Duration { v, _ := time.ParseDuration(s); return &metav1.Duration{Duration: v} }
	tests := []struct {
		name                   string
		in                     csv1alpha1.ApplicationCredentialSettings
		lifetime, rotate, revo time.Duration
		roles                  string
	}{
		{name: "defaults", lifetime: DefaultLifetime, rotate: DefaultRotateBefore, revo: DefaultRevokeAfter, roles: "member"},
		{name: "short lifetime shrinks the defaults", in: csv1alpha1.ApplicationCredentialSettings{Lifetime: d("3h")}, lifetime: 3 * time.Hour, rotate: time.Hour, revo: 30 * time.Minute, roles: "member"},
		{name: "given, roles sorted", in: csv1alpha1.ApplicationCredentialSettings{Roles: []string{"reader", "member"}, Lifetime: d("1m"), RotateBefore: d("50s"), RevokeAfter: d("3s")}, lifetime: time.Minute, rotate: 50 * time.Second, revo: 3 * time.Second, roles: "member,reader"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Effective(tt.in)
			if got.Lifetime.Duration != tt.lifetime || got.RotateBefore.Duration != tt.rotate || got.RevokeAfter.Duration != tt.revo || strings.Join(got.Roles, ",") != tt.roles {
				t.Errorf("got %s %s %s %v", got.Lifetime, got.RotateBefore, got.RevokeAfter, got.Roles)
			}
		})
	}
}
