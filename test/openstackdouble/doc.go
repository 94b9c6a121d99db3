// Package openstackdouble is an in-process test double of the two OpenStack services the operator
// drives: Keystone v3 (password and application-credential tokens, a service catalog, token
// expiry) and Glance v2 (image records, uploads, the web-download import, listing with Glance's
// default hiding rules).
//
// It speaks HTTP like a real cloud, so the operator's gophercloud code is exercised unchanged,
// and it lets tests inject faults per call, count calls per endpoint and inspect the stored
// images. It models the behaviour the Keystone v3 and Glance v2 API references document; where
// the double is stricter or simpler than a real cloud, the code says so.
package openstackdouble
