package metrics_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/yaml"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/metrics"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// clusterRole reads a ClusterRole of config/rbac, as the default install creates it.
func clusterRole(t *testing.T, file string) *rbacv1.ClusterRole {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", file))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(data, role); err != nil {
		t.Fatalf("reading %s: %v", file, err)
	}
	if err := env.Client.Create(context.Background(), role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), role) })
	return role
}

func bind(t *testing.T, role *rbacv1.ClusterRole, subject rbacv1.Subject) {
	t.Helper()
	b := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: role.Name + "-"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{subject},
	}
	if err := env.Client.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), b) })
}

// serviceAccountToken creates a ServiceAccount and returns a token of it.
func serviceAccountToken(t *testing.T, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := env.Client.Create(ctx, sa); err != nil {
		t.Fatal(err)
	}
	req := &authenticationv1.TokenRequest{}
	if err := env.Client.SubResource("token").Create(ctx, sa, req); err != nil {
		t.Fatalf("requesting a token of ServiceAccount %s: %v", name, err)
	}
	return req.Status.Token
}

func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startManager starts a manager with no controllers, with the metrics server options of
// main.go, as user (who has only the roles the test binds).
func startManager(t *testing.T, user string, secure bool) string {
	t.Helper()
	cfg, err := env.AddUser(user, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddress(t)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metrics.ServerOptions(addr, secure, ""),
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the manager stopped with: %v", err)
		}
	})
	return addr
}

// scrapeStatus GETs /metrics with token (none when empty) and returns the status and body.
func scrapeStatus(client *http.Client, url, token string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// TestSecureMetrics starts a manager as a user with only config/rbac's metrics-auth-role and
// scrapes it: the API server authenticates the bearer token (TokenReview) and authorises GET
// /metrics (SubjectAccessReview, envtest's API server authorises with RBAC), so only a
// ServiceAccount bound to config/rbac's metrics-reader gets the metrics.
func TestSecureMetrics(t *testing.T) {
	ns := newNamespace(t)
	bind(t, clusterRole(t, "metrics_auth_role.yaml"), rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "metrics-manager"})
	reader := clusterRole(t, "metrics_reader_role.yaml")
	bind(t, reader, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "scraper", Namespace: ns})
	scraper := serviceAccountToken(t, ns, "scraper")
	other := serviceAccountToken(t, ns, "other")

	url := fmt.Sprintf("https://%s/metrics", startManager(t, "metrics-manager", true))
	// The certificate is self-signed: only the token is under test here.
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	NewWithT(t).Eventually(func() error {
		_, _, err := scrapeStatus(client, url, "")
		return err
	}).WithTimeout(30*time.Second).Should(Succeed(), "the metrics server does not answer")

	for _, tc := range []struct {
		name  string
		token string
		want  int
	}{
		{name: "no token", want: http.StatusUnauthorized},
		// The TokenReview of a token the API server cannot read carries an error, which
		// controller-runtime's filter answers as a failure to authenticate (500), not as 401.
		{name: "a token the API server does not know", token: "not-a-token", want: http.StatusInternalServerError},
		{name: "a ServiceAccount without metrics-reader", token: other, want: http.StatusForbidden},
		{name: "a ServiceAccount with metrics-reader", token: scraper, want: http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body, err := scrapeStatus(client, url, tc.token)
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.want {
				t.Fatalf("GET /metrics: HTTP %d (%s), want %d", status, strings.TrimSpace(body), tc.want)
			}
			if hasMetrics := strings.Contains(body, "# TYPE go_goroutines"); hasMetrics != (tc.want == http.StatusOK) {
				t.Errorf("GET /metrics answered %d with metrics %t: %.200s", status, hasMetrics, body)
			}
		})
	}

	// Plain HTTP is refused: a scraper's token never travels in the clear.
	// (The TLS server answers 400 and closes the connection, which may cut the body short.)
	if status, _, _ := scrapeStatus(&http.Client{Timeout: 10 * time.Second}, strings.Replace(url, "https://", "http://", 1), scraper); status != http.StatusBadRequest {
		t.Errorf("a plain HTTP scrape of the secure endpoint: HTTP %d, want 400 from the TLS server", status)
	}
}

// TestInsecureMetrics checks --metrics-secure=false, for a local run: plain HTTP, no token.
func TestInsecureMetrics(t *testing.T) {
	url := fmt.Sprintf("http://%s/metrics", startManager(t, "metrics-manager-insecure", false))
	client := &http.Client{Timeout: 30 * time.Second}
	var status int
	var body string
	NewWithT(t).Eventually(func() (err error) {
		status, body, err = scrapeStatus(client, url, "")
		return err
	}).WithTimeout(30*time.Second).Should(Succeed(), "the metrics server does not answer")
	if status != http.StatusOK || !strings.Contains(body, "# TYPE go_goroutines") {
		t.Errorf("GET /metrics without a token over HTTP: %d %.200s, want 200 with metrics", status, body)
	}
}
