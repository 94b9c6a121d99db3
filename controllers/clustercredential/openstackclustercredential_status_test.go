package clustercredential

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cluster-api/util/conditions"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
)

func cloudErr(code int) error {
	return fmt.Errorf("creating application credential %q: %w", "x", gophercloud.ErrUnexpectedResponseCode{Actual: code, Method: http.MethodPost, URL: "http://keystone/v3/users/u/application_credentials"})
}

func TestSetOpenStackClusterCredentialStatus(t *testing.T) {
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
		{name: "Keystone 503", rep: report{err: cloudErr(http.StatusServiceUnavailable)}, wantReady: metav1.ConditionFalse, wantStalled: metav1.ConditionFalse, wantReason: infrav1.CloudUnavailableReason, wantRequeue: defaultOutageRetry},
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
