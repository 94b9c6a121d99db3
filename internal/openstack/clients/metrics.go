package clients

import (
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Service names used as the "service" label.
const (
	ServiceImage    = "image"
	ServiceIdentity = "identity"
)

var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clusterstack_openstack_requests_total",
		Help: "OpenStack API calls made by the operator, by service and operation.",
	}, []string{"service", "operation"})
	requestErrorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clusterstack_openstack_request_errors_total",
		Help: "OpenStack API calls that failed, by service, operation and error class.",
	}, []string{"service", "operation", "class"})
	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "clusterstack_openstack_request_duration_seconds",
		Help:    "Duration of OpenStack API calls, by service and operation.",
		Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"service", "operation"})
)

func init() {
	metrics.Registry.MustRegister(requestsTotal, requestErrorsTotal, requestDuration)
}

// observeImage records one Glance call. It is called with the call's error so that the error
// class is the one Classify gives, the same the controllers act on. (Keystone logins are recorded
// by InstrumentedTransport; another service gets its own observe function.)
func observeImage(operation string, start time.Time, err error) {
	const service = ServiceImage
	requestsTotal.WithLabelValues(service, operation).Inc()
	requestDuration.WithLabelValues(service, operation).Observe(time.Since(start).Seconds())
	if err != nil {
		requestErrorsTotal.WithLabelValues(service, operation, Classify(err).Kind.String()).Inc()
	}
}

// InstrumentedTransport wraps an HTTP transport and records Keystone token requests, which
// gophercloud makes on its own (first login and re-authentication after a 401), so they cannot be
// measured at a call site.
func InstrumentedTransport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if req.Method != http.MethodPost || !strings.HasSuffix(req.URL.Path, "/auth/tokens") {
			return next.RoundTrip(req)
		}
		start := time.Now()
		resp, err := next.RoundTrip(req)
		requestsTotal.WithLabelValues(ServiceIdentity, "Authenticate").Inc()
		requestDuration.WithLabelValues(ServiceIdentity, "Authenticate").Observe(time.Since(start).Seconds())
		switch {
		case err != nil:
			requestErrorsTotal.WithLabelValues(ServiceIdentity, "Authenticate", KindRetryable.String()).Inc()
		case resp.StatusCode >= 400:
			requestErrorsTotal.WithLabelValues(ServiceIdentity, "Authenticate", classifyStatus(resp.StatusCode).String()).Inc()
		}
		return resp, err
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
