// Package testenv starts a real kube-apiserver and etcd (controller-runtime's envtest) with the
// operator's CRDs, Cluster API's CRDs and the real CRDs of the OpenStack provider (CAPO) and ORC
// installed, for integration tests and the demo. Start one per test package (in TestMain), not
// one per test: a start costs several seconds. StartWithClusterAPI also runs the real Cluster API
// managers against it (the test/capi tier).
package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	// The Cluster API CRDs are read from the sigs.k8s.io/cluster-api module in the module cache;
	// this import keeps that module (not only its api module) in go.mod, so `go list -m` finds it.
	_ "sigs.k8s.io/cluster-api/util/conditions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	infrav1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
)

// Environment is a running API server with every CRD the operator works with.
type Environment struct {
	// Config reaches the API server as a cluster admin.
	Config *rest.Config
	// Client is an uncached client on Config with Scheme.
	Client client.Client
	// Scheme knows the core Kubernetes types, the operator's API and Cluster API v1beta2.
	Scheme *k8sruntime.Scheme
	// ClusterAPI is set by StartWithClusterAPI: the running Cluster API managers.
	ClusterAPI *ClusterAPI

	env *envtest.Environment
}

// Options change what Start installs.
type Options struct {
	// ExtraCRDDirs are more directories of CRD manifests to install.
	ExtraCRDDirs []string
	// WebhookInstallOptions, when it holds webhook configurations, installs them pointing at a
	// local webhook server; serve them from a manager whose webhook server uses the host, port and
	// certificate directory of Environment.WebhookInstallOptions. Empty installs no webhooks.
	WebhookInstallOptions envtest.WebhookInstallOptions
	// WatchCache serves lists and watches from the API server's watch cache, as a production API
	// server does. Off by default: then the first LIST of each custom resource is served at once
	// instead of being answered "429, retry after 1s" while its cache fills, which tests need not
	// wait for. Benchmarks of the start-up path turn it on, to see what a real cluster does.
	WatchCache bool
}

// Start starts the API server and installs the CRDs. The caller must Stop it.
func Start(opts Options) (*Environment, error) {
	return start(opts, true)
}

// start starts the API server with the operator's CRDs and opts.ExtraCRDDirs; withBaseCRDs adds
// Cluster API's base CRDs and ProviderCRDs (StartWithClusterAPI installs its own variants).
func start(opts Options, withBaseCRDs bool) (*Environment, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	root := RepoRoot()
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}

	dirs := []string{filepath.Join(root, "config", "crd", "bases")}
	var crds []*apiextensionsv1.CustomResourceDefinition
	if withBaseCRDs {
		capiDirs, err := ClusterAPICRDDirs()
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, capiDirs...)
		if crds, err = ProviderCRDs(); err != nil {
			return nil, err
		}
	}
	dirs = append(dirs, opts.ExtraCRDDirs...)

	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     dirs,
		CRDs:                  crds,
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
		WebhookInstallOptions: opts.WebhookInstallOptions,
		// Generous: the first start on a busy 2-core machine is slow.
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	if !opts.WatchCache {
		env.ControlPlane.GetAPIServer().Configure().Set("watch-cache", "false")
	}

	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the test API server (assets in %s): %w", assets, err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("creating a client for the test API server: %w", err)
	}
	return &Environment{Config: cfg, Client: c, Scheme: scheme, env: env}, nil
}

// Stop stops the Cluster API managers (if any), then the API server and etcd.
func (e *Environment) Stop() error {
	if e.ClusterAPI != nil {
		e.ClusterAPI.stop()
	}
	return e.env.Stop()
}

// AddUser provisions a user of the API server with the given name and groups and returns a
// config that authenticates as that user. The API server authorises with RBAC: the user may do
// what its groups and the RBAC objects the test creates allow (every authenticated user may ask
// SelfSubjectAccessReviews and read discovery).
func (e *Environment) AddUser(name string, groups []string) (*rest.Config, error) {
	u, err := e.env.ControlPlane.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding user %s to the test API server: %w", name, err)
	}
	return u.Config(), nil
}

// WebhookInstallOptions returns the webhook options after start: LocalServingHost,
// LocalServingPort and LocalServingCertDir are where the API server expects the webhook server.
func (e *Environment) WebhookInstallOptions() *envtest.WebhookInstallOptions {
	return &e.env.WebhookInstallOptions
}

// CRDs returns the CRDs installed at start.
func (e *Environment) CRDs() []*apiextensionsv1.CustomResourceDefinition {
	return e.env.CRDs
}

// NewScheme returns a scheme with the core Kubernetes types, the operator's API and Cluster API's
// core v1beta2 types.
func NewScheme() (*k8sruntime.Scheme, error) {
	s := k8sruntime.NewScheme()
	for _, add := range []func(*k8sruntime.Scheme) error{
		clientgoscheme.AddToScheme,
		apiextensionsv1.AddToScheme,
		clusterstackv1alpha1.AddToScheme,
		infrav1alpha1.AddToScheme,
		clusterv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("building the test scheme: %w", err)
		}
	}
	return s, nil
}

// RepoRoot returns the repository's top directory, found from this source file so that tests
// work from any package directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AssetsDir returns a directory with kube-apiserver and etcd: KUBEBUILDER_ASSETS when it holds
// both, else what hack/envtest-assets.sh builds (or finds in its cache), so that a plain `go test`
// works on a fresh machine too.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" && hasBinaries(dir) {
		return dir, nil
	}
	script := filepath.Join(RepoRoot(), "hack", "envtest-assets.sh")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("bash", script)
	// The script's progress (a cold build takes minutes) goes on to the test's stderr.
	cmd.Stdout, cmd.Stderr = &stdout, io.MultiWriter(os.Stderr, &stderr)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building envtest binaries with %s: %w: %s", script, err, stderr.String())
	}
	dir := strings.TrimSpace(stdout.String())
	if !hasBinaries(dir) {
		return "", fmt.Errorf("building envtest binaries with %s: %q holds no kube-apiserver and etcd", script, dir)
	}
	return dir, nil
}

func hasBinaries(dir string) bool {
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

// ClusterAPICRDDirs returns the CRD directories of the cluster-api module in the module cache
// (core, kubeadm bootstrap and control plane), so that the CRDs always match the module version
// in go.mod and are never copied into the repository. CAPI_CRD_DIRS (separated by the OS path
// list separator) overrides it.
func ClusterAPICRDDirs() ([]string, error) {
	if v := os.Getenv("CAPI_CRD_DIRS"); v != "" {
		return filepath.SplitList(v), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/cluster-api")
	cmd.Dir = RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return nil, fmt.Errorf("locating the cluster-api module: %w: %s", err, exitErr.Stderr)
		}
		return nil, fmt.Errorf("locating the cluster-api module: %w", err)
	}
	modDir := strings.TrimSpace(string(out))
	if modDir == "" {
		// The module is required but not downloaded yet.
		dl := exec.CommandContext(ctx, "go", "mod", "download", "-json", "sigs.k8s.io/cluster-api")
		dl.Dir = RepoRoot()
		out, err := dl.Output()
		if err != nil {
			return nil, fmt.Errorf("downloading the cluster-api module: %w", err)
		}
		var info struct{ Dir string }
		if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
			return nil, fmt.Errorf("downloading the cluster-api module: no module directory in %q", out)
		}
		modDir = info.Dir
	}
	var dirs []string
	for _, sub := range []string{"core", "bootstrap/kubeadm", "controlplane/kubeadm"} {
		dir := filepath.Join(modDir, filepath.FromSlash(sub), "config", "crd", "bases")
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("finding Cluster API CRDs: %w", err)
		}
		dirs = append(dirs, dir)
	}
	return dirs, nil
}
