package openstack

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
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/cluster-api/util/conditions"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/nodeimage"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
)

// TestSetNodeImageStatus checks the one place that turns what a reconcile found into conditions
// and a result: the retry time in the message is the one the result asks for.
func TestSetNodeImageStatus(t *testing.T) {
	now := time.Date(2026, 12, 1, 20, 30, 35, 0, time.UTC)
	glance := func(status int, retryAfter string) error {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return fmt.Errorf("listing images: %w", gophercloud.ErrUnexpectedResponseCode{Actual: status, URL: "https://glance/v2/images", ResponseHeader: h, Body: []byte("secret body")})
	}
	keystone503 := &scope.CredentialsError{Secret: types.NamespacedName{Namespace: "ns", Name: "openstack"}, Problem: "Keystone at https://keystone/v3 is unavailable (HTTP 503)",
		Err: scope.ErrUnreachable, Cause: gophercloud.ErrUnexpectedResponseCode{Actual: 503, URL: "https://keystone/v3/auth/tokens", ResponseHeader: http.Header{"Retry-After": []string{"5"}}}}
	keystone401 := &scope.CredentialsError{Secret: types.NamespacedName{Namespace: "ns", Name: "openstack"}, Problem: "Keystone at https://keystone/v3 rejected the credentials (HTTP 401)",
		Err: scope.ErrAuthenticationFailed, Cause: gophercloud.ErrUnexpectedResponseCode{Actual: 401, URL: "https://keystone/v3/auth/tokens"}}

	tests := []struct {
		name         string
		rep          report
		wantReason   string
		wantStalled  bool
		wantMessage  []string
		wantRequeue  time.Duration
		wantErr      bool
		wantUnchaged bool
	}{
		{name: "503 with Retry-After", rep: report{err: glance(503, "30")}, wantReason: infrav1.CloudUnavailableReason,
			wantMessage: []string{"Glance unavailable (HTTP 503): retrying at 20:31:05 UTC (in 30s)"}, wantRequeue: 30 * time.Second},
		{name: "429 without Retry-After", rep: report{err: glance(429, "")}, wantReason: infrav1.CloudUnavailableReason,
			wantMessage: []string{"Glance rate limit reached (HTTP 429): retrying at 20:30:45 UTC (in 10s)"}, wantRequeue: 10 * time.Second},
		{name: "Retry-After capped", rep: report{err: glance(503, "86400")}, wantReason: infrav1.CloudUnavailableReason,
			wantMessage: []string{"(in 10m0s)"}, wantRequeue: maxOutageRetry},
		{name: "Keystone 503 is an outage, not credentials", rep: report{err: keystone503}, wantReason: infrav1.CloudUnavailableReason,
			wantMessage: []string{"Keystone at https://keystone/v3 is unavailable (HTTP 503)", "retrying at 20:30:40 UTC (in 5s)"}, wantRequeue: 5 * time.Second},
		{name: "Keystone 401 is credentials", rep: report{err: keystone401}, wantReason: infrav1.InvalidCredentialsReason, wantStalled: true,
			wantMessage: []string{"HTTP 401"}, wantRequeue: credentialsRetryInterval},
		{name: "401 after a failed re-authentication", rep: report{err: &gophercloud.ErrUnableToReauthenticate{ErrOriginal: glance(401, ""),
			ErrReauth: gophercloud.ErrUnexpectedResponseCode{Actual: 401, URL: "https://keystone/v3/auth/tokens"}}},
			wantReason: infrav1.InvalidCredentialsReason, wantStalled: true, wantMessage: []string{"Keystone refused the credentials", "ns/openstack"}, wantRequeue: credentialsRetryInterval},
		{name: "quota", rep: report{err: &nodeimage.TerminalError{Reason: infrav1.QuotaExceededReason, Message: "Glance refused the upload (HTTP 413)"}},
			wantReason: infrav1.QuotaExceededReason, wantStalled: true, wantMessage: []string{"413"}, wantRequeue: quotaRetryInterval},
		{name: "hash mismatch waits for the spec", rep: report{err: &nodeimage.TerminalError{Reason: infrav1.HashMismatchReason, Message: "wrong bytes"}},
			wantReason: infrav1.HashMismatchReason, wantStalled: true},
		{name: "outage while deleting", rep: report{deleting: true, err: glance(503, "1")}, wantReason: infrav1.CloudUnavailableReason,
			wantMessage: []string{"Deleting image img-1: Glance unavailable (HTTP 503)"}, wantRequeue: time.Second},
		{name: "conflict is no news", rep: report{err: glance(409, "")}, wantErr: true, wantUnchaged: true},
		{name: "API server error is no news", rep: report{err: &kubeError{err: errors.New("etcd is slow")}}, wantErr: true, wantUnchaged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &OpenStackNodeImageReleaseReconciler{Recorder: events.NewFakeRecorder(10), OutageRetry: 10 * time.Second,
				NodeImage: nodeimage.Options{Now: func() time.Time { return now }}}
			obj := &infrav1.OpenStackNodeImageRelease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "img"},
				Spec:   infrav1.OpenStackNodeImageReleaseSpec{IdentityRef: &infrav1.OpenStackIdentityReference{Name: "openstack"}},
				Status: infrav1.OpenStackNodeImageReleaseStatus{ImageID: "img-1"}}
			res, _, err := r.setNodeImageStatus(obj, tt.rep)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %t", err, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(err, tt.rep.err) {
				t.Errorf("err = %v, want the step's error", err)
			}
			if tt.wantUnchaged {
				if len(obj.Status.Conditions) != 0 {
					t.Errorf("conditions set: %+v", obj.Status.Conditions)
				}
				return
			}
			if res.RequeueAfter != tt.wantRequeue {
				t.Errorf("RequeueAfter = %s, want %s", res.RequeueAfter, tt.wantRequeue)
			}
			if got := conditions.GetReason(obj, csv1alpha1.ReadyCondition); got != tt.wantReason {
				t.Errorf("Ready reason = %q, want %q", got, tt.wantReason)
			}
			if conditions.IsTrue(obj, csv1alpha1.StalledCondition) != tt.wantStalled {
				t.Errorf("Stalled = %t, want %t", conditions.IsTrue(obj, csv1alpha1.StalledCondition), tt.wantStalled)
			}
			if conditions.IsTrue(obj, csv1alpha1.ReconcilingCondition) == tt.wantStalled {
				t.Errorf("Reconciling must be the opposite of Stalled")
			}
			msg := conditions.GetMessage(obj, csv1alpha1.ReadyCondition)
			for _, w := range tt.wantMessage {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "secret body") {
				t.Errorf("message %q quotes the response body", msg)
			}
		})
	}
}
