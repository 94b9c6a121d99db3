package openstack

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/cluster-api/util/conditions"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/kstatus"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/capability"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/render"
)

// TestSetOpenStackClusterStackReleaseStatus checks the one place that turns what a reconcile of
// an OpenStackClusterStackRelease found into conditions, status.ready and a result: every class
// of release error, a bad node-images.yaml, and every state of the node images.
func TestSetOpenStackClusterStackReleaseStatus(t *testing.T) {
	t.Parallel()
	const rel = "openstack-scs-1-32-v1"
	wrap := func(sentinel error) error { return fmt.Errorf("getting release %s: %w", rel, sentinel) }
	nodeImage := func(name string, set func(*infrav1.OpenStackNodeImageRelease)) *infrav1.OpenStackNodeImageRelease {
		nir := &infrav1.OpenStackNodeImageRelease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
		if set != nil {
			set(nir)
		}
		return nir
	}
	active := func(nir *infrav1.OpenStackNodeImageRelease) {
		kstatus.MarkReady(nir, infrav1.ImageActiveReason, "active")
		nir.Status.Ready = true
	}
	importing := func(nir *infrav1.OpenStackNodeImageRelease) {
		kstatus.MarkProgressing(nir, infrav1.ImportingReason, "Glance imports")
	}
	unavailable := func(nir *infrav1.OpenStackNodeImageRelease) {
		kstatus.MarkProgressing(nir, infrav1.CloudUnavailableReason, "Glance unavailable (HTTP 503): retrying at 20:31:05 UTC (in 30s)")
	}
	hashMismatch := func(nir *infrav1.OpenStackNodeImageRelease) {
		kstatus.MarkStalled(nir, infrav1.HashMismatchReason, "wrong bytes")
	}
	apiErr := errors.New("etcd is slow")
	registryDown := errors.New("registry down")

	// Capability checks as checkCapability reports them.
	needs := capability.Needs{
		LoadBalancer: "OpenStackClusterTemplate c",
		Flavors:      []capability.FlavorNeed{{Role: capability.RoleControlPlane, Name: "SCS-2V-4", Source: "variable flavor", RootVolume: true}},
	}
	capable := &capabilityResult{needs: needs, recheckAfter: time.Hour}
	missing := &capabilityResult{needs: needs, recheckAfter: time.Hour, findings: []capability.Finding{
		{Capability: capability.CapFlavor, Message: "flavor SCS-2V-4 (control plane default, variable flavor) not found"},
		{Capability: capability.CapImageImport, Advisory: true, Message: "Glance offers no web-download import"},
	}}
	advisory := &capabilityResult{needs: needs, recheckAfter: time.Hour, findings: []capability.Finding{
		{Capability: capability.CapImageImport, Advisory: true, Message: "Glance offers no web-download import"},
	}}
	retryAt := time.Date(2026, 1, 2, 20, 31, 5, 0, time.UTC)
	nova := func(status int) error {
		return fmt.Errorf("listing flavors: %w", gophercloud.ErrUnexpectedResponseCode{Actual: status, Method: "GET", URL: "https://cloud/compute/v2.1/flavors/detail"})
	}
	secret := types.NamespacedName{Namespace: "ns", Name: "openstack"}
	outage := &capabilityResult{err: nova(503), retryAt: retryAt, recheckAfter: 30 * time.Second}
	keystoneDown := &capabilityResult{err: &scope.CredentialsError{Secret: secret, Problem: "Keystone at https://keystone/v3 is unavailable (HTTP 503)",
		Err: scope.ErrUnreachable, Cause: gophercloud.ErrUnexpectedResponseCode{Actual: 503, URL: "https://keystone/v3/auth/tokens"}}, retryAt: retryAt, recheckAfter: 30 * time.Second}
	noSecret := &capabilityResult{err: &scope.CredentialsError{Secret: secret, Problem: "not found in namespace ns", Err: scope.ErrSecretNotFound}, recheckAfter: 2 * time.Minute}
	forbidden := &capabilityResult{err: nova(403), recheckAfter: time.Hour}
	revoked := &capabilityResult{err: nova(401), recheckAfter: time.Hour}
	badChart := &capabilityResult{err: &renderError{err: errors.New("template: clusterclass.yaml:3: nil pointer")}, recheckAfter: time.Hour}
	renderDown := &capabilityResult{err: &renderError{err: fmt.Errorf("rendering: %w", render.ErrRenderUnavailable)}, retryAt: retryAt, recheckAfter: 30 * time.Second}

	tests := []struct {
		name        string
		rep         releaseReport
		want        string
		wantReason  string
		wantMessage []string
		wantRequeue time.Duration
		wantErr     error
		// wantCapable is CloudCapable's status, empty for no condition; wantCapableReason and
		// wantCapableMessage its reason and parts of its message.
		wantCapable        metav1.ConditionStatus
		wantCapableReason  string
		wantCapableMessage []string
	}{
		{name: "deleted", rep: releaseReport{deleting: true}, want: untouched},
		{name: "deletion failed", rep: releaseReport{deleting: true, err: apiErr}, want: untouched, wantErr: apiErr},

		{name: "invalid release", rep: releaseReport{release: wrap(release.ErrInvalid)}, want: stalled,
			wantReason: infrav1.ReleaseUnavailableReason, wantMessage: []string{"Release " + rel + " cannot be used", release.ErrInvalid.Error()}},
		{name: "invalid release name", rep: releaseReport{release: wrap(name.ErrInvalidName)}, want: stalled, wantReason: infrav1.ReleaseUnavailableReason},
		{name: "release of another stack", rep: releaseReport{release: wrap(resolver.ErrWrongStack)}, want: stalled, wantReason: infrav1.ReleaseUnavailableReason},
		{name: "invalid artifact", rep: releaseReport{release: wrap(source.ErrInvalidArtifact)}, want: stalled, wantReason: infrav1.ReleaseUnavailableReason},
		{name: "artifact too large", rep: releaseReport{release: wrap(source.ErrTooLarge)}, want: stalled, wantReason: infrav1.ReleaseUnavailableReason},
		{name: "no ClusterStack provides it yet", rep: releaseReport{release: wrap(resolver.ErrNoClusterStack)}, want: progressing,
			wantReason: infrav1.ReleaseUnavailableReason, wantMessage: []string{"Waiting for release " + rel}, wantRequeue: releaseRetryInterval},
		{name: "not published yet", rep: releaseReport{release: wrap(source.ErrNotFound)}, want: progressing,
			wantReason: infrav1.ReleaseUnavailableReason, wantRequeue: releaseRetryInterval},
		{name: "no source", rep: releaseReport{release: wrap(source.ErrNoSource)}, want: stalled,
			wantReason: infrav1.ReleaseUnavailableReason, wantMessage: []string{"The source of release " + rel + " cannot be read"}, wantRequeue: releaseRetryInterval},
		{name: "bad source config", rep: releaseReport{release: wrap(source.ErrInvalidConfig)}, want: stalled,
			wantReason: infrav1.ReleaseUnavailableReason, wantRequeue: releaseRetryInterval},
		{name: "source refuses the credentials", rep: releaseReport{release: wrap(source.ErrUnauthorized)}, want: stalled,
			wantReason: infrav1.ReleaseUnavailableReason, wantRequeue: releaseRetryInterval},
		{name: "registry down", rep: releaseReport{release: registryDown}, want: progressing,
			wantReason: infrav1.ReleaseUnavailableReason, wantMessage: []string{"getting release " + rel, "registry down"}, wantErr: registryDown},

		{name: "invalid node-images.yaml", rep: releaseReport{release: wrap(&release.InvalidError{Release: rel, File: release.NodeImagesFile,
			Err: fmt.Errorf("%w: openStackNodeImages[0]: url is not http(s)", release.ErrInvalidNodeImages)})}, want: stalled,
			wantReason: infrav1.InvalidNodeImagesReason, wantMessage: []string{"node-images.yaml of release " + rel, "openStackNodeImages[0]"}},
		{name: "another invalid file", rep: releaseReport{release: wrap(&release.InvalidError{Release: rel, File: release.MetadataFile, Err: release.ErrMalformedFile})},
			want: stalled, wantReason: infrav1.ReleaseUnavailableReason, wantMessage: []string{"Release " + rel + " cannot be used", release.MetadataFile}},
		{name: "API error", rep: releaseReport{err: apiErr}, want: untouched, wantErr: apiErr},

		{name: "no node images", rep: releaseReport{}, want: ready, wantReason: csv1alpha1.ReadyReason, wantMessage: []string{"The release has no node images"}},
		{name: "all active", rep: releaseReport{images: []*infrav1.OpenStackNodeImageRelease{nodeImage("a", active), nodeImage("b", active)}}, want: ready,
			wantReason: csv1alpha1.ReadyReason, wantMessage: []string{"All 2 node images are active in Glance"}},
		{name: "one importing", rep: releaseReport{images: []*infrav1.OpenStackNodeImageRelease{nodeImage("a", active), nodeImage("b", importing)}}, want: progressing,
			wantReason: infrav1.WaitingForImagesReason, wantMessage: []string{"Waiting for node images: b"}},
		{name: "one new, no conditions yet", rep: releaseReport{images: []*infrav1.OpenStackNodeImageRelease{nodeImage("a", nil)}}, want: progressing,
			wantReason: infrav1.WaitingForImagesReason, wantMessage: []string{"Waiting for node images: a"}},
		{name: "cloud unavailable", rep: releaseReport{images: []*infrav1.OpenStackNodeImageRelease{nodeImage("a", unavailable), nodeImage("b", importing)}}, want: progressing,
			wantReason: infrav1.CloudUnavailableReason, wantMessage: []string{"Waiting for node images: a, b", "a: Glance unavailable (HTTP 503): retrying at 20:31:05 UTC"}},
		{name: "one failed", rep: releaseReport{images: []*infrav1.OpenStackNodeImageRelease{nodeImage("a", hashMismatch), nodeImage("b", unavailable)}}, want: stalled,
			wantReason: infrav1.WaitingForImagesReason, wantMessage: []string{"Node images failed: a: wrong bytes"}},

		// The capability check: never holds Ready back, asks for the next check.
		{name: "cloud capable", rep: releaseReport{capability: capable}, want: ready, wantReason: csv1alpha1.ReadyReason, wantRequeue: time.Hour,
			wantCapable: metav1.ConditionTrue, wantCapableReason: infrav1.CapabilitiesPresentReason,
			wantCapableMessage: []string{"The cloud has what the class defaults need: the load-balancer service, flavor SCS-2V-4 (control plane)"}},
		{name: "capable with a fallback", rep: releaseReport{capability: advisory}, want: ready, wantReason: csv1alpha1.ReadyReason, wantRequeue: time.Hour,
			wantCapable: metav1.ConditionTrue, wantCapableReason: infrav1.CapabilitiesPresentReason, wantCapableMessage: []string{"; note: Glance offers no web-download import"}},
		{name: "capability missing, release still ready", rep: releaseReport{capability: missing}, want: ready, wantReason: csv1alpha1.ReadyReason, wantRequeue: time.Hour,
			wantCapable: metav1.ConditionFalse, wantCapableReason: infrav1.CapabilityMissingReason,
			wantCapableMessage: []string{"Clusters that keep the class defaults cannot be served: flavor SCS-2V-4 (control plane default, variable flavor) not found; note: Glance offers no web-download import"}},
		{name: "capability missing while images import", rep: releaseReport{capability: missing, images: []*infrav1.OpenStackNodeImageRelease{nodeImage("a", importing)}},
			want: progressing, wantReason: infrav1.WaitingForImagesReason, wantRequeue: time.Hour,
			wantCapable: metav1.ConditionFalse, wantCapableReason: infrav1.CapabilityMissingReason},
		{name: "cloud outage is unknown, not false", rep: releaseReport{capability: outage}, want: ready, wantReason: csv1alpha1.ReadyReason, wantRequeue: 30 * time.Second,
			wantCapable: metav1.ConditionUnknown, wantCapableReason: infrav1.CloudUnavailableReason,
			wantCapableMessage: []string{"Cannot check the cloud: Nova unavailable (HTTP 503): retrying at 20:31:05 UTC"}},
		{name: "Keystone outage is unknown", rep: releaseReport{capability: keystoneDown}, want: ready, wantReason: csv1alpha1.ReadyReason, wantRequeue: 30 * time.Second,
			wantCapable: metav1.ConditionUnknown, wantCapableReason: infrav1.CloudUnavailableReason, wantCapableMessage: []string{"Keystone at https://keystone/v3 is unavailable (HTTP 503)"}},
		{name: "no credentials Secret", rep: releaseReport{capability: noSecret}, want: ready, wantReason: csv1alpha1.ReadyReason, wantRequeue: 2 * time.Minute,
			wantCapable: metav1.ConditionUnknown, wantCapableReason: infrav1.InvalidCredentialsReason, wantCapableMessage: []string{"OpenStack credentials Secret ns/openstack: not found"}},
		{name: "a read refused by policy", rep: releaseReport{capability: forbidden}, want: ready, wantReason: csv1alpha1.ReadyReason, wantRequeue: time.Hour,
			wantCapable: metav1.ConditionUnknown, wantCapableReason: infrav1.CapabilityCheckFailedReason,
			wantCapableMessage: []string{"Cannot check the cloud: listing flavors", "the credentials need read access"}},
		{name: "token revoked", rep: releaseReport{capability: revoked}, want: ready, wantReason: csv1alpha1.ReadyReason, wantRequeue: time.Hour,
			wantCapable: metav1.ConditionUnknown, wantCapableReason: infrav1.InvalidCredentialsReason, wantCapableMessage: []string{"Nova refused the credentials (HTTP 401)"}},
		{name: "class cannot be rendered", rep: releaseReport{capability: badChart}, want: ready, wantReason: csv1alpha1.ReadyReason, wantRequeue: time.Hour,
			wantCapable: metav1.ConditionUnknown, wantCapableReason: infrav1.CapabilityCheckFailedReason, wantCapableMessage: []string{"rendering the cluster-class chart: template"}},
		{name: "rendering process unavailable", rep: releaseReport{capability: renderDown}, want: ready, wantReason: csv1alpha1.ReadyReason, wantRequeue: 30 * time.Second,
			wantCapable: metav1.ConditionUnknown, wantCapableReason: infrav1.CapabilityCheckFailedReason,
			wantCapableMessage: []string{"rendering process unavailable: retrying at 20:31:05 UTC"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			obj := &infrav1.OpenStackClusterStackRelease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: rel}}
			obj.Status.Ready = tt.want != ready
			res, err := setOpenStackClusterStackReleaseStatus(obj, tt.rep)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if res.RequeueAfter != tt.wantRequeue {
				t.Errorf("RequeueAfter = %s, want %s", res.RequeueAfter, tt.wantRequeue)
			}
			if tt.want == untouched {
				if len(obj.Status.Conditions) != 0 {
					t.Errorf("conditions set: %+v", obj.Status.Conditions)
				}
				return
			}
			if obj.Status.Ready != (tt.want == ready) {
				t.Errorf("status.ready = %t, want %t", obj.Status.Ready, tt.want == ready)
			}
			checkTriple(t, obj, tt.want, tt.wantReason, tt.wantMessage)
			c := conditions.Get(obj, infrav1.CloudCapableCondition)
			if tt.wantCapable == "" {
				if c != nil {
					t.Errorf("CloudCapable set: %+v", c)
				}
				return
			}
			if c == nil || c.Status != tt.wantCapable || c.Reason != tt.wantCapableReason {
				t.Fatalf("CloudCapable = %+v, want %s/%s", c, tt.wantCapable, tt.wantCapableReason)
			}
			for _, w := range tt.wantCapableMessage {
				if !strings.Contains(c.Message, w) {
					t.Errorf("CloudCapable message %q does not contain %q", c.Message, w)
				}
			}
		})
	}
}
