package render

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/seed-a720dd5e/clusterstack-operator/internal/render/isolated"
)

// The results of a rendering request, the label of rendersTotal.
const (
	resultRendered = "rendered"
	resultFailed   = "failed"
	resultCached   = "cached"
)

var (
	rendersTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clusterstack_renders_total",
		Help: "Renderings of charts and values templates, by result: rendered in a worker, failed there (a chart error is an answer, not a failure), or answered from the cache of earlier results.",
	}, []string{"result"})
	workerStartsTotal = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "clusterstack_render_worker_starts_total",
		Help: "Rendering worker processes started (each serves many renderings; a rendering over a budget ends its worker).",
	}, func() float64 { return float64(isolated.Starts()) })
)

func init() {
	metrics.Registry.MustRegister(rendersTotal, workerStartsTotal)
}
