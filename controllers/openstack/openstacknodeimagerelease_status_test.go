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

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/nodeimage"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
)

// TestSetOpenStackNodeImageReleaseStatus checks the one place that turns what a reconcile found
// into conditions, status.ready, a result and the convergence verdict: every outcome a step
// reports and every class of cloud error, the retry time in the message being the one the
// result asks for.
func TestSetOpenStackNodeImageReleaseStatus(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 20, 30, 35, 0, time.UTC)
	glance := func(status int, retryAfter string) error {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return fmt.Errorf("listing images: %w", gophercloud.ErrUnexpectedResponseCode{Actual: status, URL: "https://glance/v2/images", ResponseHeader: h, Body: []byte("secret body")})
	}
	secret := types.NamespacedName{Namespace: "ns", Name: "openstack"}
	keystone503 := &scope.CredentialsError{Secret: secret, Problem: "Keystone at https://keystone/v3 is unavailable (HTTP 503)",
		Err: scope.ErrUnreachable, Cause: gophercloud.ErrUnexpectedResponseCode{Actual: 503, URL: "https://keystone/v3/auth/tokens", ResponseHeader: http.Header{"Retry-After": []string{"5"}}}}
	keystone401 := &scope.CredentialsError{Secret: secret, Problem: "Keystone at https://keystone/v3 rejected the credentials (HTTP 401)",
		Err: scope.ErrAuthenticationFailed, Cause: gophercloud.ErrUnexpectedResponseCode{Actual: 401, URL: "https://keystone/v3/auth/tokens"}}
	noSecret := &scope.CredentialsError{Secret: secret, Problem: "not found in namespace ns", Err: scope.ErrSecretNotFound}

	tests := []struct {
		name          string
		rep           report
		want          string
		wantReason    string
		wantMessage   []string
		wantRequeue   time.Duration
		wantErr       bool
		wantConverged bool
	}{
		{name: "unchanged and converged", rep: report{unchanged: true, converged: true}, want: untouched, wantConverged: true},
		{name: "unchanged, not converged", rep: report{unchanged: true}, want: untouched},
		{name: "active", rep: report{outcome: nodeimage.Outcome{Ready: true, Message: "Image img-1 is active"}}, want: ready,
			wantReason: csv1alpha1.ReadyReason, wantMessage: []string{"Image img-1 is active"}, wantConverged: true},
		{name: "active with re-check", rep: report{recheck: time.Hour, outcome: nodeimage.Outcome{Ready: true, Message: "active"}}, want: ready,
			wantReason: csv1alpha1.ReadyReason, wantRequeue: time.Hour, wantConverged: true},
		{name: "importing has not converged", rep: report{outcome: nodeimage.Outcome{Reason: infrav1.ImportingReason, Message: "Glance imports", RequeueAfter: 10 * time.Second}},
			want: progressing, wantReason: infrav1.ImportingReason, wantMessage: []string{"Glance imports"}, wantRequeue: 10 * time.Second},
		{name: "in use while deleting has converged", rep: report{deleting: true, outcome: nodeimage.Outcome{Reason: infrav1.ImageInUseReason, Message: "used by workers", RequeueAfter: time.Minute}},
			want: progressing, wantReason: infrav1.ImageInUseReason, wantMessage: []string{"used by workers"}, wantRequeue: time.Minute, wantConverged: true},
		{name: "503 with Retry-After", rep: report{err: glance(503, "30")}, want: progressing, wantReason: infrav1.CloudUnavailableReason,
			wantMessage: []string{"Glance unavailable (HTTP 503): retrying at 20:31:05 UTC (in 30s)"}, wantRequeue: 30 * time.Second},
		{name: "429 without Retry-After", rep: report{err: glance(429, "")}, want: progressing, wantReason: infrav1.CloudUnavailableReason,
			wantMessage: []string{"Glance rate limit reached (HTTP 429): retrying at 20:30:45 UTC (in 10s)"}, wantRequeue: 10 * time.Second},
		{name: "no Retry-After and no setting", rep: report{err: glance(502, ""), outageRetry: -1}, want: progressing, wantReason: infrav1.CloudUnavailableReason,
			wantMessage: []string{"(in 30s)"}, wantRequeue: defaultOutageRetry},
		{name: "Retry-After capped", rep: report{err: glance(503, "86400")}, want: progressing, wantReason: infrav1.CloudUnavailableReason,
			wantMessage: []string{"(in 10m0s)"}, wantRequeue: maxOutageRetry},
		{name: "outage while deleting has converged", rep: report{deleting: true, err: glance(503, "1")}, want: progressing, wantReason: infrav1.CloudUnavailableReason,
			wantMessage: []string{"Deleting image img-1: Glance unavailable (HTTP 503)"}, wantRequeue: time.Second, wantConverged: true},
		{name: "Keystone 503 is an outage, not credentials", rep: report{err: keystone503}, want: progressing, wantReason: infrav1.CloudUnavailableReason,
			wantMessage: []string{"Keystone at https://keystone/v3 is unavailable (HTTP 503)", "retrying at 20:30:40 UTC (in 5s)"}, wantRequeue: 5 * time.Second},
		{name: "Keystone 401 is credentials", rep: report{err: keystone401}, want: stalled, wantReason: infrav1.InvalidCredentialsReason,
			wantMessage: []string{"HTTP 401", "ns/openstack"}, wantRequeue: credentialsRetryInterval, wantConverged: true},
		{name: "missing Secret is credentials", rep: report{err: noSecret}, want: stalled, wantReason: infrav1.InvalidCredentialsReason,
			wantMessage: []string{"ns/openstack", "not found"}, wantRequeue: credentialsRetryInterval, wantConverged: true},
		{name: "401 after a failed re-authentication", rep: report{err: &gophercloud.ErrUnableToReauthenticate{ErrOriginal: glance(401, ""),
			ErrReauth: gophercloud.ErrUnexpectedResponseCode{Actual: 401, URL: "https://keystone/v3/auth/tokens"}}},
			want: stalled, wantReason: infrav1.InvalidCredentialsReason, wantMessage: []string{"Keystone refused the credentials", "ns/openstack"},
			wantRequeue: credentialsRetryInterval, wantConverged: true},
		{name: "413 from Glance is the quota", rep: report{err: glance(413, "")}, want: stalled, wantReason: infrav1.QuotaExceededReason,
			wantMessage: []string{"HTTP 413", "raise the quota"}, wantRequeue: quotaRetryInterval, wantConverged: true},
		{name: "quota refusal of the upload", rep: report{err: &nodeimage.TerminalError{Reason: infrav1.QuotaExceededReason, Message: "Glance refused the upload (HTTP 413)"}},
			want: stalled, wantReason: infrav1.QuotaExceededReason, wantMessage: []string{"413"}, wantRequeue: quotaRetryInterval, wantConverged: true},
		{name: "hash mismatch waits for the spec", rep: report{err: &nodeimage.TerminalError{Reason: infrav1.HashMismatchReason, Message: "wrong bytes"}},
			want: stalled, wantReason: infrav1.HashMismatchReason, wantMessage: []string{"wrong bytes"}, wantConverged: true},
		{name: "transfers failed", rep: report{err: &nodeimage.TerminalError{Reason: infrav1.TransferFailedReason, Message: "3 attempts"}},
			want: stalled, wantReason: infrav1.TransferFailedReason, wantMessage: []string{"3 attempts"}, wantConverged: true},
		{name: "protected image on delete", rep: report{deleting: true, err: fmt.Errorf("deleting image img-1: %w", glance(403, ""))},
			want: stalled, wantReason: infrav1.ProtectedReason, wantMessage: []string{"img-1", "HTTP 403", "deletionPolicy keep"}, wantRequeue: protectedRecheckInterval, wantConverged: true},
		{name: "403 outside a delete is a cloud error", rep: report{err: glance(403, "")}, want: progressing, wantReason: infrav1.CloudErrorReason,
			wantMessage: []string{"403"}, wantErr: true},
		{name: "conflict is no news", rep: report{err: glance(409, "")}, want: untouched, wantErr: true},
		{name: "not found is no news", rep: report{err: glance(404, "")}, want: untouched, wantErr: true},
		{name: "API server error is no news", rep: report{err: &kubeError{err: errors.New("etcd is slow")}}, want: untouched, wantErr: true},
		{name: "API server error while deleting", rep: report{deleting: true, err: &kubeError{err: errors.New("etcd is slow")}}, want: untouched, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			obj := &infrav1.OpenStackNodeImageRelease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "img"},
				Spec:   infrav1.OpenStackNodeImageReleaseSpec{IdentityRef: &infrav1.OpenStackIdentityReference{Name: "openstack"}},
				Status: infrav1.OpenStackNodeImageReleaseStatus{ImageID: "img-1", Ready: tt.want != ready}}
			rep := tt.rep
			rep.now = now
			if rep.outageRetry == 0 {
				rep.outageRetry = 10 * time.Second
			}
			res, converged, err := setOpenStackNodeImageReleaseStatus(obj, rep)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %t", err, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(err, tt.rep.err) {
				t.Errorf("err = %v, want the step's error", err)
			}
			if converged != tt.wantConverged {
				t.Errorf("converged = %t, want %t", converged, tt.wantConverged)
			}
			if res.RequeueAfter != tt.wantRequeue {
				t.Errorf("RequeueAfter = %s, want %s", res.RequeueAfter, tt.wantRequeue)
			}
			if obj.Status.Ready != (tt.want == ready) {
				t.Errorf("status.ready = %t, want %t", obj.Status.Ready, tt.want == ready)
			}
			if tt.want == untouched {
				if len(obj.Status.Conditions) != 0 {
					t.Errorf("conditions set: %+v", obj.Status.Conditions)
				}
				return
			}
			msg := checkTriple(t, obj, tt.want, tt.wantReason, tt.wantMessage)
			if tt.wantReason != infrav1.CloudErrorReason && strings.Contains(msg, "secret body") {
				t.Errorf("message %q quotes the response body", msg)
			}
		})
	}
}
