// Package scope turns an identityRef into authenticated OpenStack service clients: it reads the
// credentials Secret (clouds.yaml, cloudName, cacert) the way the OpenStack Cluster API provider
// does, parses it with gophercloud's clouds.yaml parser, and keeps one logged-in provider client
// per Secret (of its current UID, resourceVersion and cloud) so that reconciles do not log in to
// Keystone again; the least recently used Secrets are dropped beyond a bound.
//
// Every problem with the Secret or the login is a *CredentialsError whose message names the
// Secret and the problem and never contains a value from the Secret.
package scope
