package apply_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/seed-a720dd5e/clusterstack-operator/test/testenv"
)

var (
	env *testenv.Environment
	// counted is a client whose non-GET requests are counted in writes, except
	// SelfSubjectAccessReviews (which store nothing), counted in reviews.
	counted client.Client
	writes  atomic.Int64
	reviews atomic.Int64
	reads   atomic.Int64
)

// countingTransport counts the requests that can change something (every method but GET), apart
// from them the SelfSubjectAccessReviews, and the reads (GET).
type countingTransport struct{ next http.RoundTripper }

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/selfsubjectaccessreviews"):
		reviews.Add(1)
	case r.Method != http.MethodGet:
		writes.Add(1)
	default:
		reads.Add(1)
	}
	return c.next.RoundTrip(r)
}

// countingConfig returns a copy of cfg whose requests are counted by countingTransport.
func countingConfig(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return countingTransport{next: rt} }
	return cfg
}

func TestMain(m *testing.M) {
	testenv.Main(m, func(s *testenv.Suite) (err error) {
		if env, err = s.Start(testenv.Options{}); err != nil {
			return err
		}
		counted, err = client.New(countingConfig(env.Config), client.Options{Scheme: env.Scheme})
		return err
	})
}

var nsCounter atomic.Int64

// newNamespace creates a namespace of its own for a test (or benchmark) and returns its name.
func newNamespace(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("%s-%d", strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(tb.Name())), nsCounter.Add(1))
	if len(name) > 63 {
		name = name[len(name)-63:]
		name = strings.TrimLeft(name, "-")
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		tb.Fatal(err)
	}
	return name
}

// countWrites returns the number of writes (non-GET requests but SelfSubjectAccessReviews) made
// by counting clients while f runs.
func countWrites(f func()) int64 {
	n, _ := countRequests(f)
	return n
}

// countRequests returns the number of writes and of SelfSubjectAccessReviews made by counting
// clients while f runs.
func countRequests(f func()) (writesMade, reviewsMade int64) {
	w, r := writes.Load(), reviews.Load()
	f()
	return writes.Load() - w, reviews.Load() - r
}

// countAll returns the number of reads, writes and SelfSubjectAccessReviews made by counting
// clients while f runs.
func countAll(f func()) (readsMade, writesMade, reviewsMade int64) {
	g := reads.Load()
	w, r := countRequests(f)
	return reads.Load() - g, w, r
}
