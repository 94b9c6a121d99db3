package openstack

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	infrav1 "github.com/seed-a720dd5e/clusterstack-operator/api/infrastructure/v1alpha1"
	"github.com/seed-a720dd5e/clusterstack-operator/internal/release"
	"github.com/seed-a720dd5e/clusterstack-operator/test/openstackdouble"
)

// BenchmarkTwentyReleasesThreeImages converges 20 releases whose node-images.yaml name 3
// distinct images (7, 7 and 6 releases share each) against the double without web-download, and
// reports Glance uploads, Keystone logins and the OpenStack calls made during a quiet window
// after convergence in which every object is touched (so every controller reconciles again).
func BenchmarkTwentyReleasesThreeImages(b *testing.B) {
	const releases, distinct = 20, 3
	const window = 5 * time.Second
	versions := make([]int, releases)
	for i := range versions {
		versions[i] = i + 1
	}
	dir := buildReleases(b, versions)
	adjust := map[string]func(*release.Release){}
	for i := range releases {
		k := i % distinct
		content := fmt.Sprintf("openStackNodeImages:\n  - url: https://images.invalid/ubuntu-capi-image-%d.qcow2\n    createOpts:\n      name: ubuntu-capi-image-%d\n      disk_format: qcow2\n      container_format: bare\n", k, k)
		imgs, err := release.ParseNodeImages([]byte(content))
		if err != nil {
			b.Fatal(err)
		}
		adjust[fmt.Sprintf("openstack-scs-1-32-v%d", i+1)] = func(r *release.Release) {
			r.NodeImages = imgs
			r.Metadata.Versions.Components.NodeImage = fmt.Sprintf("v%d", k+1)
		}
	}

	var uploads, logins, quietCalls, total int
	var converge time.Duration
	for b.Loop() {
		g := NewWithT(b)
		f := newFixture(b, openstackdouble.WithWebDownload(false))
		f.startManager(f.options(dirReleases{dir: dir, adjust: adjust}))
		start := time.Now()
		for i := range releases {
			createRelease(b, f.ns, fmt.Sprintf("openstack-scs-1-32-v%d", i+1), f.secret)
		}
		for i := range releases {
			waitReleaseReady(g, f.ns, fmt.Sprintf("openstack-scs-1-32-v%d", i+1))
		}
		converge = time.Since(start)
		uploads, logins, total = f.cloud.Calls(openstackdouble.CallUploadImage), f.cloud.Calls(openstackdouble.CallAuthTokens), f.cloud.TotalCalls()

		f.cloud.ResetCalls()
		ctx := context.Background()
		touch := func(obj client.Object) {
			base := client.MergeFrom(obj.DeepCopyObject().(client.Object))
			obj.SetAnnotations(map[string]string{"bench/touched": "yes"})
			g.Expect(env.Client.Patch(ctx, obj, base)).To(Succeed())
		}
		rels := &infrav1.OpenStackClusterStackReleaseList{}
		g.Expect(env.Client.List(ctx, rels, client.InNamespace(f.ns))).To(Succeed())
		for i := range rels.Items {
			touch(&rels.Items[i])
		}
		nirs := &infrav1.OpenStackNodeImageReleaseList{}
		g.Expect(env.Client.List(ctx, nirs, client.InNamespace(f.ns))).To(Succeed())
		for i := range nirs.Items {
			touch(&nirs.Items[i])
		}
		g.Expect(nirs.Items).To(HaveLen(distinct))
		time.Sleep(window) // a measurement window, not a synchronisation
		quietCalls = f.cloud.TotalCalls()
	}
	b.ReportMetric(float64(uploads), "uploads")
	b.ReportMetric(float64(logins), "logins")
	b.ReportMetric(float64(total), "calls-to-converge")
	b.ReportMetric(float64(quietCalls)/window.Minutes(), "calls/min-converged")
	b.ReportMetric(converge.Seconds(), "s-to-converge")
}
