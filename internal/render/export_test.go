package render

import "github.com/prometheus/client_golang/prometheus/testutil"

// ValuesTemplateInProcess is ValuesTemplate without the rendering process: the fuzz target runs
// it many thousand times, and a process start per input would make fuzzing a hundred times slower.
var ValuesTemplateInProcess = valuesTemplate

// Renders returns how many renderings ran in a worker so far and how many the cache answered.
func Renders() (rendered, cached float64) {
	return testutil.ToFloat64(rendersTotal.WithLabelValues(resultRendered)), testutil.ToFloat64(rendersTotal.WithLabelValues(resultCached))
}
