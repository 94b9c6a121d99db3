package clustercredential

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/openstack/appcred"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/outcome"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/reconciler"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/workloadcluster"
)

// Names of the Secrets the credential is written to.
const (
	// WorkloadNamespace is where the workload Secrets go.
	WorkloadNamespace = "kube-system"
	// CloudsYAMLSecret is read by the scs2 stacks (key clouds.yaml).
	CloudsYAMLSecret = "clouds-yaml"
	// CloudConfigSecret is read by the scs stacks (key cloud.conf).
	CloudConfigSecret = "cloud-config"
	// credentialIDAnnotation on every Secret written names the credential it holds, so that a
	// Secret written just before a crash is recognised.
	credentialIDAnnotation = "infrastructure.clusterstack.x-k8s.io/application-credential-id"
	// credentialNameAnnotation and credentialExpiresAnnotation on the management Secret make it
	// the record of a credential the status does not know yet (a crash between the two writes).
	credentialNameAnnotation    = "infrastructure.clusterstack.x-k8s.io/application-credential-name"
	credentialExpiresAnnotation = "infrastructure.clusterstack.x-k8s.io/application-credential-expires-at"
	credentialRolesAnnotation   = "infrastructure.clusterstack.x-k8s.io/application-credential-roles"
	fieldManager                = "clusterstack-operator"
)

// ManagementSecretName is the Secret in the Cluster's namespace that keeps the credential (its
// secret is shown by Keystone only once) for writing it into the workload cluster again.
func ManagementSecretName(cluster string) string { return cluster + "-application-credential" }

// OpenStackClusterCredentialReconciler keeps a valid application credential in a workload
// cluster. Order of every change, so that a crash at any point leaks nothing and the workload is
// never without a valid credential:
//
//  1. sweep: revoke the Cluster's credentials (by name prefix) that neither the status nor the
//     management Secret records, i.e. what a crash left between a create and its record;
//  2. create the new credential, 3. write it into the management Secret, 4. record it in the
//     status as current (the one it replaces becomes previous);
//  5. write it into the workload Secrets; 6. once the workload has had it for revokeAfter,
//     revoke previous.
type OpenStackClusterCredentialReconciler struct {
	Client        client.Client
	APIReader     client.Reader
	Keystone      Keystone
	Workload      *workloadcluster.Cache
	Workers       int
	RetryInterval time.Duration
	Recorder      events.EventRecorder
	// now is time.Now; tests of the status function set the time through the report instead.
	now func() time.Time
}

// +kubebuilder:rbac:groups=infrastructure.clusterstack.x-k8s.io,resources=openstackclustercredentials,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=infrastructure.clusterstack.x-k8s.io,resources=openstackclustercredentials/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=infrastructure.clusterstack.x-k8s.io,resources=openstackclustercredentials/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the controller.
func (r *OpenStackClusterCredentialReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.now == nil {
		r.now = time.Now
	}
	workers := r.Workers
	if workers <= 0 {
		workers = 4
	}
	return reconciler.NewController(mgr, "openstackclustercredential").
		// Its own status writes do not enqueue it: the next step is always a timed requeue.
		For(&infrav1.OpenStackClusterCredential{}, predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
}

// Reconcile runs the skeleton with the credential's steps. The object is read from the API
// server, not the cache: its status is the record of what exists in Keystone, and a stale read
// after a crash would sweep a credential that the workload holds.
func (r *OpenStackClusterCredentialReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	k := reconciler.Kind[*infrav1.OpenStackClusterCredential, report]{
		Name:      "OpenStackClusterCredential",
		New:       func() *infrav1.OpenStackClusterCredential { return &infrav1.OpenStackClusterCredential{} },
		Reader:    r.APIReader,
		Client:    r.Client,
		Finalizer: infrav1.OpenStackClusterCredentialFinalizer,
		Normal:    r.reconcileNormal,
		Delete:    r.reconcileDelete,
		Status:    setOpenStackClusterCredentialStatus,
		Observed:  settled,
		Recorder:  r.Recorder,
	}
	return k.Reconcile(ctx, req)
}

func (r *OpenStackClusterCredentialReconciler) reconcileNormal(ctx context.Context, occ *infrav1.OpenStackClusterCredential) report {
	rep := report{retry: r.RetryInterval}
	uid, ok := clusterUID(occ)
	if !ok {
		rep.err = outcome.Stall(infrav1.CredentialRefusedReason, "The OpenStackClusterCredential has no controlling Cluster; it is made by the operator for a Cluster with application credentials enabled")
		return rep
	}
	ks, err := r.Keystone.ApplicationCredentials(ctx, occ.Namespace, occ.Spec.IdentityRef)
	if err != nil {
		rep.err = err
		return rep
	}
	mgmt, err := r.managementSecret(ctx, occ)
	if err != nil {
		rep.err = kubeErr(err)
		return rep
	}
	adopt(occ, mgmt)

	now := r.now()
	if due, why := rotationDue(occ, mgmt, now); due {
		log := ctrl.LoggerFrom(ctx)
		if occ.Status.Previous != nil && occ.Status.Current != nil && occ.Status.WorkloadCredentialID == occ.Status.Current.ID {
			// Rotating again before the last replaced one was revoked: the workload holds
			// current, so the older one can go now.
			if err := appcred.Revoke(ctx, ks.Client, occ.Status.Previous.ID); err != nil {
				rep.err = err
				return rep
			}
			occ.Status.Previous = nil
		}
		keep := recorded(occ, mgmt)
		if n, err := appcred.Sweep(ctx, ks.Client, appcred.Prefix(uid), keep...); err != nil {
			rep.err = err
			return rep
		} else if n > 0 {
			log.Info("Revoked application credentials nothing recorded", "count", n)
		}
		serial := occ.Status.Serial + 1
		minted, err := appcred.Create(ctx, ks.Client, appcred.Name(uid, serial),
			fmt.Sprintf("Workload credential of Cluster %s/%s, managed by the clusterstack-operator", occ.Namespace, occ.Spec.ClusterName),
			occ.Spec.Roles, now.Add(occ.Spec.Lifetime.Duration))
		if err != nil {
			rep.err = err
			return rep
		}
		files, err := appcred.Render(ks.Cloud, minted.Ref.ID, minted.Secret)
		if err != nil {
			rep.err = err
			return rep
		}
		if err := r.writeManagementSecret(ctx, occ, minted.Ref, files); err != nil {
			rep.err = kubeErr(err)
			return rep
		}
		if occ.Status.Current != nil && occ.Status.Previous == nil {
			occ.Status.Previous = occ.Status.Current
		}
		occ.Status.Current, occ.Status.Serial = &minted.Ref, serial
		if err := reconciler.Persist(ctx); err != nil {
			rep.err = kubeErr(err)
			return rep
		}
		log.Info("Created application credential", "name", minted.Ref.Name, "expiresAt", minted.Ref.ExpiresAt.UTC(), "reason", why)
		r.Recorder.Eventf(occ, nil, corev1.EventTypeNormal, "CredentialCreated", "Create", "Created application credential %s (%s)", minted.Ref.Name, why)
		if mgmt, err = r.managementSecret(ctx, occ); err != nil {
			rep.err = kubeErr(err)
			return rep
		}
	}

	if err := r.syncWorkload(ctx, occ, mgmt, now); err != nil {
		rep.err = err
		return rep
	}

	if prev := occ.Status.Previous; prev != nil {
		revokeAt := occ.Status.SwitchedAt.Add(occ.Spec.RevokeAfter.Duration)
		if now.Before(revokeAt) {
			rep.revokeIn = revokeAt.Sub(now)
		} else {
			if err := appcred.Revoke(ctx, ks.Client, prev.ID); err != nil {
				rep.err = err
				return rep
			}
			ctrl.LoggerFrom(ctx).Info("Revoked the replaced application credential", "name", prev.Name)
			occ.Status.Previous = nil
		}
	}
	rep.current = occ.Status.Current
	rep.rotateIn = occ.Status.Current.ExpiresAt.Add(-occ.Spec.RotateBefore.Duration).Sub(now)
	return rep
}

func (r *OpenStackClusterCredentialReconciler) reconcileDelete(ctx context.Context, occ *infrav1.OpenStackClusterCredential) report {
	rep := report{deleting: true, retry: r.RetryInterval}
	if !hasFinalizer(occ) {
		return rep
	}
	ks, err := r.Keystone.ApplicationCredentials(ctx, occ.Namespace, occ.Spec.IdentityRef)
	if err != nil {
		rep.err = err
		return rep
	}
	for _, c := range []*infrav1.ApplicationCredentialRef{occ.Status.Current, occ.Status.Previous} {
		if c == nil {
			continue
		}
		if err := appcred.Revoke(ctx, ks.Client, c.ID); err != nil {
			rep.err = err
			return rep
		}
	}
	if uid, ok := clusterUID(occ); ok {
		// Also what a crash left unrecorded, and what the management Secret alone knew.
		if _, err := appcred.Sweep(ctx, ks.Client, appcred.Prefix(uid)); err != nil {
			rep.err = err
			return rep
		}
	}
	occ.Status.Current, occ.Status.Previous = nil, nil
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: occ.Namespace, Name: ManagementSecretName(occ.Spec.ClusterName)}}
	if err := r.Client.Delete(ctx, secret); err != nil && !apierrors.IsNotFound(err) {
		rep.err = kubeErr(fmt.Errorf("deleting Secret %s: %w", klog.KObj(secret), err))
		return rep
	}
	ctrl.LoggerFrom(ctx).Info("Revoked the application credentials")
	base := occ.DeepCopy()
	occ.Finalizers = slices.DeleteFunc(occ.Finalizers, func(f string) bool { return f == infrav1.OpenStackClusterCredentialFinalizer })
	if err := r.Client.Patch(ctx, occ, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
		rep.err = kubeErr(fmt.Errorf("removing the finalizer: %w", err))
	}
	return rep
}

// syncWorkload writes the management Secret's files into the workload Secrets unless they hold
// them already, and records the switch.
func (r *OpenStackClusterCredentialReconciler) syncWorkload(ctx context.Context, occ *infrav1.OpenStackClusterCredential, mgmt *corev1.Secret, now time.Time) error {
	key := types.NamespacedName{Namespace: occ.Namespace, Name: occ.Spec.ClusterName}
	wc, err := r.Workload.Get(ctx, key)
	if err != nil {
		if errors.Is(err, workloadcluster.ErrKubeconfigMissing) || errors.Is(err, workloadcluster.ErrUnreachable) || errors.Is(err, workloadcluster.ErrKubeconfigInvalid) {
			return outcome.Wait(infrav1.WaitingForClusterReason, r.RetryInterval, "Waiting for the workload cluster of Cluster %s to take the credential: %v", occ.Spec.ClusterName, err)
		}
		return kubeErr(err)
	}
	id := occ.Status.Current.ID
	want := workloadSecrets(mgmt, id)
	current := true
	for _, s := range want {
		got := &corev1.Secret{}
		err := wc.Client.Get(ctx, client.ObjectKeyFromObject(s), got)
		if err != nil && !apierrors.IsNotFound(err) {
			return outcome.Wait(infrav1.WaitingForClusterReason, r.RetryInterval, "Waiting for the workload cluster of Cluster %s to take the credential: reading Secret %s: %v", occ.Spec.ClusterName, klog.KObj(s), err)
		}
		if err != nil || got.Annotations[credentialIDAnnotation] != id || !sameData(got.Data, s.Data) {
			current = false
			break
		}
	}
	if current && occ.Status.WorkloadCredentialID == id {
		return nil
	}
	if !current {
		for _, s := range want {
			//nolint:staticcheck // client.Apply with a typed object is the supported server-side apply of controller-runtime 0.23
			if err := wc.Client.Patch(ctx, s, client.Apply, client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
				return outcome.Wait(infrav1.WaitingForClusterReason, r.RetryInterval, "Waiting for the workload cluster of Cluster %s to take the credential: writing Secret %s: %v", occ.Spec.ClusterName, klog.KObj(s), err)
			}
		}
		ctrl.LoggerFrom(ctx).Info("Wrote the application credential into the workload cluster", "name", occ.Status.Current.Name)
	}
	if occ.Status.WorkloadCredentialID != id {
		occ.Status.WorkloadCredentialID = id
		occ.Status.SwitchedAt = &metav1.Time{Time: now}
	}
	if err := reconciler.Persist(ctx); err != nil {
		return kubeErr(err)
	}
	return nil
}

// workloadSecrets are the two Secrets the SCS stacks read, from the management Secret's files.
func workloadSecrets(mgmt *corev1.Secret, id string) []*corev1.Secret {
	mk := func(name string, data map[string][]byte) *corev1.Secret {
		if ca := mgmt.Data[appcred.CACertKey]; len(ca) > 0 {
			data[appcred.CACertKey] = ca
		}
		return &corev1.Secret{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Namespace: WorkloadNamespace, Name: name,
				Labels:      map[string]string{"app.kubernetes.io/managed-by": fieldManager},
				Annotations: map[string]string{credentialIDAnnotation: id}},
			Type: corev1.SecretTypeOpaque,
			Data: data,
		}
	}
	return []*corev1.Secret{
		mk(CloudsYAMLSecret, map[string][]byte{appcred.CloudsYAMLKey: mgmt.Data[appcred.CloudsYAMLKey]}),
		mk(CloudConfigSecret, map[string][]byte{appcred.CloudConfKey: mgmt.Data[appcred.CloudConfKey], appcred.CloudProviderConfKey: mgmt.Data[appcred.CloudConfKey]}),
	}
}

func sameData(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if !bytes.Equal(a[k], v) {
			return false
		}
	}
	return true
}

func (r *OpenStackClusterCredentialReconciler) managementSecret(ctx context.Context, occ *infrav1.OpenStackClusterCredential) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	key := types.NamespacedName{Namespace: occ.Namespace, Name: ManagementSecretName(occ.Spec.ClusterName)}
	if err := r.APIReader.Get(ctx, key, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading Secret %s: %w", key, err)
	}
	return s, nil
}

func (r *OpenStackClusterCredentialReconciler) writeManagementSecret(ctx context.Context, occ *infrav1.OpenStackClusterCredential, ref infrav1.ApplicationCredentialRef, files appcred.Files) error {
	s := &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Namespace: occ.Namespace, Name: ManagementSecretName(occ.Spec.ClusterName),
			Labels: map[string]string{"app.kubernetes.io/managed-by": fieldManager, "clusterctl.cluster.x-k8s.io/move": ""},
			Annotations: map[string]string{
				credentialIDAnnotation:      ref.ID,
				credentialNameAnnotation:    ref.Name,
				credentialExpiresAnnotation: ref.ExpiresAt.UTC().Format(time.RFC3339),
				credentialRolesAnnotation:   strings.Join(ref.Roles, ","),
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: infrav1.GroupVersion.String(), Kind: "OpenStackClusterCredential", Name: occ.Name, UID: occ.UID,
				Controller: ptrTrue(), BlockOwnerDeletion: ptrTrue(),
			}},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{appcred.CloudsYAMLKey: files.CloudsYAML, appcred.CloudConfKey: files.CloudConf},
	}
	if len(files.CACert) > 0 {
		s.Data[appcred.CACertKey] = files.CACert
	}
	//nolint:staticcheck // client.Apply with a typed object is the supported server-side apply of controller-runtime 0.23
	if err := r.Client.Patch(ctx, s, client.Apply, client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("writing Secret %s: %w", klog.KObj(s), err)
	}
	return nil
}

func ptrTrue() *bool { t := true; return &t }

// adopt makes the status agree with the management Secret after a crash between writing the
// Secret and recording the credential: the Secret's credential becomes current.
func adopt(occ *infrav1.OpenStackClusterCredential, mgmt *corev1.Secret) {
	if mgmt == nil {
		return
	}
	id := mgmt.Annotations[credentialIDAnnotation]
	if id == "" || (occ.Status.Current != nil && occ.Status.Current.ID == id) {
		return
	}
	exp, err := time.Parse(time.RFC3339, mgmt.Annotations[credentialExpiresAnnotation])
	if err != nil {
		return
	}
	ref := &infrav1.ApplicationCredentialRef{ID: id, Name: mgmt.Annotations[credentialNameAnnotation], ExpiresAt: metav1.NewTime(exp)}
	if roles := mgmt.Annotations[credentialRolesAnnotation]; roles != "" {
		ref.Roles = strings.Split(roles, ",")
	}
	if occ.Status.Previous == nil || occ.Status.Previous.ID == id {
		occ.Status.Previous = occ.Status.Current
	}
	occ.Status.Current = ref
	if n := serialOf(ref.Name); n > occ.Status.Serial {
		occ.Status.Serial = n
	}
}

func serialOf(name string) int64 {
	i := strings.LastIndexByte(name, '-')
	var n int64
	if i < 0 {
		return 0
	}
	if _, err := fmt.Sscanf(name[i+1:], "%d", &n); err != nil {
		return 0
	}
	return n
}

// recorded are the IDs of the credentials that something records: they are not swept.
func recorded(occ *infrav1.OpenStackClusterCredential, mgmt *corev1.Secret) []string {
	var ids []string
	for _, c := range []*infrav1.ApplicationCredentialRef{occ.Status.Current, occ.Status.Previous} {
		if c != nil {
			ids = append(ids, c.ID)
		}
	}
	if mgmt != nil && mgmt.Annotations[credentialIDAnnotation] != "" {
		ids = append(ids, mgmt.Annotations[credentialIDAnnotation])
	}
	if occ.Status.WorkloadCredentialID != "" {
		ids = append(ids, occ.Status.WorkloadCredentialID)
	}
	return ids
}

// rotationDue says whether a new credential is needed, and why.
func rotationDue(occ *infrav1.OpenStackClusterCredential, mgmt *corev1.Secret, now time.Time) (bool, string) {
	cur := occ.Status.Current
	switch {
	case cur == nil:
		return true, "first credential"
	case mgmt == nil || mgmt.Annotations[credentialIDAnnotation] != cur.ID:
		return true, "the management Secret lost the credential"
	case !now.Before(cur.ExpiresAt.Add(-occ.Spec.RotateBefore.Duration)):
		return true, "rotation before expiry"
	case cur.Roles != nil && !slices.Equal(cur.Roles, occ.Spec.Roles):
		return true, "roles changed"
	}
	return false, ""
}

func clusterUID(occ *infrav1.OpenStackClusterCredential) (types.UID, bool) {
	owner := metav1.GetControllerOf(occ)
	if owner == nil || owner.Kind != "Cluster" || owner.UID == "" {
		return "", false
	}
	return owner.UID, true
}

func hasFinalizer(occ *infrav1.OpenStackClusterCredential) bool {
	return slices.Contains(occ.Finalizers, infrav1.OpenStackClusterCredentialFinalizer)
}

// kubeError is a failure talking to the Kubernetes API of the management cluster; it gets no
// condition, only backoff.
type kubeError struct{ err error }

func (e *kubeError) Error() string { return e.err.Error() }
func (e *kubeError) Unwrap() error { return e.err }

func kubeErr(err error) error { return &kubeError{err: err} }
