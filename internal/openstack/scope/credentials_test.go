package scope

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const testPassword = "s3cr3t-Value!"

func secretWith(data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "creds"}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

const validClouds = `clouds:
  openstack:
    auth:
      auth_url: https://keystone.example:5000/v3
      username: demo
      password: ` + testPassword + `
      project_name: demo
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionTwo
    interface: internal
  other:
    auth:
      auth_url: https://other.example/v3
      application_credential_id: abc
      application_credential_secret: ` + testPassword + `
    verify: false
`

func TestParseSecret(t *testing.T) {
	tests := []struct {
		name    string
		data    map[string]string
		wantErr error
		check   func(t *testing.T, c *Credentials)
	}{
		{
			name: "password, region and interface", data: map[string]string{CloudsYAMLKey: validClouds},
			check: func(t *testing.T, c *Credentials) {
				if c.CloudName != "openstack" || c.AuthOptions.Username != "demo" || !c.AuthOptions.AllowReauth {
					t.Errorf("auth options %+v", c.AuthOptions)
				}
				if c.EndpointOpts.Region != "RegionTwo" || c.EndpointOpts.Availability != gophercloud.AvailabilityInternal {
					t.Errorf("endpoint options %+v", c.EndpointOpts)
				}
				if c.TLSConfig.InsecureSkipVerify {
					t.Error("verify defaults to true")
				}
			},
		},
		{
			name: "cloudName selects application credential, verify false", data: map[string]string{CloudsYAMLKey: validClouds, CloudNameKey: "other\n"},
			check: func(t *testing.T, c *Credentials) {
				if c.AuthOptions.ApplicationCredentialID != "abc" || !c.TLSConfig.InsecureSkipVerify {
					t.Errorf("got %+v, insecure %v", c.AuthOptions, c.TLSConfig.InsecureSkipVerify)
				}
				if c.EndpointOpts.Availability != gophercloud.AvailabilityPublic {
					t.Errorf("interface defaults to public, got %s", c.EndpointOpts.Availability)
				}
			},
		},
		{
			name: "cacert key wins over a cacert path", data: map[string]string{CloudsYAMLKey: strings.Replace(validClouds, "    region_name: RegionTwo", "    cacert: /nonexistent/ca.pem\n    region_name: RegionTwo", 1), CACertKey: testCA},
			check: func(t *testing.T, c *Credentials) {
				if c.TLSConfig.RootCAs == nil {
					t.Error("no root CAs from the cacert key")
				}
			},
		},
		{name: "missing clouds.yaml", data: map[string]string{"other": "x"}, wantErr: ErrMissingKey},
		{name: "not YAML", data: map[string]string{CloudsYAMLKey: "clouds: [" + testPassword}, wantErr: ErrMalformed},
		{name: "wrong field type quoting a value", data: map[string]string{CloudsYAMLKey: "clouds:\n  openstack:\n    verify: " + testPassword + "\n"}, wantErr: ErrMalformed},
		{name: "no clouds", data: map[string]string{CloudsYAMLKey: "foo: bar\n"}, wantErr: ErrMalformed},
		{name: "unknown cloud name", data: map[string]string{CloudsYAMLKey: validClouds, CloudNameKey: "missing"}, wantErr: ErrCloudNotFound},
		{name: "no auth_url", data: map[string]string{CloudsYAMLKey: "clouds:\n  openstack:\n    auth:\n      password: " + testPassword + "\n"}, wantErr: ErrInvalidCloud},
		{name: "no credentials", data: map[string]string{CloudsYAMLKey: "clouds:\n  openstack:\n    auth:\n      auth_url: https://k/v3\n"}, wantErr: ErrInvalidCloud},
		{name: "unreadable cacert path", data: map[string]string{CloudsYAMLKey: strings.Replace(validClouds, "    region_name: RegionTwo", "    cacert: /nonexistent/ca.pem", 1)}, wantErr: ErrInvalidCACert},
		{name: "cacert key without PEM", data: map[string]string{CloudsYAMLKey: validClouds, CACertKey: "not a certificate"}, wantErr: ErrInvalidCACert},
		{name: "public profile", data: map[string]string{CloudsYAMLKey: "clouds:\n  openstack:\n    profile: somecloud\n    auth:\n      auth_url: https://k/v3\n      username: u\n      password: " + testPassword + "\n"}, wantErr: ErrInvalidCloud},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseSecret(secretWith(tt.data))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				var ce *CredentialsError
				if !errors.As(err, &ce) {
					t.Fatalf("error %T is not a *CredentialsError", err)
				}
				if !strings.Contains(err.Error(), "ns/creds") {
					t.Errorf("message %q does not name the Secret", err)
				}
				if strings.Contains(err.Error(), testPassword) {
					t.Errorf("message %q leaks a secret value", err)
				}
				return
			}
			tt.check(t, c)
		})
	}
}

// testCA is a freshly generated self-signed certificate, used only as PEM input.
var testCA = func() string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-root"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}()
