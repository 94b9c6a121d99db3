package apply_test

import (
	"context"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func fiftyObjects(b *testing.B, ns string) []*unstructured.Unstructured {
	objs := make([]*unstructured.Unstructured, 0, 50)
	for i := range 25 {
		objs = append(objs, obj(b, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d, namespace: %s}\ndata: {key: value-%d, other: x}\n", i, ns, i)))
		objs = append(objs, obj(b, fmt.Sprintf(`
apiVersion: infrastructure.cluster.x-k8s.io/v1beta1
kind: OpenStackMachineTemplate
metadata: {name: omt-%d, namespace: %s}
spec:
  template:
    spec:
      flavor: SCS-2V-4
      rootVolume: {sizeGiB: %d}
      image: {filter: {name: ubuntu-capi-image-v1.32.5}}
`, i, ns, 50+i)))
	}
	return objs
}

// BenchmarkApply50Cold applies 50 objects into an empty namespace per iteration.
func BenchmarkApply50Cold(b *testing.B) {
	a := applier()
	ctx := context.Background()
	var total, totalReviews int64
	for b.Loop() {
		b.StopTimer()
		desired := fiftyObjects(b, newNamespace(b))
		b.StartTimer()
		w, r := countRequests(func() {
			res, err := a.Apply(ctx, desired, nil)
			if err != nil || res.Err() != nil || len(res.Changed) != 50 {
				b.Fatal(err, res.Err(), len(res.Changed))
			}
		})
		total += w
		totalReviews += r
	}
	b.ReportMetric(float64(total)/float64(b.N), "writes/op")
	// Each namespace is new, so its patch and create questions are too (the Applier remembers
	// allowed answers per namespace).
	b.ReportMetric(float64(totalReviews)/float64(b.N), "reviews/op")
}

// BenchmarkApply50Converged re-applies 50 objects that are already live: reads only.
func BenchmarkApply50Converged(b *testing.B) {
	a := applier()
	ctx := context.Background()
	desired := fiftyObjects(b, newNamespace(b))
	res, err := a.Apply(ctx, desired, nil)
	if err != nil || res.Err() != nil {
		b.Fatal(err, res.Err())
	}
	var total, totalReviews int64
	for b.Loop() {
		w, rv := countRequests(func() {
			r, err := a.Apply(ctx, desired, res.Applied)
			if err != nil || r.Err() != nil || len(r.Changed) != 0 {
				b.Fatal(err, r.Err(), r.Changed)
			}
		})
		total += w
		totalReviews += rv
	}
	b.ReportMetric(float64(total)/float64(b.N), "writes/op")
	b.ReportMetric(float64(totalReviews)/float64(b.N), "reviews/op")
}
