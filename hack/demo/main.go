// Command demo is the embedded-default run (`make demo`): without a cloud account or a cluster it
// shows the whole product on local parts. It starts a local control plane (envtest's
// kube-apiserver and etcd) on which the real Cluster API managers run (core, kubeadm bootstrap,
// kubeadm control plane; built by hack/capi-managers.sh, passed in CAPI_MANAGERS_DIR), a second
// API server standing in for the workload cluster, an in-process OCI registry holding two
// releases of a sample OpenStack cluster stack (with node-images.yaml), an in-process OpenStack
// double (Keystone + Glance) with a web server for the node image files, and the operator's
// controllers and runtime extension in-process.
//
// It registers the extension with Cluster API (ExtensionConfig), creates a credentials Secret and
// an OpenStackClusterStackReleaseTemplate, applies config/samples/demo_clusterstack.yaml (whose
// providerRef names the template) and prints progress until the ClusterClasses are accepted by
// Cluster API and the node images are in Glance, with kubectl-get-style tables. Then it creates a
// Cluster with a managed topology on v1's ClusterClass, prints the objects Cluster API creates for
// it, simulates the control plane's machines reporting initialized (no machines run), prints the
// addons Cluster API's AfterControlPlaneInitialized call put into the workload API server, bumps
// the Cluster to v2 and prints, as it happens, Cluster API holding the upgrade on
// BeforeClusterUpgrade until v2's addons are done and then upgrading; it ends with the hook calls
// Cluster API made. It exits 1 with the reason when the timeout passes, and stops every process
// it started.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	openstackcontrollers "github.com/seed-a720dd5e/clusterstack-operator/controllers/openstack"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/egress"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/nodeimage"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/source"
	"github.com/seed-a720dd5e/clusterstack-operator/test/capiflow"
	"github.com/seed-a720dd5e/clusterstack-operator/test/fixtures"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// repository is where the demo registry holds the releases, as in the public SCS registry.
const repository = "kaas/cluster-stacks"

func main() {
	timeout := flag.Duration("timeout", 10*time.Minute, "Give up (exit 1) when the demo has not finished this long after its API servers started.")
	sample := flag.String("sample", filepath.Join(testenv.RepoRoot(), "config", "samples", "demo_clusterstack.yaml"), "ClusterStack manifest to apply.")
	verbose := flag.Bool("v", false, "Show the operator's logs.")
	flag.Parse()

	if *verbose {
		ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	} else {
		ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	}

	if err := run(*sample, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

// demoReleases are the two releases of the sample stack the registry holds, shaped like the
// published SCS stacks (Cluster API objects in v1beta1 form, converted by Cluster API's own
// webhooks) with node images: v2 moves Kubernetes to v1.32.8, and its BeforeClusterUpgrade addon
// stages wait for kube-system/upgrade-gate in the workload cluster.
var demoReleases = []fixtures.Options{
	{StackVersion: "v1", Source: "openstack-scs-v1beta1", KubernetesVersion: fromVersion, NodeImages: true},
	{StackVersion: "v2", Source: "openstack-scs-capi-v2", KubernetesVersion: toVersion, NodeImages: true},
}

func run(samplePath string, timeout time.Duration) (reterr error) {
	start := time.Now()
	step := func(format string, args ...any) {
		fmt.Printf("[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}

	cs, err := readSample(samplePath)
	if err != nil {
		return err
	}
	var classes []string
	for _, o := range demoReleases {
		n, err := o.Name()
		if err != nil {
			return err
		}
		classes = append(classes, n.ClusterClassName())
	}

	// Both API servers start at once: each start mostly waits on its own processes.
	step("Starting a local control plane (kube-apiserver, etcd) with the real Cluster API managers (core, kubeadm bootstrap, kubeadm control plane) as processes, and a second API server standing in for the workload cluster")
	type started struct {
		env *testenv.Environment
		err error
	}
	workloadStarted := make(chan started, 1)
	go func() {
		env, err := testenv.Start(testenv.Options{})
		workloadStarted <- started{env, err}
	}()
	env, err := capiflow.StartManagement(testenv.Options{})
	w := <-workloadStarted
	if w.env != nil {
		defer func() {
			step("Stopping the workload API server")
			if err := w.env.Stop(); err != nil && reterr == nil {
				reterr = err
			}
		}()
	}
	if env != nil {
		defer func() {
			step("Stopping the control plane and the Cluster API managers")
			if err := env.Stop(); err != nil && reterr == nil {
				reterr = err
			}
		}()
	}
	if errors.Is(err, testenv.ErrNoManagers) {
		return fmt.Errorf("%w (make demo builds them)", err)
	}
	if err != nil {
		return err
	}
	if w.err != nil {
		return fmt.Errorf("starting the workload API server: %w", w.err)
	}
	workload := w.env
	step("  management API server and Cluster API managers ready; workload API server at %s", workload.Config.Host)
	step("Starting the OpenStack double (Keystone + Glance, web-download off) and a web server for the node image files")
	cloud, err := startCloud()
	if err != nil {
		return err
	}
	defer cloud.Close()
	step("  Keystone at %s", cloud.server.AuthURL())

	srv := httptest.NewServer(fixtures.RegistryHandler())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	work, err := os.MkdirTemp("", "clusterstack-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	step("Publishing two releases of the sample OpenStack cluster stack to the in-process OCI registry %s/%s", host, repository)
	for _, opts := range demoReleases {
		dir, err := fixtures.Build(filepath.Join(work, "build"), opts)
		if err != nil {
			return err
		}
		if _, err := fixtures.Push(context.Background(), dir, host+"/"+repository, opts.ReleaseName(), true); err != nil {
			return err
		}
		step("  pushed %s", opts.ReleaseName())
	}

	hooksPort, err := capiflow.FreePort()
	if err != nil {
		return err
	}
	// The registry is the operator's default source, as OCI_REGISTRY/OCI_REPOSITORY make it in
	// a deployment; the sample ClusterStack names no source of its own.
	defaultSource := source.Config{Type: source.TypeOCI, OCI: source.OCIConfig{Registry: host, Repository: repository, PlainHTTP: true}}
	// The registry and the file server listen on loopback, which the egress policy refuses by
	// default; the releases' image host (images.invalid) does not resolve and is redirected.
	policy := &egress.Policy{AllowCIDRs: egress.AllowLoopbackForTests().AllowCIDRs, AllowHosts: []string{"images.invalid"}}
	operator, err := capiflow.NewOperator(capiflow.OperatorOptions{
		Env: env, HooksPort: hooksPort, WorkDir: filepath.Join(work, "operator"),
		DefaultSource: defaultSource,
		StoreOptions:  []resolver.Option{resolver.WithConfinement(policy, nil)},
		// The node image controllers share the Store (one cache instance per directory), as in
		// main.go, and get a download client that sends the releases' image URLs
		// (images.invalid) to the file server.
		Setup: func(mgr ctrl.Manager, releases *resolver.Resolver) error {
			return openstackcontrollers.Setup(mgr, openstackcontrollers.Options{Releases: releases, HTTPClient: cloud.redirect, NodeImage: nodeimage.Options{Egress: policy}})
		},
	})
	if err != nil {
		return err
	}
	if err := operator.Start(); err != nil {
		return err
	}
	defer func() {
		if err := operator.Stop(); err != nil && reterr == nil {
			reterr = err
		}
	}()
	step("Operator started (ClusterStack, ClusterStackRelease, ClusterAddon, OpenStackClusterStackRelease and OpenStackNodeImageRelease controllers; runtime extension on 127.0.0.1:%d)", hooksPort)

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	seen := map[string]string{}
	p := &poller{ctx: ctx, timeout: timeout, step: step, report: reporter(seen, step)}
	c := env.Client
	// The extension first: Cluster API records the hooks a new Cluster is owed when the Cluster
	// is created, and only calls extensions it discovered.
	if err := c.Create(ctx, capiflow.ExtensionConfig(hooksPort, env.ClusterAPI.CABundle)); err != nil {
		return fmt.Errorf("creating the ExtensionConfig: %w", err)
	}
	step("Created ExtensionConfig %s (the operator's runtime extension, for every namespace)", capiflow.ExtensionName)
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cs.Namespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	secretName, err := cloud.createProvider(ctx, c, cs)
	if err != nil {
		return err
	}
	step("Created Secret %s/%s (clouds.yaml for the double) and OpenStackClusterStackReleaseTemplate %s (identityRef -> %s)", cs.Namespace, secretName, cs.Spec.ProviderRef.Name, secretName)
	if err := c.Create(ctx, cs); err != nil {
		return fmt.Errorf("applying %s: %w", samplePath, err)
	}
	step("Applied ClusterStack %s/%s (versions %v, autoSubscribe %t)", cs.Namespace, cs.Name, cs.Spec.Versions, cs.Spec.AutoSubscribe)

	if err := p.waitFor("the ClusterClasses and node images", func() (bool, string, error) {
		done, reason, err := progress(ctx, c, cs, classes, p.report)
		if err != nil || !done {
			return false, reason, err
		}
		return nodeImageProgress(ctx, c, cs.Namespace, p.report)
	}); err != nil {
		return err
	}
	step("ClusterClasses (accepted by Cluster API) and node images ready")
	fmt.Println()
	if err := printTables(ctx, c, cs.Namespace, os.Stdout); err != nil {
		return err
	}
	fmt.Println()
	if err := cloud.printOpenStackTables(ctx, c, cs.Namespace, os.Stdout); err != nil {
		return err
	}
	fmt.Println()
	if err := runClusterAPI(p, c, workload, cs.Namespace, classes[0], classes[1], os.Stdout); err != nil {
		return err
	}
	step("Demo done")
	return nil
}

func readSample(path string) (*clusterstackv1alpha1.ClusterStack, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the sample ClusterStack: %w", err)
	}
	cs := &clusterstackv1alpha1.ClusterStack{}
	if err := yaml.UnmarshalStrict(data, cs); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	if cs.Namespace == "" {
		cs.Namespace = "demo"
	}
	return cs, nil
}

// progress prints what changed since the last call and reports whether the ClusterStack is
// ready with every wanted ClusterClass present and accepted by Cluster API (its variables valid
// at the current generation).
func progress(ctx context.Context, c client.Client, want *clusterstackv1alpha1.ClusterStack, wantClasses []string, report func(key, line string)) (bool, string, error) {
	cs := &clusterstackv1alpha1.ClusterStack{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(want), cs); err != nil {
		return false, "", err
	}
	ready := readyOf(cs.Status.Conditions)
	report("cs", fmt.Sprintf("ClusterStack %s: Ready=%s %s %s", cs.Name, ready.Status, ready.Reason, ready.Message))

	var csrs clusterstackv1alpha1.ClusterStackReleaseList
	if err := c.List(ctx, &csrs, client.InNamespace(cs.Namespace)); err != nil {
		return false, "", err
	}
	for _, r := range csrs.Items {
		rc := readyOf(r.Status.Conditions)
		report("csr/"+r.Name, fmt.Sprintf("ClusterStackRelease %s: Ready=%s %s %s", r.Name, rc.Status, rc.Reason, rc.Message))
	}
	var classes clusterv1.ClusterClassList
	if err := c.List(ctx, &classes, client.InNamespace(cs.Namespace)); err != nil {
		return false, "", err
	}
	accepted := map[string]bool{}
	for _, cc := range classes.Items {
		vr := meta.FindStatusCondition(cc.Status.Conditions, clusterv1.ClusterClassVariablesReadyCondition)
		verdict := "not reported yet"
		if vr != nil {
			verdict = fmt.Sprintf("VariablesReady=%s %s", vr.Status, vr.Message)
			accepted[cc.Name] = vr.Status == metav1.ConditionTrue && vr.ObservedGeneration == cc.Generation
		}
		report("cc/"+cc.Name, fmt.Sprintf("ClusterClass %s applied; Cluster API: %s", cc.Name, verdict))
	}
	if ready.Status != metav1.ConditionTrue || cs.Status.ObservedGeneration != cs.Generation || len(csrs.Items) == 0 {
		return false, "ClusterStack " + ready.Reason + ": " + ready.Message, nil
	}
	for _, r := range csrs.Items {
		if !r.Status.Ready {
			return false, "ClusterStackRelease " + r.Name + " not ready", nil
		}
	}
	for _, name := range wantClasses {
		if !accepted[name] {
			return false, "waiting for Cluster API to accept ClusterClass " + name, nil
		}
	}
	return true, "", nil
}

// reporter returns a function that prints a line when it differs from the last one printed for
// the same key.
func reporter(seen map[string]string, step func(string, ...any)) func(key, line string) {
	return func(key, line string) {
		if seen[key] != line {
			seen[key] = line
			step("  %s", line)
		}
	}
}

func classNameOf(release string) string {
	if n, err := name.Parse(release); err == nil {
		return n.ClusterClassName()
	}
	return release
}

func readyOf(conds []metav1.Condition) metav1.Condition {
	for _, c := range conds {
		if c.Type == clusterstackv1alpha1.ReadyCondition {
			return c
		}
	}
	return metav1.Condition{Status: metav1.ConditionUnknown, Reason: "NotYetReported"}
}

// printTables prints what `kubectl get clusterstacks,clusterstackreleases,clusterclasses` shows.
func printTables(ctx context.Context, c client.Client, namespace string, out io.Writer) error {
	w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	var stacks clusterstackv1alpha1.ClusterStackList
	if err := c.List(ctx, &stacks, client.InNamespace(namespace)); err != nil {
		return err
	}
	fmt.Fprintln(w, "CLUSTERSTACK\tPROVIDER\tSTACK\tK8S\tCHANNEL\tAUTOSUBSCRIBE\tUSABLE\tLATEST\tREADY\tREASON")
	for _, s := range stacks.Items {
		r := readyOf(s.Status.Conditions)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%t\t%s\t%s\t%s\t%s\n", s.Name, s.Spec.Provider, s.Spec.Name, s.Spec.KubernetesVersion, s.Spec.Channel, s.Spec.AutoSubscribe, s.Status.UsableVersions, s.Status.LatestRelease, r.Status, r.Reason)
	}
	fmt.Fprintln(w)

	var releases clusterstackv1alpha1.ClusterStackReleaseList
	if err := c.List(ctx, &releases, client.InNamespace(namespace)); err != nil {
		return err
	}
	sort.Slice(releases.Items, func(i, j int) bool { return releases.Items[i].Name < releases.Items[j].Name })
	readyByClass := map[string]string{}
	fmt.Fprintln(w, "CLUSTERSTACKRELEASE\tK8S VERSION\tREADY\tREASON\tRESOURCES")
	for _, r := range releases.Items {
		rc := readyOf(r.Status.Conditions)
		readyByClass[classNameOf(r.Name)] = fmt.Sprintf("%t\t%s (release %s)", r.Status.Ready, rc.Reason, r.Name)
		fmt.Fprintf(w, "%s\t%s\t%t\t%s\t%d\n", r.Name, r.Status.KubernetesVersion, r.Status.Ready, rc.Reason, len(r.Status.Resources))
	}
	fmt.Fprintln(w)

	var classes clusterv1.ClusterClassList
	if err := c.List(ctx, &classes, client.InNamespace(namespace)); err != nil {
		return err
	}
	fmt.Fprintln(w, "CLUSTERCLASS\tVARIABLES\tREADY\tREASON")
	for _, cc := range classes.Items {
		state, ok := readyByClass[cc.Name]
		if !ok {
			state = "false\tNo release"
		}
		fmt.Fprintf(w, "%s\t%d\t%s\n", cc.Name, len(cc.Spec.Variables), state)
	}
	return w.Flush()
}
