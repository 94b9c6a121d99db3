package hooks

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	runtimehooksv1 "sigs.k8s.io/cluster-api/api/runtime/hooks/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Answers of a hook call, the "answer" label.
const (
	// answerDone lets Cluster API go on (Success without retryAfterSeconds).
	answerDone = "done"
	// answerBlocking holds Cluster API back (Success with retryAfterSeconds).
	answerBlocking = "blocking"
	// answerFailure is a Failure answer: the ClusterAddon could not be read.
	answerFailure = "failure"
)

// blockForget is how long a block is remembered without a call, at least: Cluster API asks again
// after retryAfterSeconds, so a Cluster that is not asked about any more (deleted, or its upgrade
// called off) is no longer blocked. Long enough (and at least three retries) that a replica
// behind the extension's Service that misses a few calls keeps the start of the block.
const blockForget = 10 * time.Minute

// recorder records the answers of the handlers: calls by hook and answer, and how long each
// Cluster has been held back. The block times live in this replica's memory only: the handlers
// stay stateless, and a new replica starts counting at its first blocking answer (alerts take
// the max over replicas).
type recorder struct {
	calls *prometheus.CounterVec
	// blocking exports, for each blocked Cluster, the seconds since its first blocking answer.
	blocking *blockTimes
}

func newRecorder(now func() time.Time) *recorder {
	return &recorder{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clusterstack_hook_calls_total",
			Help: "Lifecycle hook calls answered by the runtime extension, by hook and answer (done, blocking with retryAfterSeconds, failure).",
		}, []string{"hook", "answer"}),
		blocking: &blockTimes{now: now, blocks: map[blockKey]block{}},
	}
}

// defaultRecorder is the one the server's handlers use, registered with the manager's metrics.
var defaultRecorder = newRecorder(time.Now)

func init() {
	metrics.Registry.MustRegister(defaultRecorder.calls, defaultRecorder.blocking)
}

// answered records one answer of hook for cluster; ours is false for Clusters of other classes,
// which are never held back and whose block time is not tracked.
func (r *recorder) answered(hook string, cluster *clusterv1.Cluster, ours bool, status runtimehooksv1.ResponseStatus, retryAfterSeconds int32, retryAfter time.Duration) {
	answer := answerDone
	switch {
	case status == runtimehooksv1.ResponseStatusFailure:
		answer = answerFailure
	case retryAfterSeconds > 0:
		answer = answerBlocking
	}
	r.calls.WithLabelValues(hook, answer).Inc()
	if !ours {
		return
	}
	key := blockKey{hook: hook, namespace: cluster.Namespace, cluster: cluster.Name}
	switch answer {
	case answerBlocking:
		r.blocking.held(key, retryAfter)
	case answerDone:
		r.blocking.released(key)
	}
	// A failure says nothing about the addons: a block goes on, none starts.
}

type blockKey struct{ hook, namespace, cluster string }

// block is an ongoing block: since its first blocking answer, forgotten after until.
type block struct{ since, until time.Time }

// blockTimes is a collector of the ongoing blocks.
type blockTimes struct {
	now    func() time.Time
	mu     sync.Mutex
	blocks map[blockKey]block
}

var blockingDesc = prometheus.NewDesc("clusterstack_hook_blocking_seconds",
	"How long the runtime extension has been answering a hook of a Cluster with retryAfterSeconds, since its first blocking answer in this replica.",
	[]string{"hook", "namespace", "cluster"}, nil)

func (b *blockTimes) held(key blockKey, retryAfter time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	cur, ok := b.blocks[key]
	if !ok || now.After(cur.until) {
		cur.since = now
	}
	cur.until = now.Add(max(blockForget, 3*retryAfter))
	b.blocks[key] = cur
}

func (b *blockTimes) released(key blockKey) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.blocks, key)
}

// Describe implements prometheus.Collector.
func (b *blockTimes) Describe(ch chan<- *prometheus.Desc) { ch <- blockingDesc }

// Collect implements prometheus.Collector; it forgets the blocks no call renewed.
func (b *blockTimes) Collect(ch chan<- prometheus.Metric) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	for k, v := range b.blocks {
		if now.After(v.until) {
			delete(b.blocks, k)
			continue
		}
		ch <- prometheus.MustNewConstMetric(blockingDesc, prometheus.GaugeValue, now.Sub(v.since).Seconds(), k.hook, k.namespace, k.cluster)
	}
}
