// Package metrics is the operator's metrics endpoint: how it is served (HTTPS with the API
// server's authentication and authorization by default, as kubebuilder projects do) and the
// state gauges it exports beside the per-package counters (release downloads, OpenStack calls,
// hook answers) and controller-runtime's own.
package metrics

import (
	"crypto/tls"

	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// ServerOptions returns the options of the manager's metrics server on bindAddress ("0" disables
// it). Secure serves HTTPS and answers only requests whose bearer token the API server
// authenticates (TokenReview) and authorises for GET on the path (SubjectAccessReview): the
// manager needs the metrics-auth-role, a scraper the metrics-reader role. The certificate is
// tls.crt and tls.key in certDir, or self-signed when certDir is empty or holds none. Without
// secure it serves plain HTTP to anyone, for a local run.
func ServerOptions(bindAddress string, secure bool, certDir string) metricsserver.Options {
	opts := metricsserver.Options{BindAddress: bindAddress}
	if !secure {
		return opts
	}
	opts.SecureServing = true
	opts.FilterProvider = filters.WithAuthenticationAndAuthorization
	opts.CertDir = certDir
	// HTTP/1.1 only: HTTP/2's stream cancellation ("Rapid Reset", CVE-2023-44487 and
	// CVE-2023-39325) lets one client load the server; a scrape gains nothing from HTTP/2.
	opts.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	return opts
}
