package clusterstack

import (
	"context"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	clusterstackv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
)

// The webhooks live next to the controllers rather than in a webhooks/ package because they
// answer the controllers' question ("which Clusters use this release?") with the same code, and
// a second package would only export it. They validate deletion only: the immutable fields are
// enforced by CEL rules in the CRD, which work without the webhook server.

// SetupWebhooks registers the delete-validating webhooks of ClusterStack and ClusterStackRelease.
func SetupWebhooks(mgr ctrl.Manager) error {
	if err := ctrl.NewWebhookManagedBy(mgr, &clusterstackv1alpha1.ClusterStack{}).
		WithValidator(&Validator{Client: mgr.GetAPIReader()}).Complete(); err != nil {
		return fmt.Errorf("setting up the ClusterStack webhook: %w", err)
	}
	if err := ctrl.NewWebhookManagedBy(mgr, &clusterstackv1alpha1.ClusterStackRelease{}).
		WithValidator(&ReleaseValidator{Client: mgr.GetAPIReader()}).Complete(); err != nil {
		return fmt.Errorf("setting up the ClusterStackRelease webhook: %w", err)
	}
	return nil
}

// +kubebuilder:webhook:path=/validate-clusterstack-x-k8s-io-v1alpha1-clusterstack,mutating=false,failurePolicy=fail,sideEffects=None,groups=clusterstack.x-k8s.io,resources=clusterstacks,verbs=delete,versions=v1alpha1,name=vclusterstack.clusterstack.x-k8s.io,admissionReviewVersions=v1

// Validator refuses to delete a ClusterStack while a Cluster of its namespace uses
// one of its releases.
type Validator struct {
	Client client.Reader
}

var _ admission.Validator[*clusterstackv1alpha1.ClusterStack] = &Validator{}

// ValidateCreate allows everything: the CRD's CEL rules validate the fields.
func (v *Validator) ValidateCreate(context.Context, *clusterstackv1alpha1.ClusterStack) (admission.Warnings, error) {
	return nil, nil
}

// ValidateUpdate allows everything: the CRD's CEL rules keep the identity fields immutable.
func (v *Validator) ValidateUpdate(context.Context, *clusterstackv1alpha1.ClusterStack, *clusterstackv1alpha1.ClusterStack) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete refuses while Clusters use a release of the stack in the ClusterStack's channel.
func (v *Validator) ValidateDelete(ctx context.Context, cs *clusterstackv1alpha1.ClusterStack) (admission.Warnings, error) {
	inUse, err := resolver.ClustersByRelease(ctx, v.Client, cs.Namespace)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	var users []string
	for _, u := range inUse {
		if !resolver.InChannel(cs, u.Release) {
			continue
		}
		for _, c := range u.Clusters {
			users = append(users, fmt.Sprintf("%s (ClusterClass %s)", c, u.Release.ClusterClassName()))
		}
	}
	if len(users) == 0 {
		return nil, nil
	}
	sort.Strings(users)
	return nil, apierrors.NewForbidden(schema.GroupResource{Group: clusterstackv1alpha1.GroupVersion.Group, Resource: "clusterstacks"}, cs.Name,
		fmt.Errorf("its releases are in use by Clusters %s: delete those Clusters or move them to another ClusterClass first", strings.Join(users, ", ")))
}

// +kubebuilder:webhook:path=/validate-clusterstack-x-k8s-io-v1alpha1-clusterstackrelease,mutating=false,failurePolicy=fail,sideEffects=None,groups=clusterstack.x-k8s.io,resources=clusterstackreleases,verbs=delete,versions=v1alpha1,name=vclusterstackrelease.clusterstack.x-k8s.io,admissionReviewVersions=v1

// ReleaseValidator refuses to delete a ClusterStackRelease whose ClusterClass a
// Cluster uses. The release's finalizer holds it too; the webhook makes the refusal visible to
// whoever deletes.
type ReleaseValidator struct {
	Client client.Reader
}

var _ admission.Validator[*clusterstackv1alpha1.ClusterStackRelease] = &ReleaseValidator{}

// ValidateCreate allows everything: the CRD's CEL rules validate the name.
func (v *ReleaseValidator) ValidateCreate(context.Context, *clusterstackv1alpha1.ClusterStackRelease) (admission.Warnings, error) {
	return nil, nil
}

// ValidateUpdate allows everything.
func (v *ReleaseValidator) ValidateUpdate(context.Context, *clusterstackv1alpha1.ClusterStackRelease, *clusterstackv1alpha1.ClusterStackRelease) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete refuses while Clusters use the release's ClusterClass.
func (v *ReleaseValidator) ValidateDelete(ctx context.Context, csr *clusterstackv1alpha1.ClusterStackRelease) (admission.Warnings, error) {
	inUse, err := resolver.ClustersByRelease(ctx, v.Client, csr.Namespace)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	users := inUse[csr.Name].Clusters
	if len(users) == 0 {
		return nil, nil
	}
	return nil, apierrors.NewForbidden(schema.GroupResource{Group: clusterstackv1alpha1.GroupVersion.Group, Resource: "clusterstackreleases"}, csr.Name,
		fmt.Errorf("its ClusterClass %s is in use by Clusters %s: delete those Clusters or move them to another ClusterClass first", classNameOf(csr.Name), strings.Join(users, ", ")))
}
