// Package appcred is the Keystone side of per-cluster application credentials: deterministic
// names per Cluster (so that a credential created just before a crash is found again), creating a
// restricted, expiring credential, revoking, sweeping the user's credentials of one Cluster that
// nothing records, and rendering the files the workload cluster's cloud controller manager and
// Cinder CSI read (clouds.yaml and the INI cloud.conf).
package appcred
