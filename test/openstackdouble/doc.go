// Package openstackdouble is an in-process test double of the OpenStack services the operator
// drives: Keystone v3 (password and application-credential tokens, a service catalog with or
// without each service, token expiry) and Glance v2 (image records, uploads, the web-download
// import, listing with Glance's default hiding rules, the image schema and usage), and the read
// calls of the capability check: Nova's flavors and limits, Neutron's networks (router:external),
// Cinder's limits, and Neutron's and Octavia's version discovery.
//
// It speaks HTTP like a real cloud, so the operator's gophercloud code is exercised unchanged,
// and it lets tests inject faults per call, count calls per endpoint and inspect the stored
// images. It models the behaviour the Keystone v3 and Glance v2 API references document; where
// the double is stricter or simpler than a real cloud, the code says so.
package openstackdouble
