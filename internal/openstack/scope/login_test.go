package scope

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"k8s.io/apimachinery/pkg/types"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/clients"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

// TestLoginFailureClasses checks that a failed login says what it is: an unavailable or hanging
// Keystone is retryable (not a credentials problem), a 401 is one.
func TestLoginFailureClasses(t *testing.T) {
	tests := []struct {
		name  string
		fault openstackdouble.Fault
		// want is the sentinel of the CredentialsError.
		want       error
		retryable  bool
		retryAfter time.Duration
	}{
		{name: "Keystone 503", fault: openstackdouble.Fault{Status: 503, RetryAfter: 4 * time.Second}, want: ErrUnreachable, retryable: true, retryAfter: 4 * time.Second},
		{name: "Keystone 429", fault: openstackdouble.Fault{Status: 429, RetryAfter: 2 * time.Second}, want: ErrUnreachable, retryable: true, retryAfter: 2 * time.Second},
		{name: "Keystone 500", fault: openstackdouble.Fault{Status: 500}, want: ErrUnreachable, retryable: true},
		{name: "Keystone hangs", fault: openstackdouble.Fault{Hang: true}, want: ErrUnreachable, retryable: true},
		{name: "Keystone resets", fault: openstackdouble.Fault{ResetConnection: true}, want: ErrUnreachable, retryable: true},
		{name: "Keystone 401", fault: openstackdouble.Fault{Status: 401}, want: ErrAuthenticationFailed},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := openstackdouble.New()
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			tt.fault.Method, tt.fault.Path = "POST", "/v3/auth/tokens"
			srv.InjectFault(tt.fault)
			cloudsYAML, _ := srv.CloudsYAML(openstackdouble.CloudsYAMLOptions{})
			sec := secretWith(map[string]string{CloudsYAMLKey: cloudsYAML})
			sec.UID, sec.ResourceVersion = types.UID(fmt.Sprintf("uid-%d", i)), "1"
			f := NewFactory(secrets{"ns/creds": sec}, WithRequestTimeout(100*time.Millisecond))

			_, err = f.ImageClient(t.Context(), "ns", &infrav1.OpenStackIdentityReference{Name: "creds"})
			var credErr *CredentialsError
			if !errors.As(err, &credErr) || !errors.Is(err, tt.want) {
				t.Fatalf("login: got %v, want a CredentialsError of %v", err, tt.want)
			}
			if credErr.Retryable() != tt.retryable {
				t.Errorf("Retryable() = %t, want %t (%v)", credErr.Retryable(), tt.retryable, err)
			}
			class := clients.Classify(err)
			if tt.retryable && (class.Kind != clients.KindRetryable || class.RetryAfter != tt.retryAfter) {
				t.Errorf("Classify() = %+v, want retryable with Retry-After %s", class, tt.retryAfter)
			}
			if !tt.retryable && class.Kind != clients.KindAuth {
				t.Errorf("Classify() = %+v, want auth", class)
			}
		})
	}
}

// TestGlanceRequestTimeout checks that a Glance call that never answers ends after the request
// timeout with a retryable error naming Glance.
func TestGlanceRequestTimeout(t *testing.T) {
	srv, err := openstackdouble.New()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hang := srv.InjectFault(openstackdouble.Fault{Method: "GET", Path: "/v2/images", Hang: true})
	cloudsYAML, _ := srv.CloudsYAML(openstackdouble.CloudsYAMLOptions{})
	sec := secretWith(map[string]string{CloudsYAMLKey: cloudsYAML})
	sec.UID, sec.ResourceVersion = "uid", "1"
	f := NewFactory(secrets{"ns/creds": sec}, WithRequestTimeout(100*time.Millisecond))
	c, err := f.ImageClient(t.Context(), "ns", &infrav1.OpenStackIdentityReference{Name: "creds"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListImages(t.Context(), images.ListOpts{})
	var timeout *clients.RequestTimeoutError
	if !errors.As(err, &timeout) || timeout.Service != clients.NameGlance {
		t.Fatalf("hanging list: got %v, want a Glance request timeout", err)
	}
	if class := clients.Classify(err); class.Kind != clients.KindRetryable {
		t.Errorf("Classify() = %+v, want retryable", class)
	}
	if hang.Hits() != 1 {
		t.Errorf("hits = %d, want 1", hang.Hits())
	}
	// Once Glance answers again, the same client works.
	hang.Remove()
	if _, err := c.ListImages(t.Context(), images.ListOpts{}); err != nil {
		t.Fatal(err)
	}
}
