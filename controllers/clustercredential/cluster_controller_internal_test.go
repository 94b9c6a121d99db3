package clustercredential

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"

	csv1alpha1 "github.com/seed-a720dd5e/clusterstack-operator/api/clusterstack/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/name"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release/resolver"
)

type stacksFunc func() (*csv1alpha1.ClusterStack, error)

func (f stacksFunc) ClusterStackFor(context.Context, string, name.Release) (*csv1alpha1.ClusterStack, error) {
	return f()
}

// TestOptIn: the ClusterStack's enabled, overridden by the Cluster's annotation; a class without
// a ClusterStack is enabled only by the annotation; a Cluster of another class never.
func TestOptIn(t *testing.T) {
	stack := func(enabled bool) stacksFunc {
		return func() (*csv1alpha1.ClusterStack, error) {
			return &csv1alpha1.ClusterStack{Spec: csv1alpha1.ClusterStackSpec{ApplicationCredentials: &csv1alpha1.ApplicationCredentials{Enabled: enabled}}}, nil
		}
	}
	noStack := stacksFunc(func() (*csv1alpha1.ClusterStack, error) {
		return nil, fmt.Errorf("release x: %w", resolver.ErrNoClusterStack)
	})
	tests := []struct {
		name       string
		stacks     Stacks
		class      string
		annotation string
		want       bool
	}{
		{name: "stack enabled", stacks: stack(true), want: true},
		{name: "stack enabled, Cluster disabled", stacks: stack(true), annotation: "disabled", want: false},
		{name: "stack disabled", stacks: stack(false), want: false},
		{name: "stack disabled, Cluster enabled", stacks: stack(false), annotation: "enabled", want: true},
		{name: "no ClusterStack", stacks: noStack, want: false},
		{name: "no ClusterStack, Cluster enabled", stacks: noStack, annotation: "enabled", want: true},
		{name: "not a cluster-stack class", stacks: stack(true), class: "my-own-class", annotation: "enabled", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			class := tt.class
			if class == "" {
				class = "openstack-scs-1-32-v1"
			}
			c := &clusterv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c"},
				Spec: clusterv1.ClusterSpec{Topology: clusterv1.Topology{ClassRef: clusterv1.ClusterClassRef{Name: class}}}}
			if tt.annotation != "" {
				c.Annotations = map[string]string{csv1alpha1.ApplicationCredentialsAnnotation: tt.annotation}
			}
			r := &ClusterReconciler{Stacks: tt.stacks}
			s, enabled, err := r.settings(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			if enabled != tt.want {
				t.Errorf("enabled %v, want %v", enabled, tt.want)
			}
			if enabled && (len(s.Roles) == 0 || s.Lifetime == nil) {
				t.Errorf("settings without defaults: %+v", s)
			}
		})
	}
}
