package clusterstack

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
)

// A rendering made while the release waited is used once, only for the content and namespace it
// was made from, and forgotten with the release.
func TestPrerenderingIsTakenOnceForItsContent(t *testing.T) {
	csr := csrOf("team-a", "openstack-scs-1-32-v1", false)
	rel := &release.Release{Digest: "sha256:aaa"}
	objs := []*unstructured.Unstructured{{Object: map[string]any{"kind": "ClusterClass"}}}
	r := &ClusterStackReleaseReconciler{}
	keep := func(digest, ns string) {
		c := csrOf(ns, csr.Name, false)
		r.prerenderedMu.Lock()
		defer r.prerenderedMu.Unlock()
		if r.prerendered == nil {
			r.prerendered = map[client.ObjectKey]prerendering{}
		}
		r.prerendered[client.ObjectKeyFromObject(csr)] = prerendering{key: prerenderKey(c, &release.Release{Digest: digest}), objs: objs}
	}

	keep("sha256:aaa", "team-a")
	if got := r.takePrerendering(csr, rel); len(got) != 1 {
		t.Fatalf("take = %v, want the kept rendering", got)
	}
	if got := r.takePrerendering(csr, rel); got != nil {
		t.Errorf("second take = %v, want nothing: a rendering is used once", got)
	}
	keep("sha256:bbb", "team-a")
	if got := r.takePrerendering(csr, rel); got != nil {
		t.Errorf("take for other content = %v, want nothing", got)
	}
	keep("sha256:aaa", "team-b")
	if got := r.takePrerendering(csr, rel); got != nil {
		t.Errorf("take for another namespace's rendering = %v, want nothing", got)
	}
	if got := r.takePrerendering(csr, &release.Release{}); got != nil {
		t.Errorf("take for content without digest = %v, want nothing", got)
	}
	keep("sha256:aaa", "team-a")
	r.dropPrerendering(client.ObjectKeyFromObject(csr))
	if got := r.takePrerendering(csr, rel); got != nil {
		t.Errorf("take after the release went = %v, want nothing", got)
	}
}
