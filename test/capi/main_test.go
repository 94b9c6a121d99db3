// Package capi is the real-Cluster-API test tier: the operator's controllers and runtime
// extension run in-process against an API server on which the real Cluster API v1.14 managers
// (core, kubeadm bootstrap, kubeadm control plane, built by hack/capi-managers.sh) run as
// processes with the ClusterTopology and RuntimeSDK feature gates. ClusterClass conditions,
// topology objects, extension discovery and every lifecycle hook call come from Cluster API
// itself; only what needs machines (an initialized, then upgraded control plane) is simulated
// through status. A second API server stands in for the workload cluster.
package capi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
	"github.com/seed-a720dd5e/clusterstack-operator/test/capiflow"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// repository is where the in-process registry holds the releases, as in the public SCS registry.
const repository = "kaas/cluster-stacks"

var (
	// mgmt runs the Cluster API managers; workload stands in for the workload cluster.
	mgmt, workload *testenv.Environment
	registryHost   string
	hooksPort      int
	work           string
	operator       *capiflow.Operator
	// skipReason is set when the Cluster API managers are not configured (a plain go test).
	skipReason string
)

// Fixture releases: v1 and v2 of openstack-scs-1-32, both rendering Cluster API v1beta1 objects
// as the published SCS stacks do; v2 moves Kubernetes to v1.32.8 and gates its upgrade addons.
var fixtureReleases = []fixtures.Options{
	{StackVersion: "v1", Source: "openstack-scs-v1beta1", KubernetesVersion: "v1.32.5"},
	{StackVersion: "v2", Source: "openstack-scs-capi-v2", KubernetesVersion: "v1.32.8"},
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	logOut := io.Discard
	if os.Getenv("TEST_VERBOSE") != "" {
		logOut = os.Stderr
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(logOut), zap.UseDevMode(true)))

	start := time.Now()
	var err error
	mgmt, err = capiflow.StartManagement(testenv.Options{})
	if errors.Is(err, testenv.ErrNoManagers) {
		// Outside make: every test skips with the reason; under make the variable is always set
		// and a missing manager is an error below.
		skipReason = err.Error()
		return m.Run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the API server with Cluster API:", err)
		return 1
	}
	defer stopEnv(mgmt)
	fmt.Fprintf(os.Stderr, "capi: API server and Cluster API managers ready in %s\n", time.Since(start).Round(100*time.Millisecond))
	if workload, err = testenv.Start(testenv.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, "starting the workload API server:", err)
		return 1
	}
	defer stopEnv(workload)

	if work, err = os.MkdirTemp("", "capi-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(work)

	srv := httptest.NewServer(fixtures.RegistryHandler())
	defer srv.Close()
	registryHost = strings.TrimPrefix(srv.URL, "http://")
	for _, o := range fixtureReleases {
		dir, err := fixtures.Build(filepath.Join(work, "build"), o)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, err := fixtures.Push(context.Background(), dir, registryHost+"/"+repository, o.ReleaseName(), true); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}

	if hooksPort, err = capiflow.FreePort(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The in-process registry listens on loopback, which the egress policy refuses by default.
	operator, err = capiflow.NewOperator(capiflow.OperatorOptions{
		Env: mgmt, HooksPort: hooksPort, WorkDir: work,
		StoreOptions: []resolver.Option{resolver.WithConfinement(egress.AllowLoopbackForTests(), nil)},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := operator.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting the operator:", err)
		return 1
	}
	defer func() {
		if err := operator.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	code := m.Run()
	if code != 0 {
		fmt.Fprintln(os.Stderr, mgmt.ClusterAPI.LogTail(40))
	}
	return code
}

func stopEnv(env *testenv.Environment) {
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the test API server:", err)
	}
}
