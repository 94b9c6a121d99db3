// Package clients holds thin, context-first wrappers of the OpenStack services the operator
// drives (Glance, and Keystone through the provider client's transport). The implementations only
// map to gophercloud and record Prometheus metrics per call; deciding what to do with a cloud
// error happens in one place, Classify.
package clients
