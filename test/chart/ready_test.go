package chart_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// readyTimeout bounds each wait of the readiness tests: the manager's start (caches of every
// watched kind) and one release installed from a local source, on a busy machine.
const readyTimeout = 3 * time.Minute

var (
	managerOnce sync.Once
	managerPath string
	managerErr  error
)

// managerBinary builds the manager once for the package, as the Dockerfile does (static).
func managerBinary(t *testing.T) string {
	t.Helper()
	managerOnce.Do(func() {
		dir, err := os.MkdirTemp("", "clusterstack-chart-bin-")
		if err != nil {
			managerErr = err
			return
		}
		managerPath = filepath.Join(dir, "manager")
		cmd := exec.Command("go", "build", "-ldflags=-s -w", "-o", managerPath, ".")
		cmd.Dir = testenv.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			managerErr = fmt.Errorf("building the manager: %w\n%s", err, out)
		}
	})
	if managerErr != nil {
		t.Fatal(managerErr)
	}
	return managerPath
}

// TestOperatorBecomesReady installs the operator as a user would, from the chart and from the
// components file, into the API server, and runs the manager binary as the rendered Deployment
// says (its args and environment), authenticated with a token of the rendered ServiceAccount, so
// that only the RBAC the installation grants is available. The manager must become ready and
// install a release of a ClusterStack (ClusterStackRelease, ClusterClass and templates applied):
// a permission or flag the installation lacks fails here.
//
// What a pod has and a process does not is put in as the kubelet would: the volumes are
// directories (a test certificate in the serving-certificate Secret's), the listening ports are
// free ones, the namespace the pod would find in its ServiceAccount mount is
// --leader-elect-namespace, and the API server is reached through a kubeconfig with the token.
// The webhook configurations are not registered (the API server could not reach a Service).
func TestOperatorBecomesReady(t *testing.T) {
	manager := managerBinary(t)
	releases := t.TempDir()
	if _, err := fixtures.Build(releases, fixtures.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		render func(t *testing.T) ([]*unstructured.Unstructured, []string)
	}{
		{name: "chart", render: func(t *testing.T) ([]*unstructured.Unstructured, []string) {
			// The local source root is passed the chart's way for flags it has no value for.
			objs, err := renderChart(loadChart(t), "cso", "cso-ready", map[string]any{
				"certManager": map[string]any{"enabled": false, "caBundle": caBundle(t)},
				"extraArgs":   []any{"--local-source-root=" + releases},
			})
			if err != nil {
				t.Fatalf("rendering the chart: %v", err)
			}
			return objs, nil
		}},
		{name: "components", render: func(t *testing.T) ([]*unstructured.Unstructured, []string) {
			m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(testenv.RepoRoot(), "config", "clusterctl"))
			if err != nil {
				t.Fatalf("rendering config/clusterctl: %v", err)
			}
			data, err := m.AsYaml()
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decode("components", string(unsetVariable.ReplaceAll(data, []byte("$1"))))
			if err != nil {
				t.Fatal(err)
			}
			// As a kustomize patch of the manager's args would add it.
			return objs, []string{"--local-source-root=" + releases}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, extraArgs := tc.render(t)
			deploy := find(objs, "Deployment", "")
			if deploy == nil {
				t.Fatal("no Deployment rendered")
			}
			ns := deploy.GetNamespace()
			install(t, objs, ns)
			m := startManager(t, manager, deploy, extraArgs, releases)
			m.waitReady(t)
			installsRelease(t, m, releases)
			onlyItsRBAC(t, m)
		})
	}
}

// install applies what a user's kubectl apply or helm install would write, except what the test
// API server cannot serve (webhook configurations it could not call, cert-manager and
// Prometheus Operator objects, Cluster API's ExtensionConfig).
func install(t *testing.T, objs []*unstructured.Unstructured, ns string) {
	t.Helper()
	ctx := context.Background()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	skip := []string{"Namespace", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "ExtensionConfig"}
	for _, o := range objs {
		if notInEnvtest[o.GroupVersionKind().Group] || slices.Contains(skip, o.GetKind()) {
			continue
		}
		if err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.FieldOwner("ready-test"), client.ForceOwnership); err != nil {
			t.Fatalf("applying %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

// runningManager is the manager process of one test.
type runningManager struct {
	cmd *exec.Cmd
	// kubeconfig is the ServiceAccount's, which the manager runs with.
	kubeconfig string
	log        string
	probeAddr  string
	done       chan error
}

// logTail is the end of the manager's log, for failure messages.
func (m *runningManager) logTail() string {
	data, _ := os.ReadFile(m.log)
	if len(data) > 6000 {
		data = data[len(data)-6000:]
	}
	return string(data)
}

// portFlags are the manager's flags that name a port to listen on: given free ports here, as
// each pod has its own network namespace and this test shares the machine.
var portFlags = map[string]bool{"--metrics-bind-address": true, "--health-probe-bind-address": true, "--webhook-port": true, "--runtime-extension-port": true, "--profiler-address": true}

// startManager runs the manager binary with the Deployment's container args and environment.
// Paths in the args are mapped into the directories that stand in for the volumes, except those
// below hostDir (the test's local release source, which is no volume of the pod).
func startManager(t *testing.T, binary string, deploy *unstructured.Unstructured, extraArgs []string, hostDir string) *runningManager {
	t.Helper()
	c := container(t, deploy)
	ns := deploy.GetNamespace()
	sa, _, _ := unstructured.NestedString(deploy.Object, "spec", "template", "spec", "serviceAccountName")
	if sa == "" {
		t.Fatal("the Deployment names no ServiceAccount")
	}
	volumes := podVolumes(t, deploy)
	tmp := t.TempDir()

	// Volumes become directories; the Secret volumes hold the serving certificate.
	dirs := map[string]string{}
	for _, vm := range c.VolumeMounts {
		dir := filepath.Join(tmp, "volumes", vm.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if v, ok := volumes[vm.Name]; ok && v.Secret != nil {
			writeServingCert(t, dir)
		}
		dirs[vm.MountPath] = dir
	}
	hostPath := func(p string) string {
		best := ""
		for mount := range dirs {
			if (p == mount || strings.HasPrefix(p, strings.TrimSuffix(mount, "/")+"/")) && len(mount) > len(best) {
				best = mount
			}
		}
		if best == "" {
			return p
		}
		return filepath.Join(dirs[best], strings.TrimPrefix(p, best))
	}

	var args []string
	probeAddr := ""
	for _, a := range append(slices.Clone(c.Args), extraArgs...) {
		flag, value, hasValue := strings.Cut(a, "=")
		switch {
		case hasValue && portFlags[flag] && value != "0" && value != "":
			port := freePort(t)
			if flag == "--webhook-port" || flag == "--runtime-extension-port" {
				value = strconv.Itoa(port)
			} else {
				value = fmt.Sprintf("127.0.0.1:%d", port)
			}
			if flag == "--health-probe-bind-address" {
				probeAddr = value
			}
		case hasValue && strings.HasPrefix(value, "/") && !strings.HasPrefix(value, hostDir):
			value = hostPath(value)
		}
		if hasValue {
			a = flag + "=" + value
		}
		args = append(args, a)
	}
	if probeAddr == "" {
		t.Fatalf("the Deployment's args %v set no --health-probe-bind-address; its readiness probe could not be reached", c.Args)
	}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--leader-elect-namespace") }) {
		// What the manager finds in its pod's ServiceAccount mount.
		args = append(args, "--leader-elect-namespace="+ns)
	}

	kubeconfig := kubeconfigFor(t, ns, sa, tmp)
	environ := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + tmp,
		"KUBECONFIG=" + kubeconfig,
	}
	if d, ok := dirs["/tmp"]; ok {
		environ = append(environ, "TMPDIR="+d)
	}
	for _, e := range c.Env {
		environ = append(environ, e.Name+"="+envValue(t, e, c, ns))
	}
	for _, from := range c.EnvFrom {
		if from.SecretRef == nil {
			continue
		}
		s := &corev1.Secret{}
		if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: from.SecretRef.Name}, s); err != nil {
			if apierrors.IsNotFound(err) && ptr.Deref(from.SecretRef.Optional, false) {
				continue
			}
			t.Fatalf("the Deployment's envFrom Secret %s: %v", from.SecretRef.Name, err)
		}
		for k, v := range s.Data {
			environ = append(environ, k+"="+string(v))
		}
	}

	m := &runningManager{kubeconfig: kubeconfig, log: filepath.Join(tmp, "manager.log"), probeAddr: probeAddr, done: make(chan error, 1)}
	logFile, err := os.Create(m.log)
	if err != nil {
		t.Fatal(err)
	}
	m.cmd = exec.Command(binary, args...)
	m.cmd.Env = environ
	m.cmd.Dir = tmp
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.done <- m.cmd.Wait(); _ = logFile.Close() }()
	t.Cleanup(func() {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(30 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.done
		}
		if t.Failed() {
			t.Logf("manager args %q\nlog (end):\n%s", args, m.logTail())
		}
	})
	return m
}

// waitReady waits until the manager's readiness probe answers 200, as the kubelet would before
// the pod gets traffic.
func (m *runningManager) waitReady(t *testing.T) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second}
	NewWithT(t).Eventually(func(g Gomega) {
		select {
		case err := <-m.done:
			m.done <- err
			StopTrying(fmt.Sprintf("the manager exited (%v):\n%s", err, m.logTail())).Now()
		default:
		}
		resp, err := hc.Get("http://" + m.probeAddr + "/readyz")
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	}).WithTimeout(readyTimeout).WithPolling(time.Second).Should(Succeed(), func() string { return m.logTail() })
}

// installsRelease creates a ClusterStack with a local source and waits until its release is
// Ready: the manager read the ClusterStack, created the ClusterStackRelease, and applied the
// ClusterClass and its templates, each with the installation's permissions.
func installsRelease(t *testing.T, m *runningManager, releases string) {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ready-"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	cs := &csv1alpha1.ClusterStack{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "scs"},
		Spec: csv1alpha1.ClusterStackSpec{
			Provider: "openstack", Name: "scs", KubernetesVersion: "1.32", Versions: []string{"v1"}, NoProvider: true,
			Source: &csv1alpha1.ReleaseSource{Local: &csv1alpha1.LocalSource{Path: releases}},
		},
	}
	if err := env.Client.Create(ctx, cs); err != nil {
		t.Fatal(err)
	}
	release := fixtures.Options{}.ReleaseName()
	NewWithT(t).Eventually(func(g Gomega) {
		csr := &csv1alpha1.ClusterStackRelease{}
		g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: release}, csr)).To(Succeed())
		ready := meta.FindStatusCondition(csr.Status.Conditions, csv1alpha1.ReadyCondition)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "ClusterStackRelease %s: %s: %s", release, ready.Reason, ready.Message)
	}).WithTimeout(readyTimeout).WithPolling(time.Second).Should(Succeed(), func() string { return m.logTail() })
	cc := &unstructured.Unstructured{}
	cc.SetAPIVersion("cluster.x-k8s.io/v1beta2")
	cc.SetKind("ClusterClass")
	if err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: release}, cc); err != nil {
		t.Errorf("the ClusterClass of the release: %v", err)
	}
}

// onlyItsRBAC checks that the manager's credentials are the ServiceAccount's and that the API
// server holds them to RBAC: what the installation does not grant is refused.
func onlyItsRBAC(t *testing.T, m *runningManager) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", m.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "escalate-"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "someone"}},
	}
	if err := c.Create(context.Background(), crb); !apierrors.IsForbidden(err) {
		t.Errorf("creating a ClusterRoleBinding with the manager's credentials: %v, want Forbidden", err)
	}
}

// podVolumes returns the Deployment's pod volumes by name.
func podVolumes(t *testing.T, deploy *unstructured.Unstructured) map[string]corev1.Volume {
	t.Helper()
	raw, _, _ := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "volumes")
	out := map[string]corev1.Volume{}
	for _, r := range raw {
		var v corev1.Volume
		if err := runtimeConvert(&unstructured.Unstructured{Object: r.(map[string]any)}, &v); err != nil {
			t.Fatal(err)
		}
		out[v.Name] = v
	}
	return out
}

// envValue resolves a container env entry as the kubelet does, for the sources the manifests use.
func envValue(t *testing.T, e corev1.EnvVar, c corev1.Container, ns string) string {
	t.Helper()
	switch {
	case e.ValueFrom == nil:
		return e.Value
	case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
		return ns
	case e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory":
		q, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok {
			t.Fatalf("env %s refers to limits.memory, which the container does not set", e.Name)
		}
		return strconv.FormatInt(q.Value(), 10)
	case e.ValueFrom.SecretKeyRef != nil:
		s := &corev1.Secret{}
		ref := e.ValueFrom.SecretKeyRef
		if err := env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: ref.Name}, s); err != nil {
			if apierrors.IsNotFound(err) && ptr.Deref(ref.Optional, false) {
				return ""
			}
			t.Fatalf("env %s from Secret %s: %v", e.Name, ref.Name, err)
		}
		return string(s.Data[ref.Key])
	}
	t.Fatalf("env %s: a source the test does not resolve: %+v", e.Name, e.ValueFrom)
	return ""
}

// kubeconfigFor writes a kubeconfig that authenticates as the ServiceAccount with a token the API
// server issues for it (TokenRequest), as a pod's projected token does.
func kubeconfigFor(t *testing.T, ns, sa, dir string) string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token of ServiceAccount %s/%s: %v", ns, sa, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "sa", Namespace: ns}
	cfg.CurrentContext = "sa"
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeServingCert writes a self-signed tls.crt and tls.key for localhost into dir, as the
// serving-certificate Secret would hold them.
func writeServingCert(t *testing.T, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{"tls.crt": {Type: "CERTIFICATE", Bytes: der}, "tls.key": {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// freePort returns a port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
