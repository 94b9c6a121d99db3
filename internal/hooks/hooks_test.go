package hooks

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
	runtimecatalog "sigs.k8s.io/cluster-api/api/runtime/catalog"
	runtimehooksv1 "sigs.k8s.io/cluster-api/api/runtime/hooks/v1alpha1"
)

// TestHandlerNames checks the rules Cluster API's discovery applies to the handler names (a
// distinct DNS label each): a discovery response that breaks them is refused as a whole, and no
// hook is ever called.
func TestHandlerNames(t *testing.T) {
	seen := map[string]string{}
	for _, hook := range []runtimecatalog.Hook{
		runtimehooksv1.AfterControlPlaneInitialized,
		runtimehooksv1.BeforeClusterUpgrade,
		runtimehooksv1.AfterClusterUpgrade,
	} {
		hookName := runtimecatalog.HookName(hook)
		t.Run(hookName, func(t *testing.T) {
			n := HandlerName(hook)
			if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
				t.Fatalf("handler name %q is not a DNS label: %v", n, errs)
			}
			if other, dup := seen[n]; dup {
				t.Fatalf("handler name %q of %s is also the name of %s", n, hookName, other)
			}
			seen[n] = hookName
		})
	}
	if n := HandlerName(runtimehooksv1.BeforeClusterDelete); n != "" {
		t.Errorf("HandlerName(BeforeClusterDelete) = %q, want \"\" for a hook the extension does not serve", n)
	}
}
