package testenv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// Versions of the providers whose CRDs the real-Cluster-API environment installs from the module
// cache. They are the newest the module proxy serves that fit Cluster API v1.14 (CAPO v0.14 is
// the OpenStack provider of the Cluster API v1.14 contract, ORC v2.4 the resource controller it
// brings). They are not dependencies of the operator's module: only their CRD manifests are read.
const (
	CAPOModule  = "sigs.k8s.io/cluster-api-provider-openstack"
	CAPOVersion = "v0.14.2"
	ORCModule   = "github.com/k-orc/openstack-resource-controller/v2"
	ORCVersion  = "v2.4.0"
)

// ManagersDirEnv names the directory holding the Cluster API manager binaries that
// hack/capi-managers.sh builds (make test sets it).
const ManagersDirEnv = "CAPI_MANAGERS_DIR"

// ErrNoManagers is returned by StartWithClusterAPI when ManagersDirEnv is not set: a plain
// `go test` outside make has no managers. Tests skip on it; under make it is always set.
var ErrNoManagers = errors.New(ManagersDirEnv + " is not set: run `make capi-managers` and export " + ManagersDirEnv + " to its output, or run the tests with `make test`")

// manager is one Cluster API manager binary and the CRD and webhook manifests it serves.
type manager struct {
	// binary is the file name in the managers directory (see hack/capi-managers.sh).
	binary string
	// sub is the manager's directory in the cluster-api module.
	sub string
	// contractLabels are the CRD labels the manager's kustomization adds: the topology
	// controller reads them to map a referenced apiVersion to a contract.
	contractLabels map[string]string
}

var managers = []manager{
	{binary: "capi-core", sub: "core"},
	{binary: "capi-kubeadm-bootstrap", sub: "bootstrap/kubeadm", contractLabels: map[string]string{
		"cluster.x-k8s.io/v1beta1": "v1beta1", "cluster.x-k8s.io/v1beta2": "v1beta2",
	}},
	{binary: "capi-kubeadm-control-plane", sub: "controlplane/kubeadm", contractLabels: map[string]string{
		"cluster.x-k8s.io/v1beta1": "v1beta1", "cluster.x-k8s.io/v1beta2": "v1beta2",
	}},
}

// FeatureGates are the gates every Cluster API manager runs with: managed topologies
// (ClusterClass) and the Runtime SDK (lifecycle hooks), both off by default in v1.14.
const FeatureGates = "ClusterTopology=true,RuntimeSDK=true"

// ClusterAPI is the set of running Cluster API managers of an Environment.
type ClusterAPI struct {
	// CertDir holds tls.crt and tls.key, a self-signed certificate for 127.0.0.1 that the
	// managers serve their webhooks with; a runtime extension under test may serve with it too.
	CertDir string
	// CABundle is the PEM certificate that verifies CertDir's certificate, for caBundle fields.
	CABundle []byte
	// LogDir holds one log file per manager (<binary>.log).
	LogDir string

	tmp   string
	procs []*process
}

type process struct {
	name    string
	cmd     *exec.Cmd
	log     *os.File
	done    chan struct{}
	waitErr error
}

// ManagersDir returns the directory with the Cluster API manager binaries from ManagersDirEnv:
// ErrNoManagers when it is unset, an error naming the missing binary when it is incomplete.
func ManagersDir() (string, error) {
	dir := os.Getenv(ManagersDirEnv)
	if dir == "" {
		return "", ErrNoManagers
	}
	for _, m := range managers {
		if fi, err := os.Stat(filepath.Join(dir, m.binary)); err != nil || fi.IsDir() {
			return "", fmt.Errorf("finding the Cluster API manager %s in %s=%s (build it with make capi-managers): %w", m.binary, ManagersDirEnv, dir, errNotFile(err))
		}
	}
	return dir, nil
}

func errNotFile(err error) error {
	if err != nil {
		return err
	}
	return errors.New("is a directory")
}

// StartWithClusterAPI starts an API server like Start and runs the real Cluster API v1.14
// managers (core, kubeadm bootstrap, kubeadm control plane) against it as processes, with the
// ClusterTopology and RuntimeSDK feature gates: they serve their own conversion and admission
// webhooks, so ClusterClass conditions, topology and lifecycle hook calls come from Cluster API
// itself. Cluster API's CRDs get conversion webhooks pointing at their managers (the base CRDs,
// unlike a release's kustomized ones, have none); the OpenStack provider's (CAPO) and ORC's CRDs
// are those of Start (ProviderCRDs). No CAPO or ORC controller runs: their objects stay as
// created. Stop stops the managers too.
//
// It returns ErrNoManagers when ManagersDirEnv is unset.
func StartWithClusterAPI(opts Options) (env *Environment, err error) {
	binDir, err := ManagersDir()
	if err != nil {
		return nil, err
	}
	capiDir, err := moduleDir("sigs.k8s.io/cluster-api", "")
	if err != nil {
		return nil, err
	}
	providerCRDs, err := ProviderCRDs()
	if err != nil {
		return nil, err
	}

	capi := &ClusterAPI{}
	if capi.tmp, err = os.MkdirTemp("", "testenv-capi-"); err != nil {
		return nil, fmt.Errorf("creating the Cluster API work directory: %w", err)
	}
	capi.CertDir = filepath.Join(capi.tmp, "certs")
	capi.LogDir = os.Getenv("CAPI_LOG_DIR")
	if capi.LogDir == "" {
		capi.LogDir = filepath.Join(capi.tmp, "logs")
	}
	defer func() {
		if err != nil {
			capi.stop()
		}
	}()
	if capi.CABundle, err = writeServingCert(capi.CertDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(capi.LogDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the Cluster API log directory: %w", err)
	}

	type ports struct{ webhook, health, diagnostics int }
	mports := make([]ports, len(managers))
	for i := range mports {
		p, err := freePorts(3)
		if err != nil {
			return nil, err
		}
		mports[i] = ports{p[0], p[1], p[2]}
	}

	// Cluster API's CRDs, with conversion through their manager; CAPO's and ORC's as they are.
	var crds []*apiextensionsv1.CustomResourceDefinition
	var mutating []*admissionregistrationv1.MutatingWebhookConfiguration
	var validating []*admissionregistrationv1.ValidatingWebhookConfiguration
	for i, m := range managers {
		base := fmt.Sprintf("https://127.0.0.1:%d", mports[i].webhook)
		got, err := readCRDs(filepath.Join(capiDir, filepath.FromSlash(m.sub), "config", "crd", "bases"), nil)
		if err != nil {
			return nil, err
		}
		for _, crd := range got {
			addLabels(crd, m.contractLabels)
			if len(crd.Spec.Versions) > 1 {
				crd.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{
					Strategy: apiextensionsv1.WebhookConverter,
					Webhook: &apiextensionsv1.WebhookConversion{
						ClientConfig:             &apiextensionsv1.WebhookClientConfig{URL: new(base + "/convert"), CABundle: capi.CABundle},
						ConversionReviewVersions: []string{"v1"},
					},
				}
			}
		}
		crds = append(crds, got...)
		mw, vw, err := readWebhooks(filepath.Join(capiDir, filepath.FromSlash(m.sub), "config", "webhook", "manifests.yaml"), m.binary, base, capi.CABundle)
		if err != nil {
			return nil, err
		}
		mutating, validating = append(mutating, mw...), append(validating, vw...)
	}
	crds = append(crds, providerCRDs...)

	env, err = start(opts, false)
	if err != nil {
		return nil, err
	}
	env.ClusterAPI = capi
	defer func() {
		if err != nil {
			_ = env.env.Stop()
		}
	}()
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{CRDs: crds, ErrorIfPathMissing: true}); err != nil {
		return nil, fmt.Errorf("installing the Cluster API, CAPO and ORC CRDs: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, w := range mutating {
		if err := env.Client.Create(ctx, w); err != nil {
			return nil, fmt.Errorf("installing the webhook configuration %s: %w", w.Name, err)
		}
	}
	for _, w := range validating {
		if err := env.Client.Create(ctx, w); err != nil {
			return nil, fmt.Errorf("installing the webhook configuration %s: %w", w.Name, err)
		}
	}

	user, err := env.env.ControlPlane.AddUser(envtest.User{Name: "cluster-api", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding the Cluster API user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, fmt.Errorf("writing the Cluster API kubeconfig: %w", err)
	}
	kubeconfigPath := filepath.Join(capi.tmp, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return nil, fmt.Errorf("writing the Cluster API kubeconfig: %w", err)
	}

	for i, m := range managers {
		p, err := startProcess(filepath.Join(binDir, m.binary), m.binary, capi.LogDir, kubeconfigPath, []string{
			"--feature-gates=" + FeatureGates,
			"--leader-elect=false",
			fmt.Sprintf("--webhook-port=%d", mports[i].webhook),
			"--webhook-cert-dir=" + capi.CertDir,
			fmt.Sprintf("--health-addr=127.0.0.1:%d", mports[i].health),
			fmt.Sprintf("--diagnostics-address=127.0.0.1:%d", mports[i].diagnostics),
			"--insecure-diagnostics",
		})
		if err != nil {
			return nil, err
		}
		capi.procs = append(capi.procs, p)
	}
	// Ready once every webhook server answers: the readiness check of each manager includes it.
	for i, p := range capi.procs {
		if err := p.waitReady(fmt.Sprintf("http://127.0.0.1:%d/readyz", mports[i].health), 3*time.Minute); err != nil {
			return nil, err
		}
	}
	return env, nil
}

// stop stops the managers (their whole process groups) and removes the work directory, keeping
// the logs when CAPI_LOG_DIR chose their place.
func (c *ClusterAPI) stop() {
	var wg sync.WaitGroup
	for _, p := range c.procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
	c.procs = nil
	if c.tmp != "" {
		_ = os.RemoveAll(c.tmp)
	}
}

// LogTail returns the last lines of every manager's log, for a failing test's message.
func (c *ClusterAPI) LogTail(lines int) string {
	var b strings.Builder
	for _, m := range managers {
		data, err := os.ReadFile(filepath.Join(c.LogDir, m.binary+".log"))
		if err != nil {
			continue
		}
		all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(all) > lines {
			all = all[len(all)-lines:]
		}
		fmt.Fprintf(&b, "--- %s (last %d lines)\n%s\n", m.binary, len(all), strings.Join(all, "\n"))
	}
	return b.String()
}

func startProcess(path, name, logDir, kubeconfig string, args []string) (*process, error) {
	log, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("creating the log of %s: %w", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return nil, fmt.Errorf("starting the Cluster API manager %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = log.Close()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls the manager's readiness endpoint until it answers 200, the process exits or
// the timeout passes; a readiness probe, not a wait for something under test.
func (p *process) waitReady(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-p.done:
			return fmt.Errorf("the Cluster API manager %s exited before it was ready: %v:\n%s", p.name, p.waitErr, tail(p.log.Name(), 30))
		default:
		}
		if resp, err := hc.Get(url); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the Cluster API manager %s was not ready within %s:\n%s", p.name, timeout, tail(p.log.Name(), 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop sends SIGTERM to the manager's process group, and SIGKILL when it has not exited after
// 10 seconds, so that no process outlives the environment.
func (p *process) stop() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

func tail(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

func addLabels(crd *apiextensionsv1.CustomResourceDefinition, labels map[string]string) {
	if len(labels) == 0 {
		return
	}
	if crd.Labels == nil {
		crd.Labels = map[string]string{}
	}
	for k, v := range labels {
		crd.Labels[k] = v
	}
}

// readCRDs reads the CRDs of the YAML files in dir (those keep accepts, all for nil).
func readCRDs(dir string, keep func(name string) bool) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading CRDs: %w", err)
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") || (keep != nil && !keep(e.Name())) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading CRDs: %w", err)
		}
		for _, doc := range splitYAML(data) {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := yaml.Unmarshal(doc, crd); err != nil {
				return nil, fmt.Errorf("reading CRD %s: %w", path, err)
			}
			if crd.Kind == "CustomResourceDefinition" {
				crds = append(crds, crd)
			}
		}
	}
	if len(crds) == 0 {
		return nil, fmt.Errorf("reading CRDs: none in %s", dir)
	}
	return crds, nil
}

// readWebhooks reads a manager's webhook configurations and points them at the manager's
// webhook server (base is https://host:port) instead of a Service: the configurations are named
// after the manager, because every manager's file uses the same two names.
func readWebhooks(path, prefix, base string, caBundle []byte) ([]*admissionregistrationv1.MutatingWebhookConfiguration, []*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading webhook configurations: %w", err)
	}
	clientConfig := func(cc *admissionregistrationv1.WebhookClientConfig) error {
		if cc.Service == nil || cc.Service.Path == nil {
			return fmt.Errorf("reading webhook configurations %s: a webhook without a service path", path)
		}
		cc.URL = new(base + *cc.Service.Path)
		cc.Service = nil
		cc.CABundle = caBundle
		return nil
	}
	var mutating []*admissionregistrationv1.MutatingWebhookConfiguration
	var validating []*admissionregistrationv1.ValidatingWebhookConfiguration
	for _, doc := range splitYAML(data) {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, nil, fmt.Errorf("reading webhook configurations %s: %w", path, err)
		}
		switch meta.Kind {
		case "MutatingWebhookConfiguration":
			cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := yaml.Unmarshal(doc, cfg); err != nil {
				return nil, nil, fmt.Errorf("reading webhook configurations %s: %w", path, err)
			}
			cfg.Name = prefix + "-" + cfg.Name
			for i := range cfg.Webhooks {
				if err := clientConfig(&cfg.Webhooks[i].ClientConfig); err != nil {
					return nil, nil, err
				}
			}
			mutating = append(mutating, cfg)
		case "ValidatingWebhookConfiguration":
			cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := yaml.Unmarshal(doc, cfg); err != nil {
				return nil, nil, fmt.Errorf("reading webhook configurations %s: %w", path, err)
			}
			cfg.Name = prefix + "-" + cfg.Name
			for i := range cfg.Webhooks {
				if err := clientConfig(&cfg.Webhooks[i].ClientConfig); err != nil {
					return nil, nil, err
				}
			}
			validating = append(validating, cfg)
		}
	}
	if len(mutating)+len(validating) == 0 {
		return nil, nil, fmt.Errorf("reading webhook configurations: none in %s", path)
	}
	return mutating, validating, nil
}

func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
	return docs
}

// moduleDir returns the directory of a module in the module cache, downloading it through the
// module proxy when needed. An empty version means the version the operator's go.mod requires.
func moduleDir(module, version string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	arg, dir := module, RepoRoot()
	if version != "" {
		// Outside the operator's module: the module is not one of its dependencies, and
		// downloading it must not touch go.mod or go.sum.
		arg, dir = module+"@"+version, os.TempDir()
	}
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", arg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr == nil && info.Error != "" {
		return "", fmt.Errorf("downloading the module %s: %s", arg, info.Error)
	}
	if err != nil {
		return "", fmt.Errorf("downloading the module %s: %w: %s", arg, err, stderr.String())
	}
	if info.Dir == "" {
		return "", fmt.Errorf("downloading the module %s: no directory in %q", arg, out)
	}
	return info.Dir, nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeServingCert writes a self-signed certificate for 127.0.0.1 and localhost as tls.crt and
// tls.key into dir and returns it as PEM.
func writeServingCert(dir string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the serving key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "testenv-cluster-api"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:        true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating the serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding the serving key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("writing the serving certificate: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600); err != nil {
		return nil, fmt.Errorf("writing the serving certificate: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("writing the serving key: %w", err)
	}
	return certPEM, nil
}
