// Package v1alpha1 holds the infrastructure.clusterstack.x-k8s.io/v1alpha1 API: the OpenStack
// objects OpenStackClusterStackReleaseTemplate, OpenStackClusterStackRelease and
// OpenStackNodeImageRelease. Group, version, kinds, short names and field names are those of the
// SCS reference cluster-stack-provider-openstack, so that existing manifests apply unchanged;
// everything this project adds is optional and says so in its field comment.
//
// The package depends on apimachinery only (no controller-runtime), so that API consumers do not
// inherit the operator's dependencies.
//
// +kubebuilder:object:generate=true
// +groupName=infrastructure.clusterstack.x-k8s.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the objects in this package.
	GroupVersion = schema.GroupVersion{Group: "infrastructure.clusterstack.x-k8s.io", Version: "v1alpha1"}

	schemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = schemeBuilder.AddToScheme

	objectTypes = []runtime.Object{}
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion, objectTypes...)
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
