package appcred_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/appcred"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/scope"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

// TestCreateSweepRender creates credentials of two Clusters in the double, sweeps one Cluster's
// unrecorded ones, and logs in with the rendered clouds.yaml.
func TestCreateSweepRender(t *testing.T) {
	cloud, err := openstackdouble.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cloud.Close)
	content, name := cloud.CloudsYAML(openstackdouble.CloudsYAMLOptions{})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "openstack"},
		Data: map[string][]byte{scope.CloudsYAMLKey: []byte(content), scope.CloudNameKey: []byte(name)}}
	f := scope.NewFactory(fake.NewClientBuilder().WithObjects(secret).Build())
	ac, err := f.ApplicationCredentials(t.Context(), "ns", &infrav1.OpenStackIdentityReference{Name: "openstack"})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	var kept *appcred.Minted
	for _, n := range []string{appcred.Name("uid-a", 1), appcred.Name("uid-a", 2), appcred.Name("uid-b", 1), "someone-elses"} {
		m, err := appcred.Create(t.Context(), ac.Client, n, "test", []string{"member"}, exp)
		if err != nil {
			t.Fatal(err)
		}
		if n == appcred.Name("uid-a", 2) {
			kept = m
		}
	}
	if kept.Ref.Roles[0] != "member" || len(kept.Ref.Roles) != 1 || kept.Ref.ExpiresAt.Sub(exp).Abs() > time.Millisecond {
		t.Errorf("minted %+v", kept.Ref)
	}
	n, err := appcred.Sweep(t.Context(), ac.Client, appcred.Prefix("uid-a"), kept.Ref.ID)
	if err != nil || n != 1 {
		t.Fatalf("swept %d, %v; want 1", n, err)
	}
	var names []string
	for _, c := range cloud.ApplicationCredentials() {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, ","); got != "cso-uid-a-2,cso-uid-b-1,someone-elses" {
		t.Errorf("left %s", got)
	}
	if err := appcred.Revoke(t.Context(), ac.Client, "no-such-id"); err != nil {
		t.Errorf("revoking a missing credential: %v", err)
	}

	files, err := appcred.Render(ac.Cloud, kept.Ref.ID, kept.Secret)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(files.CloudsYAML)+string(files.CloudConf), openstackdouble.DefaultPassword) {
		t.Fatal("the rendered files hold the user's password")
	}
	if !strings.Contains(string(files.CloudConf), `application-credential-id="`+kept.Ref.ID+`"`) {
		t.Errorf("cloud.conf:\n%s", files.CloudConf)
	}
	workload := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "clouds-yaml"}, Data: map[string][]byte{scope.CloudsYAMLKey: files.CloudsYAML}}
	creds, err := scope.ParseSecret(workload)
	if err != nil {
		t.Fatalf("parsing the rendered clouds.yaml: %v\n%s", err, files.CloudsYAML)
	}
	if creds.AuthOptions.ApplicationCredentialID != kept.Ref.ID || creds.AuthOptions.Password != "" {
		t.Errorf("auth options %+v", creds.AuthOptions)
	}
	wf := scope.NewFactory(fake.NewClientBuilder().WithObjects(workload).Build())
	if _, err := wf.ImageClient(t.Context(), "kube-system", &infrav1.OpenStackIdentityReference{Name: "clouds-yaml"}); err != nil {
		t.Errorf("logging in with the rendered clouds.yaml: %v", err)
	}
}
