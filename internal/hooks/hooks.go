// Package hooks is the operator's Cluster API runtime extension: the lifecycle hook handlers that
// let Cluster API wait for a Cluster's addons. The handlers keep no state (beyond their metrics)
// and do no work: they read (and, for AfterControlPlaneInitialized, mark) the Cluster's
// ClusterAddon, whose controller does the work, and answer at once. So a restarted or new leader
// answers exactly as the old one would have.
//
// A paused Cluster (spec.paused or the cluster.x-k8s.io/paused annotation) is answered from its
// ClusterAddon as any other, which does not move while the Cluster is paused: a blocking hook
// holds it until its addons are done (saying that it is paused), a finished one lets it go, and
// nothing is written. Cluster API itself does not reconcile the topology of a paused Cluster, so
// such calls are rare (a call under way when the pause lands).
package hooks

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	runtimecatalog "sigs.k8s.io/cluster-api/api/runtime/catalog"
	runtimehooksv1 "sigs.k8s.io/cluster-api/api/runtime/hooks/v1alpha1"
	"sigs.k8s.io/cluster-api/exp/runtime/server"
	"sigs.k8s.io/cluster-api/util/annotations"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/addon"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
)

// Handler names, one per hook. Cluster API refuses a discovery response in which two handlers
// share a name ("duplicate name for handler ... found") and wants each name to be a DNS label; it
// registers a handler as <name>.<ExtensionConfig name>, so the names need no operator prefix.
const (
	AfterControlPlaneInitializedHandler = "after-control-plane-initialized"
	BeforeClusterUpgradeHandler         = "before-cluster-upgrade"
	AfterClusterUpgradeHandler          = "after-cluster-upgrade"
)

// HandlerName returns the name the extension serves a hook's handler under (it is part of the
// handler's path), or "" for a hook the extension does not serve.
func HandlerName(hook runtimecatalog.Hook) string {
	switch runtimecatalog.HookName(hook) {
	case runtimecatalog.HookName(runtimehooksv1.AfterControlPlaneInitialized):
		return AfterControlPlaneInitializedHandler
	case runtimecatalog.HookName(runtimehooksv1.BeforeClusterUpgrade):
		return BeforeClusterUpgradeHandler
	case runtimecatalog.HookName(runtimehooksv1.AfterClusterUpgrade):
		return AfterClusterUpgradeHandler
	}
	return ""
}

// DefaultRetryAfter is what a blocking hook answers while the addons are not done: short enough
// that an upgrade starts soon after, long enough not to load the API server.
const DefaultRetryAfter = 10 * time.Second

// Handlers answers the lifecycle hooks from the ClusterAddons.
type Handlers struct {
	// Reader reads ClusterAddons; use an uncached reader so the answer reflects the last write.
	Reader client.Reader
	// Writer marks a ClusterAddon when its control plane is initialized.
	Writer client.Client
	// RetryAfter is the retry of a blocking hook; zero means DefaultRetryAfter.
	RetryAfter time.Duration

	// metrics records the answers; nil means the registered defaultRecorder.
	metrics *recorder
}

func (h *Handlers) recorder() *recorder {
	if h.metrics != nil {
		return h.metrics
	}
	return defaultRecorder
}

func (h *Handlers) retryAfter() int32 {
	if h.RetryAfter > 0 {
		return int32(h.RetryAfter / time.Second)
	}
	return int32(DefaultRetryAfter / time.Second)
}

// clusterAddon returns the ClusterAddon of a cluster-stack Cluster; nil without error when the
// Cluster does not use a cluster-stack ClusterClass (the operator never holds those back).
func (h *Handlers) clusterAddon(ctx context.Context, cluster *clusterv1.Cluster) (*csv1alpha1.ClusterAddon, bool, error) {
	if _, ok := resolver.ReleaseOfCluster(cluster); !ok {
		return nil, false, nil
	}
	ca := &csv1alpha1.ClusterAddon{}
	err := h.Reader.Get(ctx, types.NamespacedName{Namespace: cluster.Namespace, Name: addon.ClusterAddonName(cluster.Name)}, ca)
	if apierrors.IsNotFound(err) {
		return nil, true, nil
	}
	return ca, true, err
}

// Done reports whether the addons of the Cluster's current class are installed, and otherwise
// what they are doing.
func Done(ca *csv1alpha1.ClusterAddon, cluster *clusterv1.Cluster) (bool, string) {
	class := cluster.Spec.Topology.ClassRef.Name
	switch {
	case ca.Spec.ClusterStack != class:
		return false, fmt.Sprintf("ClusterAddon %s has not started on the addons of %s yet", ca.Name, class)
	case ca.Spec.Hook != "":
		var parts []string
		for _, s := range ca.Status.Stages {
			if s.Phase != csv1alpha1.StagePhaseDone {
				parts = append(parts, fmt.Sprintf("%s %s", s.Name, s.Phase))
			}
		}
		return false, fmt.Sprintf("ClusterAddon %s is running the %s stages of %s: %s", ca.Name, ca.Spec.Hook, class, strings.Join(parts, ", "))
	case !ca.Status.Ready:
		return false, fmt.Sprintf("ClusterAddon %s is applying the addons of %s", ca.Name, class)
	}
	return true, ""
}

// AfterControlPlaneInitialized marks the ClusterAddon so that its controller installs the addons
// even before it sees the Cluster's initialized status. It never blocks.
func (h *Handlers) AfterControlPlaneInitialized(ctx context.Context, req *runtimehooksv1.AfterControlPlaneInitializedRequest, resp *runtimehooksv1.AfterControlPlaneInitializedResponse) {
	log := ctrl.LoggerFrom(ctx).WithValues("Cluster", client.ObjectKeyFromObject(&req.Cluster))
	resp.SetStatus(runtimehooksv1.ResponseStatusSuccess)
	ca, ours, err := h.clusterAddon(ctx, &req.Cluster)
	// It never blocks: nothing to track beyond the call.
	h.recorder().answered(runtimecatalog.HookName(runtimehooksv1.AfterControlPlaneInitialized), &req.Cluster, false, resp.GetStatus(), 0, 0)
	if err != nil {
		log.Error(err, "Reading the ClusterAddon")
		return
	}
	if !ours || ca == nil || ca.Spec.ClusterStack != "" || ca.Spec.Hook != "" {
		return
	}
	if annotations.IsPaused(&req.Cluster, &req.Cluster) {
		// Nothing is written for a paused Cluster (it may be being moved); its ClusterAddon
		// starts from the Cluster's initialized status once it resumes.
		log.V(4).Info("Cluster is paused: not marking its ClusterAddon")
		return
	}
	base := client.MergeFrom(ca.DeepCopy())
	ca.Spec.Hook = csv1alpha1.HookAfterControlPlaneInitialized
	if err := h.Writer.Patch(ctx, ca, base); err != nil {
		// Not fatal: the controller also starts from the Cluster's status.
		log.Error(err, "Marking the ClusterAddon")
	}
}

// BeforeClusterUpgrade holds the upgrade until the addons of the new release are installed: its
// BeforeClusterUpgrade stages done and its addons applied.
func (h *Handlers) BeforeClusterUpgrade(ctx context.Context, req *runtimehooksv1.BeforeClusterUpgradeRequest, resp *runtimehooksv1.BeforeClusterUpgradeResponse) {
	h.block(ctx, runtimecatalog.HookName(runtimehooksv1.BeforeClusterUpgrade), &req.Cluster, &resp.CommonRetryResponse)
}

// AfterClusterUpgrade holds the next upgrade until the addons of the current release are
// installed.
func (h *Handlers) AfterClusterUpgrade(ctx context.Context, req *runtimehooksv1.AfterClusterUpgradeRequest, resp *runtimehooksv1.AfterClusterUpgradeResponse) {
	h.block(ctx, runtimecatalog.HookName(runtimehooksv1.AfterClusterUpgrade), &req.Cluster, &resp.CommonRetryResponse)
}

func (h *Handlers) block(ctx context.Context, hook string, cluster *clusterv1.Cluster, resp *runtimehooksv1.CommonRetryResponse) {
	ca, ours, err := h.clusterAddon(ctx, cluster)
	// Recorded from the response as sent, whichever way below it was made.
	defer func() {
		h.recorder().answered(hook, cluster, ours, resp.GetStatus(), resp.GetRetryAfterSeconds(), time.Duration(h.retryAfter())*time.Second)
	}()
	switch {
	case err != nil:
		resp.SetStatus(runtimehooksv1.ResponseStatusFailure)
		resp.SetMessage(fmt.Sprintf("reading the ClusterAddon of Cluster %s: %v", cluster.Name, err))
		return
	case !ours:
		resp.SetStatus(runtimehooksv1.ResponseStatusSuccess)
		return
	case ca == nil:
		resp.SetStatus(runtimehooksv1.ResponseStatusSuccess)
		resp.SetRetryAfterSeconds(h.retryAfter())
		resp.SetMessage(fmt.Sprintf("The ClusterAddon of Cluster %s does not exist yet", cluster.Name))
		return
	}
	done, msg := Done(ca, cluster)
	resp.SetStatus(runtimehooksv1.ResponseStatusSuccess)
	if !done {
		if annotations.IsPaused(cluster, cluster) {
			// The addons do not move while the Cluster is paused, so the hook holds it until
			// it resumes and they are done: letting the upgrade go would run it without them.
			msg = fmt.Sprintf("Cluster %s is paused, so its addons are not applied until it resumes: %s", cluster.Name, msg)
		}
		resp.SetRetryAfterSeconds(h.retryAfter())
		resp.SetMessage(msg)
	}
}

// ServerOptions configure NewServer.
type ServerOptions struct {
	// Port to listen on; CertDir holds tls.crt and tls.key.
	Port    int
	CertDir string
	// Client reads ClusterAddons (uncached); Writer patches them.
	Client     client.Reader
	Writer     client.Client
	RetryAfter time.Duration
}

// NewCatalog returns the catalog of the lifecycle hooks.
func NewCatalog() (*runtimecatalog.Catalog, error) {
	cat := runtimecatalog.New()
	if err := runtimehooksv1.AddToCatalog(cat); err != nil {
		return nil, fmt.Errorf("building the runtime hook catalog: %w", err)
	}
	return cat, nil
}

// NewServer returns the runtime extension server with the three handlers; add it to a manager.
func NewServer(opts ServerOptions) (*server.Server, error) {
	cat, err := NewCatalog()
	if err != nil {
		return nil, err
	}
	srv, err := server.New(server.Options{Catalog: cat, Port: opts.Port, CertDir: opts.CertDir})
	if err != nil {
		return nil, fmt.Errorf("creating the runtime extension server: %w", err)
	}
	h := &Handlers{Reader: opts.Client, Writer: opts.Writer, RetryAfter: opts.RetryAfter}
	ignore := runtimehooksv1.FailurePolicyIgnore
	for _, eh := range []server.ExtensionHandler{
		// Installing addons must not fail Cluster creation: the controller installs them anyway.
		{Hook: runtimehooksv1.AfterControlPlaneInitialized, Name: AfterControlPlaneInitializedHandler, HandlerFunc: h.AfterControlPlaneInitialized, FailurePolicy: &ignore},
		{Hook: runtimehooksv1.BeforeClusterUpgrade, Name: BeforeClusterUpgradeHandler, HandlerFunc: h.BeforeClusterUpgrade},
		{Hook: runtimehooksv1.AfterClusterUpgrade, Name: AfterClusterUpgradeHandler, HandlerFunc: h.AfterClusterUpgrade},
	} {
		if err := srv.AddExtensionHandler(eh); err != nil {
			return nil, fmt.Errorf("adding the %s handler: %w", runtimecatalog.HookName(eh.Hook), err)
		}
	}
	return srv, nil
}
