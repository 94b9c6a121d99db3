package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	runtimehooksv1 "sigs.k8s.io/cluster-api/api/runtime/hooks/v1alpha1"
	runtimev1 "sigs.k8s.io/cluster-api/api/runtime/v1beta2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/hooks"
	"github.com/seed-a720dd5e/clusterstack-operator/test/capiflow"
	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

// The demo's Cluster: v1 of the sample stack, then the upgrade to v2 (class and Kubernetes).
const (
	clusterName = "demo-cluster"
	fromVersion = "v1.32.5"
	toVersion   = "v1.32.8"
	// heldCalls is how many BeforeClusterUpgrade calls the demo lets Cluster API make while the
	// upgrade is held before it lets v2's addons finish.
	heldCalls = 3
)

// poller waits for conditions until the demo's deadline, printing what changes.
type poller struct {
	ctx     context.Context
	timeout time.Duration
	step    func(string, ...any)
	report  func(key, line string)
}

// waitFor polls check until it reports done or fails; when the deadline passes it fails with
// what it waited for and the last state check reported.
func (p *poller) waitFor(what string, check func() (done bool, state string, err error)) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := "nothing observed yet"
	for {
		done, state, err := check()
		if state != "" {
			last = state
		}
		if p.ctx.Err() != nil {
			return fmt.Errorf("timed out after %s waiting for %s: last seen: %s", p.timeout, what, last)
		}
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if done {
			return nil
		}
		select {
		case <-p.ctx.Done():
		case <-tick.C:
		}
	}
}

// hookCalls returns how often Cluster API called hook so far.
func hookCalls(hook string) (float64, error) {
	calls, err := capiflow.HookCalls()
	return calls[hook], err
}

// runClusterAPI is the second half of the demo: a Cluster on v1's ClusterClass gets its
// topology from Cluster API, its addons land in the workload API server when Cluster API calls
// AfterControlPlaneInitialized, and its upgrade to v2 is held by BeforeClusterUpgrade until v2's
// addons are done.
func runClusterAPI(p *poller, c client.Client, workload *testenv.Environment, ns, v1Class, v2Class string, out io.Writer) error {
	ctx := p.ctx
	ext := &runtimev1.ExtensionConfig{}
	ext.Name = capiflow.ExtensionName
	if err := p.waitFor("Cluster API to discover the runtime extension", func() (bool, string, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(ext), ext); err != nil {
			return false, "", err
		}
		cond, handlers := capiflow.Discovery(ext)
		if cond == nil {
			return false, "no Discovered condition yet", nil
		}
		state := fmt.Sprintf("Discovered=%s %s, handlers %v", cond.Status, strings.TrimSpace(cond.Reason+" "+cond.Message), handlers)
		p.report("ext", "Cluster API: ExtensionConfig "+ext.Name+" "+state)
		return cond.Status == "True" && len(handlers) == len(capiflow.WantHandlers()), state, nil
	}); err != nil {
		return err
	}

	secret, err := capiflow.KubeconfigSecret(workload.Config, ns, clusterName)
	if err != nil {
		return err
	}
	if err := c.Create(ctx, secret); err != nil {
		return fmt.Errorf("creating the kubeconfig Secret: %w", err)
	}
	cluster := capiflow.TopologyCluster(ns, clusterName, v1Class, fromVersion)
	if err := c.Create(ctx, cluster); err != nil {
		return fmt.Errorf("creating the Cluster: %w", err)
	}
	p.step("Created Secret %s/%s (kubeconfig of the workload API server) and Cluster %s/%s (topology: class %s, Kubernetes %s)",
		ns, secret.Name, ns, clusterName, v1Class, fromVersion)

	var topo *capiflow.Topology
	if err := p.waitFor("Cluster API to create the topology", func() (bool, string, error) {
		var err error
		topo, err = capiflow.GetTopology(ctx, c, cluster)
		if errors.Is(err, capiflow.ErrNotYet) {
			return false, err.Error(), nil
		}
		return err == nil, "", err
	}); err != nil {
		return err
	}
	p.step("Cluster API created the topology from the ClusterClass")
	fmt.Fprintln(out)
	if err := printTopology(out, cluster, topo); err != nil {
		return err
	}
	fmt.Fprintln(out)

	// What the KubeadmControlPlane controller reports once kubeadm init ran on a machine (no
	// machines run here); Cluster API then owes the Cluster AfterControlPlaneInitialized.
	kcp := topo.ControlPlane
	p.step("Simulating the control plane's machines: KubeadmControlPlane %s reports initialized, %s", kcp.GetName(), fromVersion)
	if err := capiflow.SetControlPlaneStatus(ctx, c, kcp, fromVersion, true); err != nil {
		return err
	}
	acpi := capiflow.HookName(runtimehooksv1.AfterControlPlaneInitialized)
	if err := p.waitFor("Cluster API to call AfterControlPlaneInitialized", func() (bool, string, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(cluster), cluster); err != nil {
			return false, "", err
		}
		n, err := hookCalls(acpi)
		initialized := ptr.Deref(cluster.Status.Initialization.ControlPlaneInitialized, false)
		state := fmt.Sprintf("Cluster controlPlaneInitialized=%t, pending hooks %q, %s calls %v", initialized, capiflow.PendingHooks(cluster), acpi, n)
		return initialized && n >= 1 && !strings.Contains(capiflow.PendingHooks(cluster), acpi), state, err
	}); err != nil {
		return err
	}
	p.step("Cluster API: control plane initialized; called %s", acpi)
	ca, err := waitAddons(p, c, ns, v1Class)
	if err != nil {
		return err
	}
	p.step("v1 addons applied in the workload cluster (ClusterAddon %s: %d objects)", ca.Name, len(ca.Status.Resources))
	fmt.Fprintln(out)
	if err := printWorkloadObjects(ctx, out, workload.Client, ca); err != nil {
		return err
	}
	fmt.Fprintln(out)

	return upgrade(p, c, workload, cluster, kcp, v2Class, out)
}

// upgrade moves the Cluster to v2 and shows Cluster API holding the upgrade on BeforeClusterUpgrade
// until v2's addons are done, then upgrading the control plane and calling AfterClusterUpgrade.
func upgrade(p *poller, c client.Client, workload *testenv.Environment, cluster *clusterv1.Cluster, kcp *unstructured.Unstructured, v2Class string, out io.Writer) error {
	ctx := p.ctx
	bcu := capiflow.HookName(runtimehooksv1.BeforeClusterUpgrade)
	before, err := hookCalls(bcu)
	if err != nil {
		return err
	}
	base := cluster.DeepCopy()
	cluster.Spec.Topology.ClassRef.Name = v2Class
	cluster.Spec.Topology.Version = toVersion
	if err := c.Patch(ctx, cluster, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("upgrading the Cluster: %w", err)
	}
	upgradeStart := time.Now()
	p.step("Upgrading Cluster %s: class %s, Kubernetes %s -> %s", cluster.Name, v2Class, fromVersion, toVersion)

	// v2's BeforeClusterUpgrade stages wait for kube-system/upgrade-gate in the workload cluster
	// (see test/fixtures/stacks/openstack-scs-capi-v2): the demo opens it once Cluster API has
	// been held for a few calls, playing the rollout that finishes the new addons.
	var gateOpened time.Duration
	if err := p.waitFor("Cluster API to upgrade the control plane after the addons", func() (bool, string, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(cluster), cluster); err != nil {
			return false, "", err
		}
		cond := capiflow.TopologyReconciled(cluster)
		if cond != nil {
			p.report("topo", fmt.Sprintf("Cluster API: TopologyReconciled=%s %s: %s", cond.Status, cond.Reason, oneLine(cond.Message)))
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(kcp), kcp); err != nil {
			return false, "", err
		}
		version, err := capiflow.ControlPlaneVersion(kcp)
		if err != nil {
			return false, "", err
		}
		p.report("kcp", fmt.Sprintf("KubeadmControlPlane %s spec.version %s", kcp.GetName(), version))
		ca := &clusterstackv1alpha1.ClusterAddon{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: cluster.Namespace, Name: addon.ClusterAddonName(cluster.Name)}, ca); err != nil {
			return false, "", err
		}
		p.report("addon", "ClusterAddon "+addonState(ca))
		n, err := hookCalls(bcu)
		if err != nil {
			return false, "", err
		}
		state := fmt.Sprintf("KubeadmControlPlane at %s, %s calls %v, ClusterAddon %s", version, bcu, n-before, addonState(ca))
		if version == toVersion {
			if gateOpened == 0 {
				return false, state, errors.New("cluster API upgraded the control plane before the addons were done")
			}
			return true, state, nil
		}
		held := cond != nil && cond.Reason == clusterv1.ClusterTopologyReconciledClusterUpgradingReason &&
			strings.Contains(cond.Message, "BeforeClusterUpgrade")
		if gateOpened == 0 && held && n-before >= heldCalls {
			p.step("Held: %v %s calls answered 'retry', KubeadmControlPlane still %s; now the new CNI finishes (the demo opens kube-system/upgrade-gate in the workload cluster)", n-before, bcu, version)
			gate := &corev1.ConfigMap{Data: map[string]string{"open": "true"}}
			gate.Namespace, gate.Name = "kube-system", "upgrade-gate"
			if err := workload.Client.Create(ctx, gate); err != nil {
				return false, state, fmt.Errorf("opening the upgrade gate: %w", err)
			}
			gateOpened = time.Since(upgradeStart)
		}
		return false, state, nil
	}); err != nil {
		return err
	}
	// The hook let go only once v2's addons were done: check that it answered from them.
	ca := &clusterstackv1alpha1.ClusterAddon{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: cluster.Namespace, Name: addon.ClusterAddonName(cluster.Name)}, ca); err != nil {
		return err
	}
	if done, msg := hooks.Done(ca, cluster); !done {
		return fmt.Errorf("cluster API upgraded the control plane, but the addons are not done: %s", msg)
	}
	total, err := hookCalls(bcu)
	if err != nil {
		return err
	}
	p.step("Upgrade released %.1fs after the bump (held %.1fs, %v %s calls, until v2's addons were done): Cluster API set KubeadmControlPlane to %s",
		time.Since(upgradeStart).Seconds(), gateOpened.Seconds(), total-before, bcu, toVersion)
	fmt.Fprintln(out)
	if err := printWorkloadObjects(ctx, out, workload.Client, ca); err != nil {
		return err
	}
	fmt.Fprintln(out)

	p.step("Simulating the control plane's machines: KubeadmControlPlane %s reports %s", kcp.GetName(), toVersion)
	if err := capiflow.SetControlPlaneStatus(ctx, c, kcp, toVersion, true); err != nil {
		return err
	}
	acu := capiflow.HookName(runtimehooksv1.AfterClusterUpgrade)
	if err := p.waitFor("Cluster API to call AfterClusterUpgrade", func() (bool, string, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(cluster), cluster); err != nil {
			return false, "", err
		}
		n, err := hookCalls(acu)
		return n >= 1 && !strings.Contains(capiflow.PendingHooks(cluster), acu), fmt.Sprintf("pending hooks %q, %s calls %v", capiflow.PendingHooks(cluster), acu, n), err
	}); err != nil {
		return err
	}
	p.step("Cluster API called %s: upgrade done", acu)
	fmt.Fprintln(out)
	return printHookCalls(out)
}

// waitAddons waits until the ClusterAddon of the demo's Cluster is ready for class.
func waitAddons(p *poller, c client.Client, namespace, class string) (*clusterstackv1alpha1.ClusterAddon, error) {
	ca := &clusterstackv1alpha1.ClusterAddon{}
	err := p.waitFor("the addons of "+class, func() (bool, string, error) {
		err := c.Get(p.ctx, types.NamespacedName{Namespace: namespace, Name: addon.ClusterAddonName(clusterName)}, ca)
		if client.IgnoreNotFound(err) != nil {
			return false, "", err
		}
		if err != nil {
			return false, "no ClusterAddon yet", nil
		}
		p.report("addon", "ClusterAddon "+addonState(ca))
		return ca.Spec.ClusterStack == class && ca.Status.Ready, addonState(ca), nil
	})
	return ca, err
}

func addonState(ca *clusterstackv1alpha1.ClusterAddon) string {
	r := readyOf(ca.Status.Conditions)
	var stages []string
	for _, s := range ca.Status.Stages {
		stages = append(stages, s.Name+"="+string(s.Phase))
	}
	hook := ca.Spec.Hook
	if hook == "" {
		hook = "<none>"
	}
	return fmt.Sprintf("%s: release %s, hook %s, stages [%s], Ready=%s %s", ca.Name, ca.Spec.ClusterStack, hook, strings.Join(stages, " "), r.Status, oneLine(r.Message))
}

// printTopology prints the Cluster and the objects Cluster API created for its topology.
func printTopology(out io.Writer, cluster *clusterv1.Cluster, topo *capiflow.Topology) error {
	w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "CLUSTER API OBJECT\tNAME\tDETAIL")
	fmt.Fprintf(w, "Cluster\t%s\tclass %s, version %s\n", cluster.Name, cluster.Spec.Topology.ClassRef.Name, cluster.Spec.Topology.Version)
	version, err := capiflow.ControlPlaneVersion(topo.ControlPlane)
	if err != nil {
		return err
	}
	replicas, _, _ := unstructured.NestedInt64(topo.ControlPlane.Object, "spec", "replicas")
	fmt.Fprintf(w, "%s\t%s\tversion %s, replicas %d\n", topo.ControlPlane.GetKind(), topo.ControlPlane.GetName(), version, replicas)
	fmt.Fprintf(w, "%s\t%s\t%s (no OpenStack provider runs: the object stays as created)\n", topo.Infrastructure.GetKind(), topo.Infrastructure.GetName(), topo.Infrastructure.GetAPIVersion())
	for _, md := range topo.MachineDeployments {
		fmt.Fprintf(w, "MachineDeployment\t%s\ttopology %s, version %s, replicas %d\n", md.Name, md.Labels[clusterv1.ClusterTopologyMachineDeploymentNameLabel], md.Spec.Template.Spec.Version, ptr.Deref(md.Spec.Replicas, 0))
	}
	return w.Flush()
}

// printWorkloadObjects reads every object of the ClusterAddon's inventory back from the workload
// API server and prints it.
func printWorkloadObjects(ctx context.Context, out io.Writer, wc client.Client, ca *clusterstackv1alpha1.ClusterAddon) error {
	w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	fmt.Fprintf(w, "IN THE WORKLOAD CLUSTER (release %s)\tNAMESPACE\tNAME\tDATA\n", ca.Spec.ClusterStack)
	for _, r := range ca.Status.Resources {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(schema.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind})
		if err := wc.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: r.Name}, u); err != nil {
			return fmt.Errorf("reading %s %s/%s from the workload cluster: %w", r.Kind, r.Namespace, r.Name, err)
		}
		data, _, _ := unstructured.NestedStringMap(u.Object, "data")
		var kv []string
		for k, v := range data {
			kv = append(kv, k+"="+v)
		}
		sort.Strings(kv)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Kind, orNone(r.Namespace), r.Name, strings.Join(kv, " "))
	}
	return w.Flush()
}

// printHookCalls prints how often Cluster API called each hook of the operator's extension.
func printHookCalls(out io.Writer) error {
	calls, err := capiflow.HookCalls()
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "HOOK\tCALLS BY CLUSTER API")
	for _, hook := range []string{
		capiflow.HookName(runtimehooksv1.Discovery),
		capiflow.HookName(runtimehooksv1.AfterControlPlaneInitialized),
		capiflow.HookName(runtimehooksv1.BeforeClusterUpgrade),
		capiflow.HookName(runtimehooksv1.AfterClusterUpgrade),
	} {
		fmt.Fprintf(w, "%s\t%v\n", hook, calls[hook])
	}
	return w.Flush()
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 320 {
		return s[:320] + "..."
	}
	return s
}
